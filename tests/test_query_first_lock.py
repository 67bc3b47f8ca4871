"""The embedder's turn-taking: a waiting query goes before the dense fill's next slice."""

from __future__ import annotations

import threading
import time

from repotune.server.embeddings import QueryFirstLock


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
