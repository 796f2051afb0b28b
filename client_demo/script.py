"""The day, as data: the work orders the office plans and the steps of the story.

:data:`WORKORDERS` is the planning; :data:`DAY` lists the steps in order as
``(story time, title, action)``. Each action is a coroutine over the
:class:`Cast` (the office, the relay, the technicians, the ledger, the log)
and does one thing the issue asks the demo to show:

==========  ===============================================================
08:20       a sending refused on the device for a missing signature (1001)
09:10       a device offline for a stretch, sending a finished work order
            while offline: the submission is queued (1002)
10:00       two technicians (a crew) and the office editing the same work
            order at once: both offline, the office patches it (1003)
10:40       a device restarted while it still had unsent changes (1005)
11:00       a work order reassigned while its technician, offline, had
            already started on it (1006)
12:00       back online: the answer to the queued sending is lost in a
            dropped connection once, the device asks again with the same key
13:00       the restarted device delivers its edits, also those to the
            reassigned work order, which now takes no new edits there
13:30       the relay SIGKILLed while the devices write, and restarted on
            the same port and file; devices reconnect by themselves
15:00       everyone finishes on a flaky network (delays, dropped connections)
==========  ===============================================================

The random choices (amounts, texts, who comes back first, when the relay
dies, the links' delays and drops) come from ``Cast.rng``, seeded by ``--seed``.
The steps themselves live in :mod:`client_demo.morning` and
:mod:`client_demo.afternoon`; the planning and the policy in :mod:`client_demo.cast`.
"""

from __future__ import annotations

from . import afternoon, morning
from .cast import Step

__all__ = ["DAY"]

#: The story, in order: (story time, title, action).
DAY: tuple[Step, ...] = (
    ("07:30", "the office plans the day", morning.plan_the_day),
    ("08:00", "the devices start and sync their plannings", morning.devices_start),
    ("08:15", "1001: anna taps Send before the customer signed", morning.refused_send),
    ("09:10", "1002: bram works and sends in a basement without signal", morning.offline_send),
    (
        "10:00",
        "1003: anna and bram on one job, no signal; the office edits",
        morning.crew_offline,
    ),
    ("10:40", "1005: chris's tablet restarts with unsent changes", morning.restart_with_unsent),
    ("11:00", "1006: reassigned while chris is offline", morning.reassign_offline),
    ("12:00", "anna and bram have signal again", morning.crew_back),
    ("13:00", "chris has signal again", morning.chris_back),
    ("13:30", "the relay is killed with SIGKILL while everyone writes", afternoon.relay_killed),
    ("15:00", "finishing the day on a flaky network", afternoon.finish),
    ("17:00", "end of the day", afternoon.end_of_day),
)
