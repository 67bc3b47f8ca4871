"""Which completion engine the settings ask for: the in-process model, or an OpenAI-compatible
endpoint (`model.endpoint`, remote.py). Both offer what the assistant and the CLI use."""

from __future__ import annotations

from collections.abc import Callable

from repotune.server.completion.engine import CompletionEngine
from repotune.server.completion.remote import EndpointEngine
from repotune.server.config import Settings


def engine_for(
    settings: Settings,
    current: CompletionEngine | EndpointEngine | None = None,
    on_settled: Callable[[], None] | None = None,
) -> CompletionEngine | EndpointEngine:
    """The engine the settings ask for, loading: `current` reloaded when it is of that kind,
    else a new one (and `current` closed). A model already in memory is never loaded twice:
    the in-process engine becomes the endpoint's fallback (when fallback is on), and a started
    fallback serves on when the endpoint is removed. `on_settled` is told when a load ends."""
    remote = bool(settings.model.endpoint)
    if current is not None and isinstance(current, EndpointEngine) == remote:
        current.reload(settings)
        return current
    if (
        isinstance(current, CompletionEngine)
        and settings.model.endpoint_fallback
        and current.load_error is None
        and current.settings.model.in_process() == settings.model.in_process()
    ):
        return EndpointEngine(settings, on_settled=on_settled, local=current)
    if isinstance(current, EndpointEngine):
        local = current.release_local()
        if local is not None:
            local.reload(settings)  # a changed model is loaded in its place, in the background
            return local
    elif current is not None:
        current.close()
    engine: CompletionEngine | EndpointEngine = (
        EndpointEngine(settings, on_settled=on_settled)
        if remote
        else CompletionEngine(settings, on_settled=on_settled)
    )
    engine.start_loading()
    return engine
