"""The control stores the store tests make: a factory of stores that share one service."""

from __future__ import annotations

from collections.abc import Callable

from app.serving.store.base import ControlStore

StoreFactory = Callable[..., ControlStore]
