"""Many deadlines on one timer: what the HTTP guards use to time request heads and bodies.

Every request has deadlines (its head, each body chunk, the whole body) that almost never fire.
A timer per deadline (``asyncio.timeout``, ``loop.call_later``) costs an object, a heap push and
a cancel each time, 2-4 µs: a few percent of a small model's whole request. These deadlines are
seconds long and need no better precision than a tenth of one, so a watch here is two dict
operations, and one timer per event loop, running only while something is watched, sweeps every
``TICK_S`` and expires whatever is past its deadline: a deadline fires at most ``TICK_S`` late,
never early.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Hashable
from typing import ClassVar

TICK_S = 0.1

logger = logging.getLogger(__name__)


class Deadlines:
    """The watched deadlines of one event loop (``Deadlines.of(loop)``)."""

    _by_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, tick_s: float = TICK_S) -> None:
        self.loop = loop
        self.tick_s = tick_s
        self._watches: dict[Hashable, tuple[float, Callable[[], object]]] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Deadlines:
        """This loop's deadlines: one sweeper per loop, shared by connections and requests."""
        deadlines = cls._by_loop.get(loop)
        if deadlines is None:
            deadlines = cls._by_loop[loop] = cls(loop)
        return deadlines

    def watch(self, key: Hashable, deadline: float, on_expiry: Callable[[], object]) -> None:
        """Call ``on_expiry`` once ``loop.time()`` passes ``deadline``, unless ``key`` is
        unwatched first; watching a key again replaces its deadline."""
        self._watches[key] = (deadline, on_expiry)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.tick_s, self._sweep)

    def unwatch(self, key: Hashable) -> None:
        self._watches.pop(key, None)

    def __len__(self) -> int:
        return len(self._watches)

    def _sweep(self) -> None:
        now = self.loop.time()
        expired = [key for key, (deadline, _) in self._watches.items() if deadline <= now]
        for key in expired:
            watched = self._watches.pop(key, None)  # an earlier expiry may have unwatched it
            if watched is None:
                continue
            try:
                watched[1]()  # may watch again: the loop above is done with the dict
            except Exception:  # one broken callback must not stop the other deadlines
                logger.exception("a deadline's expiry failed")
        self._sweeper = self.loop.call_later(self.tick_s, self._sweep) if self._watches else None
