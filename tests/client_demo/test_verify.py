"""The demo's end checks: a ledger against what the office API returned (pure, no relay).

Each test starts from observations that hold everything the ledger says, then
takes one thing away and shows that the check notices: it can fail.
"""

from __future__ import annotations

import copy
from typing import Any

from client_demo.ledger import Edit, EditKind, Ledger
from client_demo.verify import Observed, check

WO = "1001"
SHA = "a" * 64
PHOTO = b"\xff\xd8 a photo"
HASH = "c" * 64


def ledger() -> Ledger:
    book = Ledger()
    for edit in (
        Edit("anna", WO, EditKind.HOURS, "h-anna", "anna"),
        Edit("bram", WO, EditKind.HOURS, "h-bram", "bram"),
        Edit("anna", WO, EditKind.MATERIAL, "m-1", "VALVE-22"),
        Edit("anna", WO, EditKind.NOTE, "", "[10:00 anna] Replaced the valve.\n"),
        Edit("bram", WO, EditKind.NOTE, "", "[10:05 bram] Checked for leaks.\n"),
        Edit("anna", WO, EditKind.TASK, "t-1", "Check the boiler"),
        Edit("anna", WO, EditKind.ANSWER, "pressure_bar", 1.5),
        Edit("bram", WO, EditKind.ANSWER, "pressure_bar", 1.8),
        Edit("anna", WO, EditKind.PHOTO, SHA, "boiler.jpg"),
        Edit("anna", WO, EditKind.SIGNATURE, "", "J. de Vries", "anna-phone"),
        Edit("anna", WO, EditKind.SENT, "key-1", 1, "anna-phone"),
        Edit("office", WO, EditKind.DESCRIPTION, "", "Check the boiler and the valve"),
        Edit("office", WO, EditKind.PLANNING, "planned_end", "2026-12-01T15:30:00+00:00"),
        Edit("office", WO, EditKind.ASSIGNED, "", "anna"),
    ):
        book.add(edit)
    book.photos[SHA] = PHOTO
    return book


def observed() -> dict[str, Observed]:
    signature = {"signer_name": "J. de Vries", "device": "anna-phone", "content_hash": HASH}
    attachments = {"a-1": {"sha256": SHA, "kind": "photo"}}
    workorder: dict[str, Any] = {
        "hours": {"h-anna": {"technician": "anna"}, "h-bram": {"technician": "bram"}},
        "materials": {"m-1": {"article": "VALVE-22"}},
        "notes": "[10:00 anna] Replaced the valve.\n[10:05 bram] Checked for leaks.\n",
        "tasks": {"t-1": {"done": True}},
        "answers": {"pressure_bar": 1.8},
        "attachments": attachments,
        "signature": signature,
        "description": "Check the boiler and the valve",
        "planning": {"technician": "anna", "planned_end": "2026-12-01T15:30:00Z"},
    }
    state = {
        "status": "sent",
        "technician": "anna",
        "sent_submission_id": "s-1",
        "changed_after_sending": False,
        "workorder": workorder,
    }
    record = {"id": 1, "key": "key-1", "accepted": True, "submission_id": "s-1"}
    record["content_hash"] = HASH
    detail = {**record, "snapshot": {"signature": signature, "attachments": attachments}}
    seen = Observed(state, [record], {1: detail}, {1: "<svg ...>...</svg>"})
    return {WO: seen}


def test_everything_present_passes_and_says_which_answer_was_kept() -> None:
    verdict = check(ledger(), observed(), {SHA: PHOTO})
    assert verdict.ok, verdict.missing
    [row] = verdict.rows
    assert (row.found, row.expected, row.records, row.ok) == (14, 14, "1/1", True)
    assert verdict.notes == [
        "1001: pressure_bar answered by anna 1.5, bram 1.8: 1.8 kept on every replica"
    ]


def test_a_missing_hours_entry_fails_and_is_named() -> None:
    seen = observed()
    del seen[WO].workorder["hours"]["h-bram"]
    verdict = check(ledger(), seen, {SHA: PHOTO})
    assert not verdict.ok
    assert verdict.missing == [
        "1001: hours entry h-bram by bram: not in the merged hours",
    ]
    assert not verdict.rows[0].ok


def test_a_ledger_entry_the_api_does_not_show_fails() -> None:
    book = ledger()
    book.add(Edit("chris", WO, EditKind.MATERIAL, "m-lost", "GASKET-S"))
    book.add(Edit("chris", WO, EditKind.NOTE, "", "[11:00 chris] never arrived\n"))
    verdict = check(book, observed(), {SHA: PHOTO})
    assert verdict.missing == [
        "1001: material GASKET-S (m-lost) by chris: not in the merged materials",
        "1001: note '[11:00 chris] never arrived\\n' by chris: text not in the merged notes",
    ]


def test_a_second_record_or_other_bytes_or_a_stale_signature_fail() -> None:
    twice = observed()
    twice[WO].records.append({**twice[WO].records[0], "id": 2, "key": "key-2"})
    assert "2 accepted of 2 submission records" in check(ledger(), twice, {SHA: PHOTO}).missing[0]

    other_bytes = check(ledger(), observed(), {SHA: b"something else"})
    assert other_bytes.missing == ["1001: photo boiler.jpg (aaaaaaaaaaaa) by anna: bytes differ"]

    stale = observed()
    stale[WO].details[1] = copy.deepcopy(stale[WO].details[1])
    stale[WO].details[1]["snapshot"]["signature"]["content_hash"] = "d" * 64
    [missing] = check(ledger(), stale, {SHA: PHOTO}).missing
    assert missing.endswith("the signature does not match the recorded content")


def test_office_edits_and_an_unknown_work_order_are_checked_too() -> None:
    seen = observed()
    seen[WO].workorder["description"] = "Something else"
    seen[WO].state["technician"] = "bram"
    verdict = check(ledger(), seen, {SHA: PHOTO})
    assert [m.rsplit(": ", 1)[1] for m in verdict.missing] == [
        "description differs",
        "assigned to someone else",
    ]
    assert check(ledger(), {}, {}).missing == ["1001: the office API does not know this work order"]
