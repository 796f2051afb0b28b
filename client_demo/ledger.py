"""The ledger: every edit every actor made during the day, as the verification checks it.

Each technician and the office write here *after* the typed API accepted the
edit (an edit the API refused is not in the ledger, because it never
happened), with what is needed to find it again in the merged state:

============  ====================  ===============================================
kind          key                   value
============  ====================  ===============================================
hours         hours entry id        the technician it counts for
material      material entry id     the article
note          (empty)               the exact text inserted into the notes
task          task id               the task title
photo         sha256 of the bytes   the file name (the bytes are in ``photos``)
answer        question id           the answer given (last writer wins per question)
signature     (empty)               the signer's name (``device`` says which device)
sent          submission key        the policy version the device checked against
description   (empty)               the whole description the office set
planning      planning field        the value the office set (ISO text for times)
assigned      (empty)               the technician the office assigned
crew          (empty)               the crew the office set (a list)
============  ====================  ===============================================

The ledger is plain data (no I/O); :mod:`client_demo.verify` compares it with
what the office API returns.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Edit", "EditKind", "Ledger"]


class EditKind(StrEnum):
    HOURS = "hours"
    MATERIAL = "material"
    NOTE = "note"
    TASK = "task"
    PHOTO = "photo"
    ANSWER = "answer"
    SIGNATURE = "signature"
    SENT = "sent"
    DESCRIPTION = "description"
    PLANNING = "planning"
    ASSIGNED = "assigned"
    CREW = "crew"


@dataclass(frozen=True, slots=True)
class Edit:
    """One thing ``actor`` did to work order ``workorder`` (see the module docstring)."""

    actor: str
    workorder: str
    kind: EditKind
    key: str = ""
    value: Any = None
    device: str = ""

    def describe(self) -> str:
        """A short human description, for the list of what is missing."""
        what = {
            EditKind.HOURS: f"hours entry {self.key[:8]}",
            EditKind.MATERIAL: f"material {self.value} ({self.key[:8]})",
            EditKind.NOTE: f"note {self.value!r}",
            EditKind.TASK: f"task {self.value!r} ticked",
            EditKind.PHOTO: f"photo {self.value} ({self.key[:12]})",
            EditKind.ANSWER: f"answer {self.key}={self.value!r}",
            EditKind.SIGNATURE: f"signature of {self.value}",
            EditKind.SENT: f"sending (key {self.key[:12]})",
            EditKind.DESCRIPTION: "description",
            EditKind.PLANNING: f"planning.{self.key}={self.value}",
            EditKind.ASSIGNED: f"assignment to {self.value}",
            EditKind.CREW: f"crew {self.value}",
        }[self.kind]
        return f"{self.workorder}: {what} by {self.actor}"


@dataclass(slots=True)
class Ledger:
    """Every edit in the order it was made, and the bytes of every photo taken."""

    edits: list[Edit] = field(default_factory=list)
    photos: dict[str, bytes] = field(default_factory=dict)

    def add(self, edit: Edit) -> Edit:
        self.edits.append(edit)
        return edit

    def of(self, workorder: str) -> list[Edit]:
        """The edits of one work order, in order."""
        return [edit for edit in self.edits if edit.workorder == workorder]

    @property
    def workorders(self) -> list[str]:
        """Every work order the ledger mentions, sorted."""
        return sorted({edit.workorder for edit in self.edits})

    def per_actor(self) -> Counter[str]:
        """How many edits each actor made."""
        return Counter(edit.actor for edit in self.edits)

    def sent(self, workorder: str) -> list[Edit]:
        """The sendings of ``workorder`` (normally one)."""
        return [e for e in self.of(workorder) if e.kind is EditKind.SENT]
