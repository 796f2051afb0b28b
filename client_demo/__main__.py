"""``crdtsync-demo`` / ``python -m client_demo``: a field-service day with outages, checked.

Starts a relay on a fresh SQLite file as its own process (or uses ``--relay URL
--office-key KEY``), creates a tenant, a policy that requires a signature and a
photo, and a day of work orders through the office API; then three
technicians, each a real device replica with its own SQLite file behind its
own flaky link, and the office go through the day of :mod:`client_demo.script`.
At the end every edit in the ledger is looked up through the office API
(:mod:`client_demo.verify`).

Exit status 0 only if nothing was lost; the last line printed is then exactly
``nothing lost``. Otherwise the missing edits are listed and the status is 1
(2 when the demo could not run at all, e.g. a relay that does not start).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from .cast import WORKORDERS, Cast
from .day import DayClock, EventLog, Pace
from .flaky import FlakyLink
from .ledger import Ledger
from .office import Office
from .relay import DemoError, ExternalRelay, LocalRelay, Relay, create_tenant
from .script import DAY
from .technician import Technician
from .verify import Verdict, check, collect
from .view import Board, LiveView, PlainView, View

__all__ = ["choose_view", "main", "parse_args"]

TECHNICIANS = (("anna", "anna-phone"), ("bram", "bram-phone"), ("chris", "chris-tablet"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="crdtsync-demo",
        description="Three technicians and an office through a day of outages; "
        "exits 0 and ends with 'nothing lost' only if every edit arrived.",
    )
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CRDTSYNC_SEED", "7")))
    parser.add_argument("--fast", action="store_true", help="no pauses (CI): well under a minute")
    parser.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--relay", metavar="URL", help="use this running relay (http://host:port)")
    parser.add_argument("--office-key", metavar="KEY", help="an office key of --relay's tenant")
    args = parser.parse_args(argv)
    if bool(args.relay) != bool(args.office_key):
        parser.error("--relay and --office-key go together")
    return args


def _quiet_libraries(workdir: Path) -> None:
    """Library warnings (a device noticing a withdrawn document, ...) go to a file, not
    through the live view."""
    handler = logging.FileHandler(workdir / "devices.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("crdtsync", "websockets"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False


async def _refresh(view: View, office: Office, relay: Relay) -> None:
    """Redraw the view and poll the relay's health, until cancelled."""
    polled = 0.0
    while True:
        if relay.state.up and time.monotonic() - polled > 0.5:
            polled = time.monotonic()
            health = await office.health()
            if health is not None and relay.state.up:
                relay.state.health = health
        view.tick()
        await asyncio.sleep(0.15)


async def _day(cast: Cast, view: View, board: Board) -> None:
    for at, title, action in DAY:
        cast.clock.set(at)
        board.step = title
        view.step(title)
        await action(cast)


async def run(args: argparse.Namespace, workdir: Path, view: View, board: Board) -> Verdict:
    """Run the whole day against the relay; return the verification's verdict."""
    rng = random.Random(args.seed)
    clock, ledger = board.clock, Ledger()
    log = EventLog(clock, listeners=[view.event])
    pace = Pace.fast() if args.fast else Pace.normal()
    suffix = "" if args.relay is None else "-" + os.urandom(3).hex()
    relay: Relay
    if args.relay is None:
        relay = LocalRelay(workdir / "relay.db", workdir / "relay.log")
        office_key = create_tenant(relay.db, "Acme Service")
        await asyncio.to_thread(relay.start)
    else:
        relay, office_key = ExternalRelay(args.relay), args.office_key
    board.relay = relay.state
    try:
        async with contextlib.AsyncExitStack() as stack:
            office = await stack.enter_async_context(Office(relay.http_url, office_key))
            techs: dict[str, Technician] = {}
            tech_ids = {name: name + suffix for name, _ in TECHNICIANS}
            for name, device in TECHNICIANS:
                link = FlakyLink(relay.ws_url, seed=rng.randrange(2**32), max_delay=0.03)
                await stack.enter_async_context(link)
                token = await office.issue_device(tech_ids[name], device)
                techs[name] = Technician(
                    name, tech_ids[name], device, workdir / f"{device}.db", link, token,
                    ledger=ledger, log=log, clock=clock, pace=pace, rng=random.Random(rng.random()),
                )  # fmt: skip
                stack.push_async_callback(techs[name].close)
            log.add("office", f"device credentials issued for {', '.join(techs)}")
            board.technicians = list(techs.values())
            ids = {plan.story: plan.story + suffix for plan in WORKORDERS}
            cast = Cast(office, relay, techs, ledger, log, clock, pace, rng, ids, tech_ids)
            async with asyncio.TaskGroup() as tasks:
                refresher = tasks.create_task(_refresh(view, office, relay))
                try:
                    await _day(cast, view, board)
                finally:
                    refresher.cancel()
            view.stop()  # the last frame shows the end of the day, not the shutdown
            verdict = await _verify(office, ledger)
            verdict.notes += _facts(cast)
            return verdict
    finally:
        relay.stop()


async def _verify(office: Office, ledger: Ledger) -> Verdict:
    """Collect and check; if something is missing, look again for a few seconds (the
    office's views follow the relay's commits closely, but not in the same instant)."""
    deadline = time.monotonic() + 5.0
    while True:
        observed, blobs = await collect(office, ledger)
        verdict = check(ledger, observed, blobs)
        if verdict.ok or time.monotonic() > deadline:
            return verdict
        await asyncio.sleep(0.5)


def _facts(cast: Cast) -> list[str]:
    facts, relay = cast.facts, cast.relay.state
    per_actor = cast.ledger.per_actor()
    actors = ", ".join(f"{name} {count}" for name, count in sorted(per_actor.items()))
    lines = [f"edits in the ledger: {sum(per_actor.values())} ({actors})"]
    if relay.killable:
        lines.append(
            f"relay killed with SIGKILL {relay.kills}x, started {relay.starts}x on the same port "
            f"and file; {facts.get('edits_while_relay_down', 0)} edits made while it was dead"
        )
    restarts = sum(tech.restarts for tech in cast.techs.values())
    lines.append(
        f"devices restarted: {restarts} (with {facts.get('unsent_at_restart', 0)} unsent changes); "
        f"connections cut by the flaky links: "
        f"{sum(t.link.stats.cuts for t in cast.techs.values())}"
    )
    return lines


def choose_view(args: argparse.Namespace, board: Board, console: Console) -> View:
    """The live view on a terminal; plain lines with ``--plain`` or when ``console`` is not
    a terminal (a pipe, a file, CI) or a dumb one."""
    terminal = console.is_terminal and not console.is_dumb_terminal
    if args.plain or not terminal:
        return PlainView(board, sys.stdout)
    return LiveView(board, console)


def _report(view: View, verdict: Verdict, args: argparse.Namespace, took: float) -> int:
    sent = sum(1 for row in verdict.rows if row.records != "-")
    totals = [f"run: {took:.0f} s, seed {args.seed}{' (--fast)' if args.fast else ''}"]
    view.summary(verdict, totals)
    if verdict.ok:
        view.line(
            f"every edit of every device and the office is in the merged state; {sent} work "
            "orders sent, each accepted exactly once with a valid signature and its photos"
        )
        view.line("nothing lost")
        return 0
    view.line(f"MISSING ({len(verdict.missing)}):")
    for missing in verdict.missing:
        view.line(f"  {missing}")
    return 1


def main(argv: list[str] | None = None) -> None:
    """Run the demo; exits with 0 (nothing lost), 1 (something missing) or 2 (could not run)."""
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="crdtsync-demo-"))
    _quiet_libraries(workdir)
    board = Board(
        clock=DayClock(), relay=LocalRelay(workdir / "relay.db", workdir / "relay.log").state
    )
    view = choose_view(args, board, Console())
    started = time.monotonic()
    view.start()
    code = 2
    try:
        verdict = asyncio.run(run(args, workdir, view, board))
        view.stop()
        if args.keep:
            view.line(f"work directory kept: {workdir} (relay.db, relay.log, devices.log, *.db)")
        code = _report(view, verdict, args, time.monotonic() - started)
    except DemoError as exc:
        view.stop()
        view.line(f"the demo could not finish: {exc} (logs in {workdir})")
        args.keep = True
    except KeyboardInterrupt:
        view.stop()
        view.line("interrupted")
        code = 130
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
