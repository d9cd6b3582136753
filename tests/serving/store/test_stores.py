"""The control store contract, against SQLite (a shared file) and a real redis-server started
on a free loopback port; the Redis-only behaviour (outages, quiet heartbeats) at the end."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.errors import Conflict, Unavailable
from app.serving.store.base import (
    AppliedReport,
    FailedRecord,
    JobConflict,
    JobRecord,
    ProcessInfo,
    StoreUnavailable,
    expired_reason,
)
from app.serving.store.redis_store import RedisStore
from tests.helpers.redis_server import RedisServer
from tests.helpers.stores import StoreFactory


def wait_for(condition: Callable[[], bool], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class Calls:
    """A watch() listener that counts its calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1

    def more_than(self, count: int, timeout: float = 5) -> bool:
        return wait_for(lambda: self.count > count, timeout)


def job(model: str = "cnn", kind: str = "evaluation", owner: str = "p1") -> JobRecord:
    return JobRecord(id=uuid.uuid4().hex[:12], kind=kind, model=model, owner=owner)


# -- parameter records -----------------------------------------------------------------


def test_versions_start_after_the_initial_one_and_stay_unique_under_racing_appends(
    make_store: StoreFactory,
) -> None:
    stores = [make_store(), make_store()]
    first = stores[0].append_record("cnn", "reinitialize", {"seed": 0}, "p0", floor=1)
    assert first.version == 2
    versions: list[int] = []
    lock = threading.Lock()

    def append(worker: int) -> None:
        for n in range(25):
            record = stores[worker % 2].append_record(
                "cnn", "reinitialize", {"seed": n}, f"w{worker}", floor=1
            )
            with lock:
                versions.append(record.version)

    threads = [threading.Thread(target=append, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions) == list(range(3, 103))
    stored = stores[1].records_after("cnn", 1)
    assert [record.version for record in stored] == list(range(2, 103))
    assert {record.origin for record in stored[1:]} == {"w0", "w1", "w2", "w3"}


def test_a_store_that_lost_its_data_never_hands_out_a_version_at_or_below_the_floor(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    assert store.append_record("cnn", "reinitialize", {}, "p1", floor=10).version == 11
    assert store.append_record("cnn", "reinitialize", {}, "p1", floor=3).version == 12
    assert store.append_record("cnn", "reinitialize", {}, "p1", floor=20).version == 21
    assert [r.version for r in store.records_after("cnn", 0)] == [11, 12, 21]
    assert [r.version for r in store.records_after("cnn", 11)] == [12, 21]


def test_records_after_and_catch_up_replay_from_the_latest_reload(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    args = {"scheme": "normal", "std": 0.02, "seed": 7, "layers": ["conv1", "fc"]}
    store.append_record("cnn", "reinitialize", args, "p1", floor=1)  # 2
    store.append_record("cnn", "reinitialize", {"seed": 8}, "p2", floor=1)  # 3
    store.append_record("cnn", "reload", {}, "p1", floor=1)  # 4
    store.append_record("cnn", "reinitialize", {"seed": 9}, "p2", floor=1)  # 5
    store.append_record("lstm", "reinitialize", {"seed": 1}, "p1", floor=1)

    everything = store.records_after("cnn", 1)
    assert [(r.version, r.op) for r in everything] == [
        (2, "reinitialize"),
        (3, "reinitialize"),
        (4, "reload"),
        (5, "reinitialize"),
    ]
    assert everything[0].args == args and everything[0].origin == "p1"
    assert everything[0].model == "cnn" and everything[0].created_at <= time.time()
    assert [r.version for r in store.records_after("cnn", 3)] == [4, 5]
    assert store.records_after("cnn", 5) == []
    assert store.records_after("unknown", 0) == []
    assert [r.version for r in store.catch_up_records("cnn")] == [4, 5]
    assert [r.version for r in store.catch_up_records("lstm")] == [2]  # never reloaded
    assert store.catch_up_records("unknown") == []

    store.append_record("cnn", "reload", {}, "p1", floor=1)
    assert [r.version for r in store.catch_up_records("cnn")] == [6]


# -- processes -------------------------------------------------------------------------


def test_processes_live_while_they_heartbeat_and_leave_on_expiry_or_removal(
    make_store: StoreFactory,
) -> None:
    store = make_store(process_timeout_s=0.3)
    store.heartbeat(ProcessInfo("p1", ("cnn", "lstm"), ready=False, started_at=1.0))
    store.heartbeat(ProcessInfo("p2", ("cnn",), ready=True, started_at=2.0))
    live = {info.process_id: info for info in make_store().live_processes()}
    assert set(live) == {"p1", "p2"}
    assert live["p1"].models == ("cnn", "lstm") and live["p1"].ready is False

    store.remove_process("p2")
    assert [info.process_id for info in store.live_processes()] == ["p1"]

    for _ in range(4):  # heartbeats keep it alive past its timeout
        time.sleep(0.15)
        store.heartbeat(ProcessInfo("p1", ("cnn",), ready=True, started_at=1.0))
    assert [(i.process_id, i.ready) for i in store.live_processes()] == [("p1", True)]
    assert wait_for(lambda: store.live_processes() == [], timeout=2)


@pytest.mark.integration
def test_redis_heartbeats_wake_watchers_only_when_readiness_changes(
    make_redis_store: StoreFactory,
) -> None:
    store, watcher = make_redis_store(), make_redis_store()
    calls = Calls()
    watcher.watch(calls)
    assert calls.more_than(0)  # subscribed
    store.heartbeat(ProcessInfo("p1", ("cnn",), ready=False, started_at=1.0))
    assert calls.more_than(1)
    for _ in range(5):
        store.heartbeat(ProcessInfo("p1", ("cnn",), ready=False, started_at=1.0))
    store.heartbeat(ProcessInfo("p1", ("cnn",), ready=True, started_at=1.0))
    assert calls.more_than(2)
    time.sleep(0.2)
    assert calls.count == 3


def test_applied_keeps_the_latest_report_of_each_process(make_store: StoreFactory) -> None:
    store = make_store()
    ok = AppliedReport("p1", "cnn", 2, "ab" * 32, ok=True, error=None, applied_at=1.0)
    bad = AppliedReport("p2", "cnn", 2, "cd" * 32, ok=False, error="out of memory", applied_at=2.0)
    store.report_applied(ok)
    store.report_applied(bad)
    newer = AppliedReport("p1", "cnn", 3, "ef" * 32, ok=True, error=None, applied_at=3.0)
    make_store().report_applied(newer)
    assert store.applied("cnn") == {"p1": newer, "p2": bad}
    assert store.applied("lstm") == {}
    store.remove_process("p2")  # a process that left does not hold back convergence
    assert store.applied("cnn") == {"p1": newer}


# -- jobs and accuracy -----------------------------------------------------------------


def test_one_active_job_per_kind_and_model_across_processes(make_store: StoreFactory) -> None:
    a, b = make_store(), make_store()
    first = job()
    a.create_job(first)
    with pytest.raises(JobConflict) as conflict:
        b.create_job(job(owner="p2"))
    assert isinstance(conflict.value, Conflict)  # 409 over HTTP
    assert conflict.value.detail == (
        f"a evaluation job for 'cnn' is already running (job {first.id}); "
        f"poll GET /admin/jobs/{first.id}, or cancel it with DELETE /admin/jobs/{first.id}."
    )
    b.create_job(job(model="lstm", owner="p2"))  # another model is free

    first.status, first.done, first.total, first.started_at = "running", 5, 10, time.time()
    a.update_job(first)
    seen = b.get_job(first.id)
    assert seen is not None and (seen.status, seen.done, seen.total) == ("running", 5, 10)

    first.status, first.done, first.result = "succeeded", 10, {"accuracy": 0.9}
    first.finished_at = time.time()
    a.update_job(first)
    assert b.get_job(first.id) == first
    second = job(owner="p2")
    b.create_job(second)  # the finished job released the slot
    assert a.get_job(second.id) == second
    assert a.get_job("no-such-job") is None


def test_a_job_whose_lease_ran_out_fails_once_even_when_processes_race(
    make_store: StoreFactory,
) -> None:
    owner, a, b = (make_store(job_lease_s=0.3) for _ in range(3))
    lost = job(owner="p1")
    owner.create_job(lost)
    assert a.expire_jobs() == []
    time.sleep(0.45)

    results: list[list[JobRecord]] = []
    barrier = threading.Barrier(2)

    def expire(store: RedisStore) -> None:
        barrier.wait()
        results.append(store.expire_jobs())

    threads = [threading.Thread(target=expire, args=(store,)) for store in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    marked = [j for found in results for j in found]
    assert len(marked) == 1
    assert marked[0].id == lost.id and marked[0].status == "failed"
    assert marked[0].error == expired_reason(lost) and marked[0].finished_at is not None
    assert b.get_job(lost.id) == marked[0]
    assert a.expire_jobs() == []

    lost.status = "running"  # the owner wakes up: its progress must not revive the job
    owner.update_job(lost)
    stored = a.get_job(lost.id)
    assert stored is not None and stored.status == "failed"
    b.create_job(job(owner="p2"))  # the slot is free again


def test_renewing_the_lease_keeps_a_job_alive(make_store: StoreFactory) -> None:
    owner, other = make_store(job_lease_s=0.6), make_store(job_lease_s=0.6)
    running = job()
    owner.create_job(running)
    time.sleep(0.4)
    running.status = "running"
    owner.update_job(running)
    time.sleep(0.4)  # past the first lease, within the renewed one
    assert other.expire_jobs() == []
    with pytest.raises(JobConflict):
        other.create_job(job(owner="p2"))


def test_accuracy_round_trip(make_store: StoreFactory) -> None:
    a, b = make_store(), make_store()
    assert a.get_accuracy("cnn") is None
    result = {"top1": 0.91, "samples": 10000, "per_class": [0.9, 0.8]}
    a.set_accuracy("cnn", result)
    assert b.get_accuracy("cnn") == result


# -- notifications and outages ---------------------------------------------------------


def test_watch_hears_writes_of_another_process(make_store: StoreFactory) -> None:
    watcher, writer = make_store(), make_store()
    calls = Calls()
    watcher.watch(calls)
    assert calls.more_than(0)
    seen = calls.count
    writer.append_record("cnn", "reinitialize", {"seed": 1}, "p2", floor=1)
    assert calls.more_than(seen, timeout=2)
    seen = calls.count
    writer.create_job(job())
    assert calls.more_than(seen, timeout=2)


@pytest.mark.integration
def test_a_redis_outage_is_a_named_error_and_the_same_store_recovers(
    tmp_path: Path, make_redis_store: StoreFactory
) -> None:
    server = RedisServer(tmp_path, persist=False)
    server.start()
    try:
        store, writer = make_redis_store(server.url), make_redis_store(server.url)
        calls = Calls()
        store.watch(calls)
        assert calls.more_than(0)
        store.append_record("cnn", "reinitialize", {}, "p1", floor=1)

        server.stop()
        info = ProcessInfo("p1", ("cnn",), ready=True, started_at=1.0)
        report = AppliedReport("p1", "cnn", 2, "00", ok=True, error=None, applied_at=1.0)
        failed = FailedRecord("cnn", 2, "reload", "gone", "p1", 1.0)
        methods: dict[str, Callable[[], Any]] = {
            "append_record": lambda: store.append_record("cnn", "reload", {}, "p1", floor=1),
            "records_after": lambda: store.records_after("cnn", 1),
            "catch_up_records": lambda: store.catch_up_records("cnn"),
            "heartbeat": lambda: store.heartbeat(info),
            "live_processes": store.live_processes,
            "remove_process": lambda: store.remove_process("p1"),
            "report_applied": lambda: store.report_applied(report),
            "applied": lambda: store.applied("cnn"),
            "create_job": lambda: store.create_job(job()),
            "update_job": lambda: store.update_job(job()),
            "cancel_job": lambda: store.cancel_job("x"),
            "mark_record_failed": lambda: store.mark_record_failed(failed),
            "failed_records": lambda: store.failed_records("cnn"),
            "get_job": lambda: store.get_job("x"),
            "expire_jobs": store.expire_jobs,
            "set_accuracy": lambda: store.set_accuracy("cnn", {"top1": 1.0}),
            "get_accuracy": lambda: store.get_accuracy("cnn"),
        }
        for name, call in methods.items():
            with pytest.raises(StoreUnavailable) as down:
                call()
            assert isinstance(down.value, Unavailable), name  # 503 over HTTP
            assert f"the control store {server.url} is unreachable" in down.value.detail, name
            assert "inference goes on" in down.value.detail, name

        seen = calls.count
        server.start()  # same port, empty: the floor keeps versions moving forward
        assert calls.more_than(seen, timeout=5)  # resubscribed: listeners resync
        assert store.append_record("cnn", "reinitialize", {}, "p1", floor=2).version == 3
        seen = calls.count
        writer.set_accuracy("cnn", {"top1": 0.5})
        assert calls.more_than(seen, timeout=2)
        assert store.get_accuracy("cnn") == {"top1": 0.5}
    finally:
        server.stop()
