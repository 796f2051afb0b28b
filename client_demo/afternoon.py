"""The afternoon: the relay dies while everyone writes, then the day ends on a flaky network.

The steps of :data:`client_demo.script.DAY` after noon (see
:mod:`client_demo.script`). :func:`relay_killed` interleaves the three
technicians' edits in a seeded random order and SIGKILLs the relay at a seeded
random point among them; the edits go on while it is dead (the devices are
offline without being told) and it comes back on the same port and file after
``Pace.outage`` seconds. Nobody reconnects the devices: they do it by themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial

from .cast import Cast, plan
from .relay import LocalRelay
from .technician import Technician

__all__ = ["end_of_day", "finish", "relay_killed"]

Action = tuple[Technician, Callable[[], object]]


def _afternoon_edits(cast: Cast) -> list[list[Action]]:
    """Each technician's edits on their afternoon work order, in their own order."""
    afternoon = {"anna": "1006", "bram": "1007", "chris": "1004"}
    queues: list[list[Action]] = []
    for name, story in afternoon.items():
        tech, wo = cast.techs[name], cast.wo(story)
        article, description = cast.material()
        minutes = cast.rng.choice((30, 45, 60, 75))
        pressure = round(cast.rng.uniform(1.0, 2.5), 1)
        note = cast.note()
        queue: list[Action] = [(tech, partial(tech.begin, wo))]
        queue += [(tech, partial(tech.tick, wo, task)) for task in plan(story).tasks]
        queue += [
            (tech, partial(tech.add_hours, wo, minutes, "afternoon")),
            (tech, partial(tech.use_material, wo, article, 1, description)),
            (tech, partial(tech.note, wo, note)),
            (tech, partial(tech.answer, wo, "pressure_bar", pressure)),
        ]
        queues.append(queue)
    return queues


def _interleave(cast: Cast, queues: list[list[Action]]) -> list[Action]:
    """One sequence of all edits, each technician's in order, mixed at random."""
    order: list[Action] = []
    queues = [list(queue) for queue in queues]
    while any(queues):
        queue = cast.rng.choice([q for q in queues if q])
        order.append(queue.pop(0))
    return order


def _pending(cast: Cast) -> int:
    return sum(s.total_pending for t in cast.techs.values() if (s := t.status) is not None)


async def relay_killed(cast: Cast) -> None:
    """The relay dies at a random edit of the afternoon and comes back ``outage`` s later."""
    edits = _interleave(cast, _afternoon_edits(cast))
    relay = cast.relay
    kill_at = cast.rng.randint(len(edits) // 3, len(edits) // 2)
    gap = max(0.02, cast.pace.beat / 4)
    killed_at: float | None = None
    during = 0
    if not isinstance(relay, LocalRelay):
        cast.log.add("relay", "not ours (--relay): it is not killed; the devices keep writing")
    for index, (_, edit) in enumerate(edits):
        if index == kill_at and isinstance(relay, LocalRelay):
            unacknowledged = _pending(cast)
            relay.kill()
            killed_at = time.monotonic()
            cast.log.add(
                "relay",
                f"SIGKILL after {index} of {len(edits)} afternoon edits "
                f"({unacknowledged} not acknowledged yet)",
                "bad",
            )
        edit()
        cast.clock.advance(4)
        during += relay.state.up is False
        await asyncio.sleep(gap)
    if killed_at is not None and isinstance(relay, LocalRelay):
        await asyncio.sleep(max(0.0, cast.pace.outage - (time.monotonic() - killed_at)))
        waiting = _pending(cast)
        await asyncio.to_thread(relay.start)
        down = time.monotonic() - killed_at
        cast.log.add(
            "relay",
            f"restarted on the same port and file after {down:.1f} s "
            f"({during} edits made meanwhile, {waiting} changes waiting on the devices)",
            "good",
        )
    started = time.monotonic()
    for tech in cast.techs.values():
        await tech.wait_synced()
    took = time.monotonic() - started
    how = "reconnected by themselves, in sync" if killed_at is not None else "in sync"
    cast.log.add("relay", f"all devices {how} {took:.1f} s later", "good")
    cast.facts["edits_while_relay_down"] = during
    await cast.pace.pause()


async def finish(cast: Cast) -> None:
    """Everyone finishes their open work orders while the links delay and drop."""
    for tech in cast.techs.values():
        tech.link.cut_probability = 0.02
        tech.link.max_delay = 0.08
    cast.log.add(
        "network", "turns flaky: delays up to 80 ms, connections dropped at random", "warn"
    )
    anna, bram, chris = (cast.techs[n] for n in ("anna", "bram", "chris"))

    async def anna_finishes() -> None:
        anna.answer(cast.wo("1006"), "safe", True)
        await cast.send_and_confirm(anna, "1006", "Reception Smile")
        await cast.pace.pause(0.5)
        await cast.send_and_confirm(anna, "1003", "Facility desk De Wetering")

    async def bram_finishes() -> None:
        await cast.pace.pause(0.3)
        await cast.send_and_confirm(bram, "1007", "Caretaker De Regenboog")

    async def chris_finishes() -> None:
        await cast.send_and_confirm(chris, "1004", "Cafe Het Hoekje")
        await cast.pace.pause(0.5)
        chris.tick(cast.wo("1005"), "Bleed the radiators")
        await cast.send_and_confirm(chris, "1005", "W. Bakker")

    async with asyncio.TaskGroup() as tasks:
        for finishing in (anna_finishes, bram_finishes, chris_finishes):
            tasks.create_task(finishing())
    cuts = sum(tech.link.stats.cuts for tech in cast.techs.values())
    for tech in cast.techs.values():
        tech.link.cut_probability = 0.0
    cast.log.add("network", f"calm again; {cuts} connections were cut by the links today")
    cast.facts["cuts"] = cuts
    await cast.pace.pause()


async def end_of_day(cast: Cast) -> None:
    """Every device in sync, and the office's views caught up with the relay."""
    for tech in cast.techs.values():
        await tech.wait_synced()
    backlog: list[int] = [-1]

    async def views_caught_up() -> None:
        while backlog[0] != 0:
            health = await cast.office.health()
            backlog[0] = int(health.get("views_backlog", -1)) if health else -1
            if backlog[0] != 0:
                await asyncio.sleep(0.05)

    try:
        async with asyncio.timeout(cast.pace.timeout):
            await views_caught_up()
    except TimeoutError:
        cast.log.add("office", "the relay's views are still behind: reading anyway", "warn")
    cast.log.add("office", "every device in sync; the office reads the day back", "good")
