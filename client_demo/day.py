"""The day's shared pieces: its clock, its pace, and the running event log.

* :class:`DayClock` is the time *in the story* (08:00 to 17:00 of today, UTC).
  The devices date their edits by it (hours entries, ticks, signatures), so the
  merged work orders read like a real day; the script moves it forward.
* :class:`Pace` says how long the demo lingers: the default run takes about a
  minute so that the live view can be followed, ``--fast`` almost not at all.
  It also holds the timeouts for waits that must end (a sync, an answer).
* :class:`EventLog` keeps what happened, newest last, for the live view and the
  plain-lines output; it never drops an event, the view shows the last ones.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .relay import DemoError

__all__ = ["DayClock", "Event", "EventLog", "Pace", "until"]


class DayClock:
    """Story time: today at ``HH:MM`` (UTC); :meth:`advance` moves it on."""

    def __init__(self, day: dt.date | None = None) -> None:
        self.day = day or dt.datetime.now(dt.UTC).date()
        self._now = dt.datetime.combine(self.day, dt.time(7, 30), dt.UTC)

    def now(self) -> dt.datetime:
        return self._now

    def set(self, hhmm: str) -> None:
        """Jump to ``HH:MM`` (never backwards: a clock that went back would make an hours
        entry end before it starts)."""
        hour, minute = (int(part) for part in hhmm.split(":"))
        later = dt.datetime.combine(self.day, dt.time(hour, minute), dt.UTC)
        self._now = max(self._now, later)

    def advance(self, minutes: float) -> dt.datetime:
        self._now += dt.timedelta(minutes=minutes)
        return self._now

    @property
    def label(self) -> str:
        return self._now.strftime("%H:%M")


@dataclass(frozen=True, slots=True)
class Pace:
    """How long the demo waits: ``beat`` between steps a viewer should see one by one,
    ``outage`` for the relay staying dead, ``timeout`` for any wait that must end."""

    beat: float
    outage: float
    timeout: float

    @classmethod
    def normal(cls) -> Pace:
        return cls(beat=1.6, outage=5.0, timeout=90.0)

    @classmethod
    def fast(cls) -> Pace:
        return cls(beat=0.0, outage=0.5, timeout=60.0)

    async def pause(self, beats: float = 1.0) -> None:
        """Linger ``beats`` beats (always yields to the event loop once)."""
        await asyncio.sleep(self.beat * beats)


@dataclass(frozen=True, slots=True)
class Event:
    at: str  # story time, HH:MM
    actor: str
    text: str
    level: str = "info"  # info, good, warn, bad, step


@dataclass(slots=True)
class EventLog:
    """Everything that happened; ``listeners`` hear each event as it is added."""

    clock: DayClock
    events: list[Event] = field(default_factory=list)
    listeners: list[Callable[[Event], None]] = field(default_factory=list)

    def add(self, actor: str, text: str, level: str = "info") -> Event:
        event = Event(self.clock.label, actor, text, level)
        self.events.append(event)
        for listener in self.listeners:
            listener(event)
        return event


async def until(condition: Callable[[], bool], what: str, timeout: float) -> float:
    """Wait until ``condition()`` holds (checked every 20 ms); return the seconds it took.
    DemoError naming ``what`` after ``timeout`` seconds."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 (state of several devices: polled)
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise DemoError(f"{what}: still not the case after {timeout:.0f} s") from None
    return time.monotonic() - started
