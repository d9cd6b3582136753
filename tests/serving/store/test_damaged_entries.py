"""Entries the service never writes (a bug, a hand edit, another version) read past, on SQLite
and on a real Redis: a damaged record comes back saying why, others are skipped and named."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from app.serving.store.base import (
    FAILED_RECORDS_SHOWN,
    AppliedReport,
    ControlStore,
    FailedRecord,
    JobRecord,
    ProcessInfo,
)
from tests.helpers.store_damage import Damage
from tests.helpers.stores import StoreFactory


@pytest.fixture
def store(make_store: StoreFactory) -> ControlStore:
    return make_store()


@pytest.fixture
def damage(store: ControlStore) -> Iterator[Damage]:
    writer = Damage(store)
    yield writer
    writer.close()


def test_a_damaged_record_says_why_and_the_records_after_it_read(
    store: ControlStore, damage: Damage
) -> None:
    store.append_record("cnn", "reinitialize", {"seed": 1}, "p1", floor=1)  # 2
    bad = damage.record("cnn")  # 3
    unknown = damage.record("cnn", op="explode", args="{}")  # 4
    store.append_record("cnn", "reinitialize", {"seed": 2}, "p1", floor=1)  # 5

    records = store.records_after("cnn", 1)
    assert [r.version for r in records] == [2, bad, unknown, 5] == [2, 3, 4, 5]
    assert records[0].problem is None and records[3].problem is None
    assert records[3].args == {"seed": 2}
    assert records[1].problem is not None
    assert records[1].problem.startswith("the stored record cannot be read")
    assert records[1].args == {}
    assert (records[2].op, records[2].problem) == ("explode", None)  # the sync refuses it
    assert [r.version for r in store.catch_up_records("cnn")] == [2, 3, 4, 5]


def test_failed_records_keep_the_first_report_of_each_version(
    make_store: StoreFactory, store: ControlStore
) -> None:
    other = make_store()
    store.mark_record_failed(FailedRecord("cnn", 3, "reinitialize", "not JSON", "p1", 1.0))
    other.mark_record_failed(FailedRecord("cnn", 3, "reinitialize", "later", "p2", 2.0))
    other.mark_record_failed(FailedRecord("lstm", 2, "reload", "no file", "p2", 2.0))
    assert other.failed_records("cnn") == [
        FailedRecord("cnn", 3, "reinitialize", "not JSON", "p1", 1.0)
    ]
    for version in range(10, 10 + FAILED_RECORDS_SHOWN + 5):
        store.mark_record_failed(FailedRecord("cnn", version, "reload", "x", "p1", 3.0))
    shown = store.failed_records("cnn")
    assert len(shown) == FAILED_RECORDS_SHOWN
    assert [f.version for f in shown] == list(range(15, 15 + FAILED_RECORDS_SHOWN))  # newest
    assert store.failed_records("gan") == []


def test_damaged_processes_and_reports_are_skipped_and_named(
    store: ControlStore, damage: Damage
) -> None:
    started = time.time()
    store.heartbeat(ProcessInfo("p1", ("cnn",), ready=True, started_at=1.0))
    damage.process("ghost:1")
    damage.report("cnn", "ghost:1")
    store.report_applied(AppliedReport("p1", "cnn", 2, "ab", ok=True, error=None, applied_at=1.0))
    assert [p.process_id for p in store.live_processes()] == ["p1"]
    assert list(store.applied("cnn")) == ["p1"]
    skipped = store.skipped_since(started)
    assert len(skipped) == 2
    assert all("ghost:1" in entry.key for entry in skipped)
    assert any("process" in entry.key for entry in skipped)
    assert all(entry.error for entry in skipped)
    assert store.skipped_since(time.time() + 1) == []


def test_a_damaged_job_reads_as_failed_and_its_slot_is_freed_when_its_lease_ran_out(
    store: ControlStore, damage: Damage
) -> None:
    damage.job("broken", "evaluate", "cnn", leased=True)
    seen = store.get_job("broken")
    assert seen is not None and seen.status == "failed"
    assert "cannot be read" in (seen.error or "")
    assert store.expire_jobs() == []  # leased: not ended yet

    damage.job("expired", "evaluate", "lstm")
    [ended] = store.expire_jobs()
    assert (ended.id, ended.status) == ("expired", "failed")
    assert "cannot be read" in (ended.error or "")
    stored = store.get_job("expired")
    assert stored is not None and stored.status == "failed"
    store.create_job(JobRecord(id="next", kind="evaluate", model="lstm", owner="p1"))  # free
    assert store.expire_jobs() == []
