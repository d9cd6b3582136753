"""The Redis control store's client: key names, errors, and the change subscription.

A process is alive while its key has not expired, so no two hosts' clocks are compared. Every
write publishes on one channel that ``watch`` listens to. The keys' use is in ``redis_store``
(records, processes) and ``redis_jobs`` (jobs, accuracy).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.serving.store.base import ControlStore, StoreUnavailable
from app.serving.store.connection import refusal_hint

logger = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="RedisBase")
RETRY_S = 0.5  # the watcher's pause between reconnection attempts
# fail fast (an admin call answers 503 within seconds), notice dead idle connections
_CLIENT_OPTIONS = dict(
    socket_timeout=2, socket_connect_timeout=2, health_check_interval=10, decode_responses=True
)


def reachable(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Any Redis failure becomes the one error the API answers 503 to, naming the store."""

    @functools.wraps(method)
    def wrapper(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except RedisError as exc:
            raise self._unavailable(exc) from exc

    return wrapper


def ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisBase(ControlStore):
    """``redis[s]://[user[:password]@]host:6379/0``; every key lives under ``{prefix}:``.
    ``connection``: redis-py's options beyond the URL (connection.py: password, TLS files)."""

    def __init__(
        self,
        url: str,
        process_timeout_s: float,
        job_lease_s: float,
        prefix: str = "torchgate",
        **connection: Any,
    ) -> None:
        super().__init__(url, process_timeout_s, job_lease_s)
        self.prefix = prefix
        self._client = redis.Redis.from_url(url, **_CLIENT_OPTIONS, **connection)
        self._events = self._key("events")
        self._listeners: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _unavailable(self, exc: RedisError) -> StoreUnavailable:
        reason = str(exc).rstrip(".") or type(exc).__name__
        broken = isinstance(exc, RedisConnectionError | RedisTimeoutError)
        state = f"is unreachable ({reason})" if broken else f"failed ({reason})"
        return StoreUnavailable(
            f"the control store {self.name} {state}{refusal_hint(exc)}; parameter changes and "
            "jobs are refused until it is back, inference goes on."
        )

    # -- notifications -----------------------------------------------------------------

    def watch(self, on_change: Callable[[], None]) -> None:
        self._listeners.append(on_change)
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._listen, name="store-watch", daemon=True)
            self._watcher.start()

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # a listener's bug must not end the subscription
                logger.exception("control store listener failed")

    def _listen(self) -> None:
        """One subscription, rebuilt after every lost connection. Listeners also hear the
        subscription being confirmed: whatever was written while it was down is read then."""
        down = False
        while not self._stop.is_set():
            pubsub = self._client.pubsub()
            try:
                pubsub.subscribe(self._events)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None or message["type"] not in ("subscribe", "message"):
                        continue
                    if down and message["type"] == "subscribe":
                        down = False
                        logger.warning("control store %s is reachable again", self.name)
                    self._notify()
            except Exception as exc:  # Redis went away, or a bug: neither may end the thread
                if not down:
                    failure = f"{type(exc).__name__}: {exc}{refusal_hint(exc)}"
                    logger.warning("watching %s failed: %s", self.name, failure)
                down = True
                self._stop.wait(RETRY_S)
            finally:
                pubsub.close()

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=3)
        self._listeners.clear()  # they hold the app (sync -> registry -> models)
        self._client.close()
