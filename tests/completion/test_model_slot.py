"""The generator's slot: background loading, replacement and closing (fake models)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from repotune.server.completion.model_slot import ModelSlot
from repotune.server.config import load_settings
from repotune.server.models import ModelError


class FakeLlm:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeLoaded:
    def __init__(self, name: str) -> None:
        self.name = name
        self.llm = FakeLlm()
        self.info: dict[str, Any] = {"name": name}


def test_a_load_replaced_while_under_way_is_discarded_and_closed() -> None:
    gate = threading.Event()
    made: list[FakeLoaded] = []

    def loader(settings: Any) -> Any:
        loaded = FakeLoaded(settings.model.adapter)
        if loaded.name == "first":
            gate.wait(10)  # still loading when the settings change
        made.append(loaded)
        return loaded

    slot = ModelSlot(loader, threading.Lock())
    slot.start_loading(load_settings(None, {"model": {"adapter": "first"}}))
    slot.replace(load_settings(None, {"model": {"adapter": "second"}}))
    assert slot.wait_ready(10)
    assert slot.loaded is not None and slot.loaded.name == "second"  # type: ignore[attr-defined]
    gate.set()
    for _ in range(100):  # the stale load finishes, sees it is stale, closes its model
        if len(made) == 2 and made[-1].llm.closed:
            break
        threading.Event().wait(0.02)
    stale = [m for m in made if m.name == "first"]
    assert stale and stale[0].llm.closed
    assert slot.loaded.name == "second"  # type: ignore[attr-defined]


def test_replacing_waits_for_the_generation_before_closing_the_old_model() -> None:
    lock = threading.Lock()
    slot = ModelSlot(lambda settings: FakeLoaded(settings.model.adapter), lock)
    slot.start_loading(load_settings(None, {"model": {"adapter": "old"}}))
    assert slot.wait_ready(10)
    old = slot.loaded
    with lock:  # a generation is decoding with the old model
        slot.replace(load_settings(None, {"model": {"adapter": "new"}}))
        threading.Event().wait(0.1)
        assert not old.llm.closed  # type: ignore[union-attr]
    assert slot.wait_ready(10)
    for _ in range(100):
        if old.llm.closed:  # type: ignore[union-attr]
            break
        threading.Event().wait(0.02)
    assert old.llm.closed  # type: ignore[union-attr]


def test_a_failed_load_is_an_error_message_and_close_closes() -> None:
    def failing(settings: Any) -> Any:
        raise ModelError("generator: no such file")

    slot = ModelSlot(failing, threading.Lock())
    assert not slot.started
    slot.start_loading(load_settings())
    assert not slot.wait_ready(10)
    assert slot.started and slot.load_error == "generator: no such file"
    ok = ModelSlot(lambda settings: FakeLoaded("x"), threading.Lock())
    ok.start_loading(load_settings())
    assert ok.wait_ready(10)
    model = ok.loaded
    ok.close()
    assert ok.closed and ok.loaded is None and model.llm.closed  # type: ignore[union-attr]
    ok.replace(load_settings())  # closed: nothing loads again
    threading.Event().wait(0.1)
    assert ok.loaded is None and not ok.ready


def test_the_listener_hears_each_load_end_ready_or_failed() -> None:
    heard: list[tuple[str, bool, str | None]] = []
    slots: dict[str, ModelSlot] = {}

    def listener_of(name: str) -> Callable[[], None]:
        return lambda: heard.append((name, slots[name].ready, slots[name].load_error))

    def failing(settings: Any) -> Any:
        raise ModelError("generator: no such file")

    slots["ok"] = ModelSlot(lambda settings: FakeLoaded("x"), threading.Lock(), listener_of("ok"))
    slots["ok"].start_loading(load_settings())
    assert slots["ok"].wait_ready(10)
    slots["ok"].replace(load_settings(None, {"model": {"adapter": "new"}}))
    assert slots["ok"].wait_ready(10)
    slots["broken"] = ModelSlot(failing, threading.Lock(), listener_of("broken"))
    slots["broken"].start_loading(load_settings())
    assert not slots["broken"].wait_ready(10)
    for _ in range(100):  # the listener runs just after the ready event is set
        if len(heard) == 3:
            break
        threading.Event().wait(0.02)
    assert sorted(heard, key=str) == [  # two threads may finish in either order
        ("broken", False, "generator: no such file"),
        ("ok", True, None),
        ("ok", True, None),
    ]
