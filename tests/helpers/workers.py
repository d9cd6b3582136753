"""Talking to a server that runs several worker processes behind one port."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.helpers.apps import admin_headers


def fresh_client(base: str) -> httpx.Client:
    """No kept-alive connections: with several workers each request may reach another one."""
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    return httpx.Client(base_url=base, timeout=60, limits=no_keepalive)


def wait_for_all_workers(base: str, workers: int, timeout: float = 120) -> None:
    """Until an admin call through the port reaches ``workers`` live processes."""
    deadline = time.monotonic() + timeout
    with fresh_client(base) as client:
        while time.monotonic() < deadline:
            answer = client.post("/admin/models/cnn/reload", headers=admin_headers())
            if answer.status_code == 200 and len(answer.json()["processes"]) == workers:
                return
            time.sleep(0.3)
    raise AssertionError("not every worker became live")


def reinitialize_everywhere(client: httpx.Client, processes: int) -> dict[str, Any]:
    """A seeded reinitialize of the cnn through whichever worker answers; checks that all
    ``processes`` applied it and hold the same parameters, and returns the answer."""
    answer = client.post(
        "/admin/models/cnn/reinitialize",
        json={"scheme": "normal", "std": 0.5, "seed": 1},
        headers=admin_headers(),
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["converged"] is True
    assert len(body["processes"]) == processes
    assert {p["parameters_sha256"] for p in body["processes"]} == {body["parameters_sha256"]}
    return body
