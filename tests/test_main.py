"""What create_app sets up for the whole process."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

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


@pytest.mark.anyio
async def test_a_stopped_apps_models_can_be_freed(
    settings_factory: Callable[..., Settings],
) -> None:
    """Loading freezes the GC's view of every live object (fewer pauses); shutting down must
    thaw it, or a process that outlives the app keeps its models forever (cycles)."""
    import gc
    import weakref

    import httpx
    from asgi_lifespan import LifespanManager

    from tests.helpers.apps import wait_ready

    app = create_app(settings_factory(models=("cnn",)))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await wait_ready(client)
        module = weakref.ref(app.state.registry.runtime("cnn").module)
        assert gc.get_freeze_count() > 0
    del app, manager, transport, client
    gc.collect()
    assert gc.get_freeze_count() == 0
    assert module() is None  # the graph builder's job on it was waited for at shutdown


def test_the_young_generations_threshold_is_a_setting(
    settings_factory: Callable[..., Settings],
) -> None:
    import gc

    original = gc.get_threshold()
    try:
        create_app(settings_factory(gc_gen0_threshold=5000))
        assert gc.get_threshold() == (5000, *original[1:])  # the older generations untouched
        create_app(settings_factory())
        assert gc.get_threshold()[0] == 2000  # the default
    finally:
        gc.set_threshold(*original)
