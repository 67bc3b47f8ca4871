"""The embedder: turn-taking (a waiting query goes before the dense fill's next slice) and the
fast path for short queries."""

from __future__ import annotations

import threading
import time
from typing import Any

from repotune.server.llm.embeddings import QueryFirstLock


def test_waiting_query_goes_before_the_next_background_slice() -> None:
    lock = QueryFirstLock()
    order: list[str] = []
    query_waiting = threading.Event()

    def background() -> None:
        for n in range(3):
            with lock.for_background():
                order.append(f"slice{n}")
                if n == 0:
                    query_waiting.wait(5)
                    time.sleep(0.05)  # the query is now blocked on this slice

    def query() -> None:
        query_waiting.set()
        with lock.for_query(5) as acquired:
            assert acquired
            order.append("query")

    worker = threading.Thread(target=background)
    worker.start()
    while not order:
        time.sleep(0.001)
    asker = threading.Thread(target=query)
    asker.start()
    worker.join(10)
    asker.join(10)
    assert order == ["slice0", "query", "slice1", "slice2"]


def test_query_gives_up_after_its_timeout() -> None:
    lock = QueryFirstLock()
    with lock.for_background():
        started = time.monotonic()
        with lock.for_query(0.05) as acquired:
            assert not acquired
        assert time.monotonic() - started < 1
    with lock.for_background():  # nothing left waiting: the fill goes on
        pass


def test_short_query_padded_with_a_filler_sequence_keeps_its_vector(embedder: Any) -> None:
    """embed_query sends a 32-63-token query beside a filler sequence (llama.cpp's fast path
    starts at 64 tokens in a batch); the real embedder must give the same vector as alone."""
    from repotune.server.llm import embeddings

    query = (
        "def load_settings(path, overrides=None):\n"
        '    data = tomllib.loads(path.read_text(encoding="utf-8"))\n'
        "    return merge_layers(data, overrides or {})"
    )
    tokens = embedder.count_tokens(query)
    assert embeddings.PAD_QUERY_FROM <= tokens < embeddings.PAD_QUERY_TO
    alone = embedder.embed([query])[0]
    padded = embedder.embed_query(query)
    assert float(alone @ padded) > 0.99999
    other = embedder.embed_query("class HttpServer:\n    pass")
    assert float(alone @ other) < 0.9
