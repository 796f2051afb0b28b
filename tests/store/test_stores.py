"""The relay's stores: MemoryStore and SQLiteStore against the same contract.

Compaction is checked by content, never by counting rows: a document rebuilt
from the store after a compaction must hold exactly what the original held.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text

from crdtsync import MemoryStore, SQLiteStore, Store, StoreError
from crdtsync.store import StoredDocument, build_doc, merge

StoreFactory = Callable[[], Store]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Builds an unopened store; SQLite stores of one test share the file ``x.db``."""
    if request.param == "memory":
        return MemoryStore
    return lambda: SQLiteStore(tmp_path / "x.db")


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[Store]:
    async with make_store() as opened:
        yield opened


# -- helpers ---------------------------------------------------------------------------------------


def content(doc: Doc[Any]) -> tuple[dict[str, Any], str, list[Any]]:
    """What the edit history writes, as plain Python."""
    return (
        doc.get("fields", type=Map).to_py(),
        str(doc.get("notes", type=Text)),
        doc.get("items", type=Array).to_py(),
    )


def edit_history(doc: Doc[Any], start: int, count: int) -> list[bytes]:
    """Apply ``count`` transactions (inserts, overwrites, deletes); return their updates."""
    fields = doc.get("fields", type=Map)
    notes = doc.get("notes", type=Text)
    items = doc.get("items", type=Array)
    updates: list[bytes] = []
    subscription = doc.observe(lambda event: updates.append(event.update))
    for i in range(start, start + count):
        with doc.transaction():
            fields[f"k{i % 7}"] = i
            notes.insert(len(notes) // 2, f"<{i}>")
            items.append(i)
        if i % 5 == 4:
            with doc.transaction():
                del notes[0:2]
                del items[0]
                fields.pop(f"k{(i + 3) % 7}", None)
    doc.unobserve(subscription)
    return updates


def assert_same_document(rebuilt: Doc[Any], original: Doc[Any]) -> None:
    assert content(rebuilt) == content(original)
    assert rebuilt.get_state() == original.get_state()


def dependent_pair() -> tuple[bytes, bytes]:
    """Two text inserts of one client where the second depends on the first."""
    doc: Doc[Any] = Doc()
    text = doc.get("notes", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    text += "hello"
    text += " world"
    return updates[0], updates[1]


# -- sequences and loading -------------------------------------------------------------------------


async def test_append_returns_strictly_increasing_seqs_across_batches_and_documents(
    store: Store,
) -> None:
    """Sequences grow strictly with commit order, whatever the document."""
    seqs = await store.append([("a", b"a1"), ("b", b"b1")])
    seqs += await store.append([("a", b"a2")])
    seqs += await store.append([("c", b"c1"), ("a", b"a3"), ("b", b"b2")])
    assert len(seqs) == 6
    assert all(earlier < later for earlier, later in pairwise(seqs))


async def test_load_returns_a_documents_updates_in_append_order(store: Store) -> None:
    """Load gives exactly that document's updates, in order, and its last sequence."""
    seqs = await store.append([("a", b"a1"), ("b", b"b1"), ("a", b"a2")])
    seqs += await store.append([("a", b"a3")])
    stored = await store.load("a")
    assert stored.updates == [b"a1", b"a2", b"a3"]
    assert stored.snapshot is None
    assert stored.last_seq == seqs[3]
    assert (await store.load("b")).updates == [b"b1"]


async def test_unknown_document_loads_empty(store: Store) -> None:
    """A name never written loads as an empty document with sequence 0."""
    await store.append([("a", b"a1")])
    stored = await store.load("nobody")
    assert stored.empty
    assert stored.updates == []
    assert stored.last_seq == 0


async def test_documents_are_listed_sorted_once_each(store: Store) -> None:
    """documents() names every stored document once, sorted."""
    await store.append([("wo-3", b"x"), ("wo-1", b"x"), ("wo-3", b"y"), ("wo-2", b"z")])
    assert await store.documents() == ["wo-1", "wo-2", "wo-3"]


async def test_last_seqs_cover_the_log_and_the_snapshot(store: Store) -> None:
    """last_seqs() gives each document's highest sequence, also once compacted away."""
    seqs = await store.append([("wo-1", b"x"), ("wo-2", b"x"), ("wo-1", b"y")])
    assert await store.last_seqs() == {"wo-1": seqs[2], "wo-2": seqs[1]}
    await store.compact("wo-1", b"\x00\x00", seqs[2])
    assert await store.last_seqs() == {"wo-1": seqs[2], "wo-2": seqs[1]}
    [later] = await store.append([("wo-2", b"z")])
    assert await store.last_seqs(["wo-2", "nobody"]) == {"wo-2": later}
    assert await store.last_seqs([]) == {}
    many = [f"wo-{i}" for i in range(1200)]
    assert await store.last_seqs(many) == {"wo-1": seqs[2], "wo-2": later}


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda s: s.last_seqs(), id="last_seqs"),
        pytest.param(lambda s: s.append([("a", b"a1")]), id="append"),
        pytest.param(lambda s: s.append([]), id="append-empty"),
        pytest.param(lambda s: s.load("a"), id="load"),
        pytest.param(lambda s: s.compact("a", b"\x00\x00", 1), id="compact"),
        pytest.param(lambda s: s.documents(), id="documents"),
        pytest.param(lambda s: s.ping(), id="ping"),
    ],
)
async def test_a_store_that_is_not_open_raises_store_error(
    make_store: StoreFactory, call: Callable[[Store], Any]
) -> None:
    """Every call outside ``async with`` raises StoreError."""
    with pytest.raises(StoreError):
        await call(make_store())


async def test_a_closed_store_raises_store_error(make_store: StoreFactory) -> None:
    """After ``async with`` ends the store refuses calls again."""
    async with make_store() as opened:
        await opened.append([("a", b"a1")])
    with pytest.raises(StoreError):
        await opened.load("a")


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda s: s.load("a"), id="load"),
        pytest.param(lambda s: s.append([("a", b"a2")]), id="append"),
    ],
)
async def test_closing_sqlite_lets_an_operation_in_progress_finish(
    tmp_path: Path, call: Callable[[Store], Any]
) -> None:
    """A call already running when the store closes completes; the next one raises StoreError.

    (The relay closes its store while a connection may still be loading a room.)
    """
    store = SQLiteStore(tmp_path / "x.db")
    async with store:
        await store.append([("a", b"a1")])
        running = asyncio.create_task(call(store))
        await asyncio.sleep(0)  # the call has sent its first statement to the connection
    await running
    with pytest.raises(StoreError):
        await store.load("a")


# -- compaction, checked by content ----------------------------------------------------------------


async def test_compaction_keeps_the_document_content(store: Store) -> None:
    """Compacting through the last sequence rebuilds to the same content and state."""
    original: Doc[Any] = Doc()
    for update in edit_history(original, 0, 60):
        await store.append([("wo-1", update)])
    stored = await store.load("wo-1")
    await store.compact("wo-1", merge(stored), stored.last_seq)

    compacted = await store.load("wo-1")
    assert compacted.snapshot is not None
    assert compacted.updates == []
    assert_same_document(build_doc(compacted), original)


async def test_updates_appended_after_compaction_load_on_top_of_the_snapshot(store: Store) -> None:
    """The log continues after a compaction and loads on top of the snapshot."""
    original: Doc[Any] = Doc()
    await store.append([("wo-1", u) for u in edit_history(original, 0, 30)])
    stored = await store.load("wo-1")
    await store.compact("wo-1", merge(stored), stored.last_seq)
    later = edit_history(original, 30, 25)
    seqs = await store.append([("wo-1", u) for u in later])

    reloaded = await store.load("wo-1")
    assert seqs[0] > stored.last_seq
    assert reloaded.last_seq == seqs[-1]
    assert_same_document(build_doc(reloaded), original)
    # and a second compaction over snapshot + log still holds everything
    await store.compact("wo-1", merge(reloaded), reloaded.last_seq)
    assert_same_document(build_doc(await store.load("wo-1")), original)


async def test_compaction_through_an_earlier_seq_keeps_the_later_updates(store: Store) -> None:
    """Only log entries up to through_seq are folded; later ones survive in order."""
    original: Doc[Any] = Doc()
    await store.append([("wo-1", u) for u in edit_history(original, 0, 20)])
    early = await store.load("wo-1")
    later = edit_history(original, 20, 20)
    await store.append([("wo-1", u) for u in later])
    await store.compact("wo-1", merge(early), early.last_seq)

    reloaded = await store.load("wo-1")
    assert reloaded.snapshot_seq == early.last_seq
    assert reloaded.updates == later
    assert_same_document(build_doc(reloaded), original)


async def test_compaction_of_one_document_leaves_the_others_alone(store: Store) -> None:
    """Compacting a document never touches another document's log."""
    first: Doc[Any] = Doc()
    second: Doc[Any] = Doc()
    for a, b in zip(edit_history(first, 0, 15), edit_history(second, 100, 15), strict=False):
        await store.append([("wo-1", a), ("wo-2", b)])
    stored = await store.load("wo-1")
    await store.compact("wo-1", merge(stored), stored.last_seq)
    assert (await store.load("wo-2")).snapshot is None
    assert_same_document(build_doc(await store.load("wo-2")), second)
    assert_same_document(build_doc(await store.load("wo-1")), first)


def _pending_text_structs() -> tuple[bytes, bytes, str]:
    first, second = dependent_pair()
    return first, second, "hello world"


def _pending_delete() -> tuple[bytes, bytes, str]:
    doc: Doc[Any] = Doc()
    text = doc.get("notes", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    text += "abc"
    del text[1]
    return updates[0], updates[1], "ac"


@pytest.mark.parametrize(
    "history",
    [
        pytest.param(_pending_text_structs, id="insert-waiting-for-its-origin"),
        pytest.param(_pending_delete, id="delete-waiting-for-its-target"),
    ],
)
async def test_an_update_waiting_for_a_dependency_is_folded_only_once_it_came(
    store: Store, history: Callable[[], tuple[bytes, bytes, str]]
) -> None:
    """An update stored before its dependency stays in the log, whole, until it arrives."""
    first, second, expected = history()
    await store.append([("wo-1", second)])
    with pytest.raises(StoreError, match="waiting for a dependency"):
        merge(await store.load("wo-1"))
    await store.append([("wo-1", first)])
    stored = await store.load("wo-1")
    await store.compact("wo-1", merge(stored), stored.last_seq)

    rebuilt = build_doc(await store.load("wo-1"))
    assert rebuilt.get_state() == build_doc(stored).get_state()
    assert str(rebuilt.get("notes", type=Text)) == expected


async def test_a_delete_waiting_for_its_target_is_not_folded_away(store: Store) -> None:
    """Found by the fault suite: a delete whose ranges are out of order and reach past the
    items the store has. pycrdt folded it into a snapshot without its waiting part, so
    the items it deletes, arriving later, showed in the stored document but not in the
    relay's, which had applied the delete update by update.
    """
    first, later = edit_history(Doc(client_id=7), 0, 2)
    delete = b"\x00\x01\x07\x02" + bytes([227, 1, 4]) + bytes([1, 9])  # client 7: 227+4, 1+9
    one_by_one = build_doc(StoredDocument("wo-1", updates=[first, delete, later]))
    await store.append([("wo-1", first), ("wo-1", delete)])
    stored = await store.load("wo-1")
    with pytest.raises(StoreError, match="waiting for a dependency"):
        await store.compact("wo-1", merge(stored), stored.last_seq)
    await store.append([("wo-1", later)])
    assert content(build_doc(await store.load("wo-1"))) == content(one_by_one)


def test_merge_never_folds_structs_waiting_for_a_dependency() -> None:
    """Found by the fault suite: a snapshot of waiting structs later diverged from the log.

    Two updates of one client wait for its clocks 0-14; a third (malformed but
    accepted) update arrives later. Applied one by one, the three leave the map
    empty, as the relay's document was; the snapshot compaction used to write for
    the first two, followed by the third, loads with ``k3 = "v7"``.
    """
    waiting = [
        bytes.fromhex(
            "0103cfb81f0f2801066669656c6473026b330177027633c4cfb81f0ccfb81f0d03773320"
            "88cfb81f0e017c4040000000"
        ),
        bytes.fromhex(
            "0003cfb81f0f2801066669656c6473026b330177027633c4cfb81f0ccfb81f0d03773320"
            "88cfb81f0e017c4040000000"
        ),
    ]
    later = bytes.fromhex(
        "0103cfb81f23a8cfb81f0f0177027637c4cfb81f1fd0b81f200377372088cfb81f22017c40e0"
        "000001cfb81f010f01"
    )
    old_snapshot = bytes.fromhex(
        "0103cfb81f0f2101066669656c6473026b3301c4cfb81f0ccfb81f0d0377332088cfb81f0e01"
        "7c404000000300004000cfb81f020f0128cfcfb81f"
    )
    one_by_one = build_doc(StoredDocument("wo-1", updates=[*waiting, later]))
    folded = build_doc(StoredDocument("wo-1", old_snapshot, 2, [later]))
    assert one_by_one.get("fields", type=Map).to_py() == {}
    assert folded.get("fields", type=Map).to_py() == {"k3": "v7"}
    with pytest.raises(StoreError, match="waiting for a dependency"):
        merge(StoredDocument("wo-1", updates=waiting))


def test_merge_refuses_to_change_what_the_log_loads_as() -> None:
    """Found by the fault suite: an item whose left and right origins are one character.

    pycrdt accepts the mutated update and places the item; rebuilt from the merged
    update it places it elsewhere, so the snapshot would change the text.
    """
    log = edit_history(Doc(client_id=7), 0, 12)[:10]
    mutated = bytes.fromhex(
        "0103072da8070a017c41100000c4072a072a033c393e88072c017c421000000107010a01"
    )
    with pytest.raises(StoreError, match="would change"):
        merge(StoredDocument("wo-1", updates=[*log, mutated]))


def test_merge_of_an_update_pycrdt_cannot_merge_raises_store_error() -> None:
    """An update pycrdt applies but cannot merge (a mutated one, found by the fault suite).

    Before, pycrdt's ValueError escaped, and in the relay's maintenance task it
    stopped the relay.
    """
    update = bytes.fromhex(
        "0103b2f31900040119000401056e6f746573037730202801066669656c6473026b3001"
        "770276300801056974656d73017c0000000000"
    )
    stored = StoredDocument("wo-1", updates=[update])
    build_doc(stored)  # it loads
    with pytest.raises(StoreError):
        merge(stored)


# -- SQLite only -----------------------------------------------------------------------------------


async def test_sqlite_data_survives_closing_and_reopening_the_file(tmp_path: Path) -> None:
    """Everything committed, log and snapshot, is there after a reopen."""
    path = tmp_path / "x.db"
    original: Doc[Any] = Doc()
    async with SQLiteStore(path) as store:
        await store.append([("wo-1", u) for u in edit_history(original, 0, 20)])
        stored = await store.load("wo-1")
        await store.compact("wo-1", merge(stored), stored.last_seq)
        seqs = await store.append([("wo-1", u) for u in edit_history(original, 20, 10)])
        await store.append([("wo-2", b"other")])
    async with SQLiteStore(path) as store:
        reloaded = await store.load("wo-1")
        assert reloaded.last_seq == seqs[-1]
        assert_same_document(build_doc(reloaded), original)
        assert await store.documents() == ["wo-1", "wo-2"]
        assert (await store.append([("wo-1", b"next")]))[0] > seqs[-1] + 1


async def test_sqlite_load_reads_snapshot_and_log_of_one_moment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compaction committed by another connection between load's reads tears nothing.

    Without one read transaction, the load saw the snapshot from before the
    compaction (none) and the log from after it (emptied): an empty document.
    """
    path = tmp_path / "x.db"
    original: Doc[Any] = Doc()
    async with SQLiteStore(path) as writer:
        await writer.append([("wo-1", u) for u in edit_history(original, 0, 10)])
        stored = await writer.load("wo-1")
    snapshot = merge(stored)

    def compact_on_another_connection() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute(
                "INSERT INTO snapshots (document, data, through_seq) VALUES (?, ?, ?)",
                ("wo-1", snapshot, stored.last_seq),
            )
            other.execute("DELETE FROM updates WHERE document = ?", ("wo-1",))
            other.execute("COMMIT")
        finally:
            other.close()

    async with SQLiteStore(path) as reader:
        db = reader._db
        assert db is not None
        execute = db.execute

        def execute_after_a_compaction(sql: str, *args: Any) -> Any:
            if sql.startswith("SELECT seq, data FROM updates"):
                compact_on_another_connection()  # commits between the two reads
            return execute(sql, *args)

        monkeypatch.setattr(db, "execute", execute_after_a_compaction)
        loaded = await reader.load("wo-1")
    assert_same_document(build_doc(loaded), original)


async def test_sqlite_file_that_is_not_a_database_raises_store_error(tmp_path: Path) -> None:
    """A garbage file surfaces as StoreError (caused by sqlite3.Error), not sqlite3.Error."""
    path = tmp_path / "x.db"
    path.write_bytes(b"this is not an SQLite database \x00\xff" * 200)
    with pytest.raises(StoreError) as caught:
        async with SQLiteStore(path):
            pass
    assert not isinstance(caught.value, sqlite3.Error)
    assert isinstance(caught.value.__cause__, sqlite3.Error)


async def test_appends_and_compactions_running_concurrently_keep_every_update(
    store: Store,
) -> None:
    """Group commits and compactions interleave on one store without colliding or losing."""
    original: Doc[Any] = Doc()
    updates = edit_history(original, 0, 120)

    async def writer(chunk: list[bytes]) -> None:
        for update in chunk:
            await store.append([("doc", update)])

    async def compactor() -> None:
        for _ in range(20):
            stored = await store.load("doc")
            await store.compact("doc", merge(stored), stored.last_seq)
            await asyncio.sleep(0)

    # One writer keeps the updates in order (a client's updates are never reordered);
    # compactions run while its transactions are in flight.
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(writer(updates))
        tasks.create_task(compactor())
    assert_same_document(build_doc(await store.load("doc")), original)
