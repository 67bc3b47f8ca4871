"""The framer alone, byte by byte (test_lsp_protocol_errors sends the same over real stdio)."""

from __future__ import annotations

import json

from repotune.server.lsp.framing import Body, FramingError, MessageFramer


def frame(message: dict[str, object], header: str = "Content-Length", delta: int = 0) -> bytes:
    body = json.dumps(message).encode()
    return f"{header}: {len(body) + delta}\r\n\r\n".encode() + body


def bodies(events: list[object]) -> list[dict[str, object]]:
    return [json.loads(e.data) for e in events if isinstance(e, Body)]


def errors(events: list[object]) -> list[str]:
    return [e.message for e in events if isinstance(e, FramingError)]


def test_header_names_are_case_insensitive_and_bytes_may_arrive_one_by_one() -> None:
    framer = MessageFramer()
    stream = frame({"id": 1}, "content-length") + frame({"id": 2}, "CONTENT-LENGTH")
    events = [event for byte in stream for event in framer.feed(bytes([byte]))]
    assert bodies(events) == [{"id": 1}, {"id": 2}]
    assert errors(events) == []


def test_a_length_that_is_not_a_number_is_reported_and_the_next_message_read() -> None:
    framer = MessageFramer()
    events = list(framer.feed(b'Content-Length: abc\r\n\r\n{"id": 1}' + frame({"id": 2})))
    assert bodies(events) == [{"id": 2}]
    assert len(errors(events)) == 1 and "not a number" in errors(events)[0]


def test_a_length_too_short_leaves_a_bad_body_then_resynchronizes() -> None:
    framer = MessageFramer()
    events: list[object] = []
    for event in framer.feed(frame({"id": 1, "x": "abc"}, delta=-3) + frame({"id": 2})):
        events.append(event)
        if isinstance(event, Body):
            try:
                json.loads(event.data)
            except ValueError:
                framer.resynchronize()  # what the server does after a parse error
    parsed = []
    for event in events:
        if isinstance(event, Body):
            try:
                parsed.append(json.loads(event.data))
            except ValueError:
                parsed.append("bad")
    assert parsed == ["bad", {"id": 2}]
    assert errors(events) == []  # the body's parse error is the one report


def test_a_length_too_long_ends_at_the_next_header_and_keeps_both_messages() -> None:
    framer = MessageFramer()
    events = list(framer.feed(frame({"id": 1}, delta=5) + frame({"id": 2}) + frame({"id": 3})))
    assert bodies(events) == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert [e.note != "" for e in events if isinstance(e, Body)] == [True, False, False]


def test_an_oversized_body_is_skipped_as_it_streams_and_never_buffered() -> None:
    framer = MessageFramer(max_bytes=1000)
    big = frame({"id": 1, "text": "x" * 50_000})
    events = list(framer.feed(big[:100]))
    for start in range(100, len(big), 4096):
        events += framer.feed(big[start : start + 4096])
        assert len(framer._buffer) < 4096 + 128  # a chunk and a scan overlap, never the body
    events += framer.feed(frame({"id": 2}))
    assert bodies(events) == [{"id": 2}]
    assert len(errors(events)) == 1 and "larger than the limit" in errors(events)[0]


def test_an_absurd_length_resynchronizes_at_the_next_header() -> None:
    framer = MessageFramer()
    events = list(framer.feed(b"Content-Length: 99999999999999\r\n\r\n" + frame({"id": 2})))
    assert bodies(events) == [{"id": 2}]
    assert len(errors(events)) == 1


def test_garbage_between_messages_is_reported_once() -> None:
    framer = MessageFramer()
    events = list(framer.feed(frame({"id": 1}) + b"hello\r\nworld\r\n" + frame({"id": 2})))
    assert bodies(events) == [{"id": 1}, {"id": 2}]
    assert len(errors(events)) == 1 and "skipped" in errors(events)[0]
