"""A bound on the request bytes one process holds at once, across all requests.

Why: each body may be up to TORCHGATE_MAX_UPLOAD_BYTES (20 MiB) and is read whole before it is
decoded, so clients that start many large uploads (or send them slowly) would make the process
hold that many times 20 MiB, with nothing to stop it short of the kernel's OOM killer. A
request takes its body's bytes from the budget as they arrive (never what a header declares,
which costs a client nothing to send) and gives them back when it is answered; one that does
not fit is answered 503 with ``Retry-After``, and the server serves on. The small bodies of
ordinary traffic never come near the bound.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from app.errors import Overloaded


class UploadBudget:
    """Bytes of request bodies (and what parsing them costs) taken and not given back yet;
    taken on the event loop as bytes arrive, and in the decode pool while a body is inflated or
    parsed there, hence the lock."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.held = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> None:
        """Take ``size`` bytes, or raise ``Overloaded`` when they do not fit. A request alone
        always fits, so a bound below the upload limit cannot refuse everything."""
        with self._lock:
            if self.held and self.held + size > self.max_bytes:
                raise Overloaded(
                    f"the server is reading {self.held:,} bytes of other uploads and takes at "
                    f"most {self.max_bytes:,} at once (TORCHGATE_MAX_UPLOAD_BYTES_IN_FLIGHT); "
                    "retry shortly."
                )
            self.held += size

    def give_back(self, size: int) -> None:
        with self._lock:
            self.held -= size

    @contextmanager
    def holding(self, size: int) -> Iterator[None]:
        """``size`` bytes taken for the block (e.g. a body's inflated copy), given back after."""
        self.take(size)
        try:
            yield
        finally:
            self.give_back(size)
