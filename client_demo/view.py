"""What the demo shows while it runs: a live view in a terminal, plain lines otherwise.

Both views get the same inputs: a :class:`Board` (the technicians, the relay's
state, the story clock and the current step) that they read whenever they draw,
and every :class:`~client_demo.day.Event` as it happens.

* :class:`LiveView` (a terminal): a ``rich`` live display that redraws a few
  times a second: one row per device (connection, unsent changes,
  pending uploads, queued submissions, work orders held, withdrawn), the
  relay's state, and the last events. When it stops, the last frame stays on
  screen and the summary is printed below it.
* :class:`PlainView` (not a terminal, ``--plain``, CI): one line per event, a
  heading per step, and the devices' and relay's state as one line each
  whenever it changed since the last heading. No colours, no cursor movement,
  nothing but ASCII punctuation, so logs read well and diff well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Protocol

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .day import DayClock, Event
from .relay import RelayState
from .technician import Technician
from .verify import Verdict

__all__ = ["Board", "DeviceRow", "LiveView", "PlainView", "View", "device_rows", "relay_line"]

COUNTS = (
    "unsent\nchanges",
    "pending\nuploads",
    "queued\nsubmissions",
    "work\norders",
    "with-\ndrawn",
)
STYLES = {"info": "", "good": "green", "warn": "yellow", "bad": "bold red", "step": "bold cyan"}


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One device as the views show it."""

    technician: str
    device: str
    signal: str  # "up" or "down" (the link)
    connection: str  # connected, connecting, offline, restarting
    pending: int
    uploads: int
    submissions: int
    workorders: int
    withdrawn: int

    def line(self) -> str:
        return (
            f"{self.technician} {self.connection}: {self.pending} pending, "
            f"{self.uploads} uploads, {self.submissions} queued"
            + (f", {self.withdrawn} withdrawn" if self.withdrawn else "")
        )


@dataclass(slots=True)
class Board:
    """What the views read: kept up to date by the script."""

    clock: DayClock
    relay: RelayState
    technicians: Sequence[Technician] = ()
    step: str = "setting up"


def device_rows(technicians: Sequence[Technician]) -> list[DeviceRow]:
    rows: list[DeviceRow] = []
    for tech in technicians:
        status = tech.status
        signal = "up" if tech.link.is_up else "down"
        if status is None:
            state = "restarting" if tech.restarting else "off"
            rows.append(DeviceRow(tech.name, tech.device_name, signal, state, 0, 0, 0, 0, 0))
            continue
        if status.connected:
            connection = "connected"
        else:
            connection = "connecting" if tech.link.is_up else "offline"
        rows.append(
            DeviceRow(
                technician=tech.name,
                device=tech.device_name,
                signal=signal,
                connection=connection,
                pending=status.total_pending,
                uploads=sum(status.uploads_pending.values()),
                submissions=sum(status.submissions_pending.values()),
                workorders=len(tech.field.workorders()) if tech.running else 0,
                withdrawn=len(status.withdrawn),
            )
        )
    return rows


def relay_line(state: RelayState) -> str:
    if not state.up:
        return f"relay DOWN (killed {state.kills}x)"
    health = state.health
    parts = [f"relay up at {state.where}"]
    if state.pid is not None:
        parts.append(f"pid {state.pid}")
    if state.kills:
        parts.append(f"restarted after SIGKILL x{state.kills}")
    if health:
        parts.append(f"{health.get('connections', '?')} connections")
        parts.append(f"{health.get('updates_stored', '?')} updates stored since start")
    return ", ".join(parts)


class View(Protocol):
    """The interface both views offer to the runner."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def tick(self) -> None: ...
    def event(self, event: Event) -> None: ...
    def step(self, title: str) -> None: ...
    def summary(self, verdict: Verdict, totals: Sequence[str]) -> None: ...
    def line(self, text: str) -> None: ...


@dataclass(slots=True)
class PlainView:
    """Plain lines on ``out`` (see the module docstring)."""

    board: Board
    out: IO[str]
    _last_state: str = ""

    def start(self) -> None:
        self.line(
            "crdtsync demo: three technicians, an office and a relay through a day of outages"
        )

    def stop(self) -> None:
        """Nothing to close: every line is out already."""

    def tick(self) -> None:
        """Nothing to redraw: plain lines are written as things happen."""

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def event(self, event: Event) -> None:
        mark = {"warn": "!", "bad": "X", "good": "+"}.get(event.level, " ")
        self.line(f"{event.at} {mark} {event.actor:<7} {event.text}")

    def step(self, title: str) -> None:
        self._state(force=False)
        self.line(f"== {self.board.clock.label} {title}")

    def _state(self, *, force: bool) -> None:
        rows = device_rows(self.board.technicians)
        lines = [f"   {row.line()}" for row in rows] + [f"   {relay_line(self.board.relay)}"]
        state = "\n".join(lines)
        if force or state != self._last_state:
            self._last_state = state
            self.line(state)

    def summary(self, verdict: Verdict, totals: Sequence[str]) -> None:
        self.line("")
        self.line("Verification (from the office API only):")
        header = ("work order", "team", "edits", "photos", "signed by", "records", "status")
        cells = [
            (r.workorder, r.team, f"{r.found}/{r.expected}", r.photos, r.signature, r.records,
             r.status + ("" if r.ok else "  MISSING"))
            for r in verdict.rows
        ]  # fmt: skip
        widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
        for row in [header, *cells]:
            cells_text = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            self.line("  ".join(cells_text).rstrip())
        for note in verdict.notes:
            self.line(f"note: {note}")
        for total in totals:
            self.line(total)


@dataclass(slots=True)
class LiveView:
    """The ``rich`` live display (see the module docstring)."""

    board: Board
    console: Console
    events: list[Event] = field(default_factory=list)
    _live: Live | None = None
    shown: int = 12

    def start(self) -> None:
        self._live = Live(self._render(), console=self.console, auto_refresh=False)
        self._live.start()

    def tick(self) -> None:
        """Redraw (from the event loop: the devices' state is read where it changes)."""
        if self._live is not None:
            self._live.update(self._render(), refresh=True)

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.stop()
            self._live = None

    def line(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def event(self, event: Event) -> None:
        self.events.append(event)

    def step(self, title: str) -> None:
        """The header shows the step (the board holds it)."""

    def _render(self) -> Group:
        board = self.board
        header = Text.assemble(
            (f" {board.clock.label} ", "bold reverse"), "  ", (board.step, "bold")
        )
        devices = Table(show_edge=False, pad_edge=False, box=box.SIMPLE_HEAD)
        for title in ("technician", "device", "connection"):
            devices.add_column(title)
        for title in COUNTS:
            devices.add_column(title, justify="right")
        for row in device_rows(board.technicians):
            connection_style = {"connected": "green", "offline": "red"}.get(
                row.connection, "yellow"
            )
            devices.add_row(
                row.technician,
                row.device,
                Text(row.connection, style=connection_style),
                _count(row.pending),
                _count(row.uploads),
                _count(row.submissions),
                str(row.workorders),
                _count(row.withdrawn),
            )
        relay = Text(relay_line(board.relay), style="green" if board.relay.up else "bold red")
        log = Text()
        for event in self.events[-self.shown :]:
            log.append(f"{event.at} ", style="dim")
            log.append(f"{event.actor:<7} ", style="bold")
            log.append(event.text + "\n", style=STYLES.get(event.level, ""))
        return Group(
            header,
            Panel(devices, title="devices", title_align="left"),
            Panel(relay, title="relay", title_align="left"),
            Panel(log, title="events", title_align="left", height=self.shown + 2),
        )

    def summary(self, verdict: Verdict, totals: Sequence[str]) -> None:
        table = Table(title="Verification, from the office API only", title_justify="left")
        for title in ("work order", "team", "edits found", "photos", "signed by", "records"):
            table.add_column(
                title, justify="right" if title in ("edits found", "photos") else "left"
            )
        table.add_column("status")
        table.add_column("")
        for row in verdict.rows:
            table.add_row(
                row.workorder,
                row.team,
                f"{row.found}/{row.expected}",
                row.photos,
                row.signature,
                row.records,
                row.status,
                Text("ok", style="green") if row.ok else Text("MISSING", style="bold red"),
            )
        self.console.print(table)
        for note in verdict.notes:
            self.console.print(f"[dim]note:[/dim] {note}", highlight=False)
        for total in totals:
            self.console.print(total, highlight=False)


def _count(value: int) -> Text:
    return Text(str(value), style="bold yellow" if value else "dim")
