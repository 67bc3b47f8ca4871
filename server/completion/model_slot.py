"""The generator's slot: the model loaded on a background thread, replaced when its settings
change, and closed only once the generation using it has let go.

Loading never happens on a caller's thread; until a model is ready `loaded` is None, and a load
failure becomes `load_error` (a ModelError message), never an exception out of the thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from repotune.server.completion.model import LoadedModel
from repotune.server.config import Settings, SettingsError
from repotune.server.models import ModelError

log = logging.getLogger(__name__)


class ModelSlot:
    """One loaded model at a time; `generation_lock` is held by whoever decodes with it."""

    def __init__(
        self,
        loader: Callable[[Settings], LoadedModel],
        generation_lock: threading.Lock,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        self._loader = loader
        self._generation_lock = generation_lock
        # Told when a load ends (ready or failed): nothing else would tell the editor.
        self._on_settled = on_settled
        self._state = threading.Lock()  # the fields below
        self.loaded: LoadedModel | None = None
        self.load_error: str | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._generation = 0  # bumped by replace(); a stale load thread discards its model
        self.closed = False

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def loading(self) -> bool:
        return self._thread is not None and not self._ready.is_set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self.loaded is not None

    def start_loading(self, settings: Settings) -> None:
        """Load with `settings` on a background thread (once); returns at once."""
        with self._state:
            if self.closed or self._thread is not None:
                return
            self.load_error = None
            thread = threading.Thread(
                target=self._load,
                args=(self._generation, settings),
                name="repotune-model",
                daemon=True,
            )
            self._thread = thread
        thread.start()

    def _load(self, generation: int, settings: Settings) -> None:
        try:
            loaded = self._loader(settings)
        except ModelError as exc:
            error: str | None = str(exc)
            loaded = None
        except SettingsError as exc:  # the cache folder the model lives in cannot be used
            error = f"generator: {exc}"
            loaded = None
        except Exception as exc:  # never let a load failure escape the thread
            error = f"generator: unexpected error while loading ({type(exc).__name__}: {exc})"
            loaded = None
        else:
            error = None
        with self._state:
            if generation != self._generation or self.closed:
                if loaded is not None:
                    loaded.llm.close()
                return
            self.loaded = loaded
            self.load_error = error
            if error:
                log.error("%s", error)
            else:
                log.info("generator loaded: %s", loaded.info if loaded else None)
            self._ready.set()
        if self._on_settled is not None:
            try:
                self._on_settled()
            except Exception:  # a listener's failure must not look like a load failure
                log.exception("model slot: on_settled failed")

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until loading finished (successfully or not); True when a model is ready."""
        self._ready.wait(timeout)
        return self.ready

    def replace(self, settings: Settings) -> None:
        """Load a model for new settings; the old one is closed in the background once the
        generation using it (if any) has let go of it."""
        with self._state:
            self._generation += 1
            old, self.loaded = self.loaded, None
            self._thread = None
            self.load_error = None
            self._ready.clear()
        if old is not None:
            threading.Thread(
                target=self._retire, args=(old,), name="repotune-model-retire", daemon=True
            ).start()
        self.start_loading(settings)

    def _retire(self, old: LoadedModel) -> None:
        with self._generation_lock:  # a generation still using the old model finishes first
            old.llm.close()

    def close(self) -> None:
        """Close the model; call with the generation lock held (nothing decodes with it)."""
        with self._state:
            self.closed = True
            self._generation += 1
            old, self.loaded = self.loaded, None
        if old is not None:
            old.llm.close()
