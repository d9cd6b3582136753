"""How a job ends in the store, on SQLite and on a real Redis: cancelled from any process
(its slot free at once), and never brought back by its owner's later writes."""

from __future__ import annotations

import time
import uuid

from app.serving.store.base import JobRecord, cancelled_reason
from tests.helpers.stores import StoreFactory


def _job(model: str = "cnn", owner: str = "p1") -> JobRecord:
    return JobRecord(id=uuid.uuid4().hex[:12], kind="evaluate", model=model, owner=owner)


def test_a_cancelled_job_frees_its_slot_and_stays_cancelled(make_store: StoreFactory) -> None:
    owner, other = make_store(), make_store()
    running = _job()
    owner.create_job(running)
    running.status, running.done, running.total = "running", 3, 10
    assert owner.update_job(running) is True

    cancelled = other.cancel_job(running.id)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert cancelled.error == cancelled_reason(running.id)
    assert (cancelled.done, cancelled.total) == (3, 10) and cancelled.finished_at is not None
    other.create_job(_job(owner="p2"))  # the slot is free at once

    running.done = 4  # the owner has not noticed yet: its writes are refused, not applied
    assert owner.update_job(running) is False
    running.status, running.finished_at = "succeeded", time.time()
    assert owner.update_job(running) is False
    assert owner.get_job(running.id) == cancelled
    assert other.expire_jobs() == []


def test_cancelling_a_finished_job_changes_nothing(make_store: StoreFactory) -> None:
    store = make_store()
    done = _job()
    store.create_job(done)
    done.status, done.result, done.finished_at = "succeeded", {"accuracy": 0.9}, time.time()
    assert store.update_job(done) is True
    assert store.cancel_job(done.id) == done
    assert store.cancel_job("no-such-job") is None


def test_an_expired_job_is_not_revived_by_its_owners_final_write(
    make_store: StoreFactory,
) -> None:
    owner = make_store(job_lease_s=0.2)
    lost = _job()
    owner.create_job(lost)
    time.sleep(0.3)
    [expired] = owner.expire_jobs()
    lost.status, lost.result, lost.finished_at = "succeeded", {"accuracy": 1.0}, time.time()
    assert owner.update_job(lost) is False
    assert owner.get_job(lost.id) == expired
