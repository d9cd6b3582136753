"""What create_app sets up for the whole process."""

from __future__ import annotations

import sys
from collections.abc import Callable

from app.config import Settings
from app.main import create_app


def test_the_gil_switch_interval_is_a_setting(settings_factory: Callable[..., Settings]) -> None:
    original = sys.getswitchinterval()
    try:
        create_app(settings_factory(gil_switch_interval_ms=0.3))
        assert abs(sys.getswitchinterval() - 0.0003) < 1e-9
        create_app(settings_factory())
        assert abs(sys.getswitchinterval() - 0.0002) < 1e-9  # the default
    finally:
        sys.setswitchinterval(original)
