"""The real server over stdio (pytest-lsp), with the real default model and a real temp repo."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsp_client import SERVE, execute, open_document, record_statuses, start_session
from lsprotocol import types
from pygls.exceptions import JsonRpcMethodNotFound, JsonRpcRequestCancelled
from pytest_lsp import LanguageClient

# One server for the module: every test runs on the loop the module-scoped client lives on.
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

MODEL_WAIT_S = 180.0

GEOMETRY = '''"""Small geometry helpers used by the shapes module."""

import math


def distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Euclidean distance between two points."""
    return math.hypot(a[0] - b[0], a[1] - b[1])


def polygon_perimeter(points: list[tuple[float, float]]) -> float:
    """Sum of the edge lengths of a closed polygon."""
    total = 0.0
    for index, point in enumerate(points):
        total += distance(point, points[(index + 1) % len(points)])
    return total
'''

SHAPES = (
    '''"""Shapes that know their size."""

from geometry import distance, polygon_perimeter


class Square:
    def __init__(self, corner: tuple[float, float], side: float) -> None:
        self.corner = corner
        self.side = side

    def corners(self) -> list[tuple[float, float]]:
        x, y = self.corner
        s = self.side
        return [(x, y), (x + s, y), (x + s, y + s), (x, y + s)]

    def perimeter(self) -> float:
        return polygon_perimeter(self.corners())

    def diagonal(self) -> float:
        corners = self.corners()
'''
    + "        return \n"
)  # the cursor goes after "return "


def make_repo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "geometry.py").write_text(GEOMETRY)
    (root / "shapes.py").write_text(SHAPES)
    (root / "README.md").write_text("# shapes\n\nGeometry helpers: distance, perimeter.\n")
    return root


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("lsp") / "shapes-repo")


async def wait_until_ready(client: LanguageClient, timeout: float = MODEL_WAIT_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = await execute(client, "repotune.status")
        if status["state"] == "error":
            raise AssertionError(f"server reported an error: {status}")
        if status["state"] == "idle":
            return status
        await asyncio.sleep(0.5)
    raise AssertionError(f"server not ready after {timeout}s: {status}")


def end_of_file_position(path: Path) -> types.Position:
    lines = path.read_text().split("\n")
    # the cursor sits after "return " on the last non-empty line
    line = max(i for i, text in enumerate(lines) if text.strip())
    return types.Position(line=line, character=len(lines[line]))


@pytest_lsp.fixture(
    scope="module",
    config=SERVE,
)
async def client(lsp_client: LanguageClient, repo: Path, tmp_path_factory: pytest.TempPathFactory):
    lsp_client.repotune_statuses = record_statuses(lsp_client)  # type: ignore[attr-defined]
    answer_progress: list[Any] = []
    lsp_client.feature("repotune/answerProgress")(lambda params: answer_progress.append(params))
    lsp_client.answer_progress = answer_progress  # type: ignore[attr-defined]
    index_dir = tmp_path_factory.mktemp("index")
    result = await start_session(lsp_client, [repo], {"index": {"index_dir": str(index_dir)}})
    lsp_client.initialize_result = result  # type: ignore[attr-defined]
    lsp_client.first_status = await execute(lsp_client, "repotune.status")  # type: ignore[attr-defined]
    await wait_until_ready(lsp_client)
    yield
    await lsp_client.shutdown_session()


async def test_initialize_returns_at_once_with_capabilities(client: LanguageClient) -> None:
    # Loading happens only after initialize (its time is measured by `repotune bench lsp`).
    assert client.first_status["state"] in ("starting", "loading")  # type: ignore[attr-defined]
    caps = client.initialize_result.capabilities  # type: ignore[attr-defined]
    assert caps.inline_completion_provider
    assert caps.completion_provider is not None
    commands = caps.execute_command_provider.commands
    for name in ("repotune.ask", "repotune.reindex", "repotune.status", "repotune.search"):
        assert name in commands


async def test_progress_and_status_notifications_arrive(client: LanguageClient) -> None:
    reports = [r for token, r in client.progress_reports.items() if "index" in str(token)]
    assert reports, "no work-done progress for indexing"
    # The end is sent by the indexer's thread and may follow the "idle" status reply.
    deadline = time.monotonic() + 10
    while type(reports[0][-1]).__name__ != "WorkDoneProgressEnd" and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    kinds = [type(value).__name__ for value in reports[0]]
    assert kinds[0] == "WorkDoneProgressBegin"
    assert kinds[-1] == "WorkDoneProgressEnd"
    assert client.repotune_statuses, "no repotune/status notification"  # type: ignore[attr-defined]


async def test_inline_completion_inside_a_real_function(client: LanguageClient, repo: Path) -> None:
    uri = open_document(client, repo / "shapes.py")
    position = end_of_file_position(repo / "shapes.py")
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=position,
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Invoked
            ),
        )
    )
    items = result.items if isinstance(result, types.InlineCompletionList) else result
    assert items, "no inline completion item"
    item = items[0]
    text = item.insert_text if isinstance(item.insert_text, str) else item.insert_text.value
    assert text.strip(), "whitespace-only completion"
    assert item.range is None  # inserted at the cursor


async def test_completion_fallback_serves_one_item(client: LanguageClient, repo: Path) -> None:
    uri = open_document(client, repo / "shapes.py")
    position = end_of_file_position(repo / "shapes.py")
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=position
        )
    )
    assert isinstance(result, types.CompletionList)
    assert len(result.items) == 1
    assert result.items[0].text_edit.new_text.strip()


async def test_unsaved_buffer_text_is_used(client: LanguageClient, repo: Path) -> None:
    """The completion comes from the buffer as typed, not from the file on disk."""
    uri = (repo / "draft.py").as_uri()
    text = "from geometry import distance\n\n\ndef midpoint_distance(a, b):\n    return distance("
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text="")
        )
    )
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=4, character=len("    return distance(")),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
    )
    assert result.items, "the unsaved buffer produced no completion"


async def test_automatic_requests_after_a_deletion_or_mid_line_are_declined(
    client: LanguageClient, repo: Path
) -> None:
    """Backspace gets no ghost text (it would re-insert what was deleted), nor does a cursor
    with code to its right; asking explicitly still gets a completion."""
    uri = (repo / "typing.py").as_uri()
    line = "    return distance("
    text = f"from geometry import distance\n\n\ndef gap(a, b):\n{line}x"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=text
            )
        )
    )

    def edit(version: int, start: int, end: int, new_text: str) -> None:
        """One incremental change on line 4, as an editor sends a keystroke."""
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(
                            start=types.Position(line=4, character=start),
                            end=types.Position(line=4, character=end),
                        ),
                        text=new_text,
                    )
                ],
            )
        )

    edit(2, len(line), len(line) + 1, "")  # backspace over the "x"

    async def request(kind: types.InlineCompletionTriggerKind, character: int) -> list[Any]:
        result = await client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=4, character=character),
                context=types.InlineCompletionContext(trigger_kind=kind),
            )
        )
        items = result.items if isinstance(result, types.InlineCompletionList) else result
        return list(items or [])

    before = (await execute(client, "repotune.status"))["engine"]
    assert await request(types.InlineCompletionTriggerKind.Automatic, len(line)) == []
    assert await request(types.InlineCompletionTriggerKind.Invoked, len(line)), "invoked: none"
    after = (await execute(client, "repotune.status"))["engine"]
    assert after["skipped_after_deletion"] == before["skipped_after_deletion"] + 1
    # typing again re-enables automatic completions; a cursor before "distance(" is mid-line
    edit(3, len(line), len(line), "a")
    assert await request(types.InlineCompletionTriggerKind.Automatic, len("    return ")) == []
    assert await request(types.InlineCompletionTriggerKind.Automatic, len(line) + 1)
    final = (await execute(client, "repotune.status"))["engine"]
    assert final["skipped_mid_line"] == after["skipped_mid_line"] + 1
    assert final["skipped_after_deletion"] == after["skipped_after_deletion"]


async def wait_for_engine(
    client: LanguageClient, what: str, check: Any, timeout: float = 120.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    engine: dict[str, Any] = {}
    while time.monotonic() < deadline:
        engine = (await execute(client, "repotune.status"))["engine"]
        if check(engine):
            return engine
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s: {engine}")


async def test_an_edit_starts_the_prompt_before_the_request_arrives(
    client: LanguageClient, repo: Path
) -> None:
    """didChange (a keystroke) prefills the edited place's prompt in the background; the
    completion request that follows keeps it. A `repotune/prefetch` notification (the cursor came
    to rest somewhere) does the same; a malformed one is ignored."""
    uri = (repo / "ahead.py").as_uri()
    head = "from geometry import distance, polygon_perimeter\n\n\ndef total_length(paths):\n"
    line = "    return sum(polygon_perimeter"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=head + line
            )
        )
    )
    before = await wait_for_engine(client, "idle", lambda e: "ahead" in e)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(
                        start=types.Position(line=4, character=len(line)),
                        end=types.Position(line=4, character=len(line)),
                    ),
                    text="(",
                )
            ],
        )
    )
    done = await wait_for_engine(
        client,
        "a prefill after the edit",
        lambda e: e["ahead"]["prefills"] > before["ahead"]["prefills"],
    )
    assert done["prefetched"] == before["prefetched"] + 1
    assert done["ahead"]["prefill_tokens"] > before["ahead"]["prefill_tokens"]
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=4, character=len(line) + 1),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
    )
    assert isinstance(result, types.InlineCompletionList) and result.items
    after = (await execute(client, "repotune.status"))["engine"]
    assert after["ahead"]["prefill_used_tokens"] > before["ahead"]["prefill_used_tokens"]

    client.protocol.notify("repotune/prefetch", {"textDocument": {"uri": uri}})  # no position
    client.protocol.notify(
        "repotune/prefetch",
        {"textDocument": {"uri": uri}, "position": {"line": 3, "character": 24}},  # line end
    )
    moved = await wait_for_engine(
        client,
        "a prefill for the cursor's new place",
        lambda e: e["ahead"]["prefills"] > after["ahead"]["prefills"],
    )
    assert moved["prefetched"] == after["prefetched"] + 1
    assert (await execute(client, "repotune.status"))["state"] in ("idle", "busy")


async def test_cancelled_request_stops_generation(client: LanguageClient, repo: Path) -> None:
    uri = open_document(client, repo / "geometry.py")
    before = (await execute(client, "repotune.status"))["engine"]
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=15, character=0),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Invoked
        ),
    )
    # $/cancelRequest sent by hand: pygls' own client cannot take the reply to a future it
    # cancelled, but a server must still answer, here with RequestCancelled.
    msg_id = f"cancel-me-{time.monotonic_ns()}"
    first = asyncio.ensure_future(
        client.protocol.send_request_async("textDocument/inlineCompletion", params, msg_id)
    )
    await asyncio.sleep(0.3)
    client.protocol.notify("$/cancelRequest", types.CancelParams(id=msg_id))
    with pytest.raises(JsonRpcRequestCancelled):
        await asyncio.wait_for(first, timeout=60)
    # A newer request for the same document supersedes the one in flight: sent back to back,
    # the second is cancelled by the third (at once or between tokens) and comes back empty.
    second = asyncio.ensure_future(client.text_document_inline_completion_async(params))
    third = asyncio.ensure_future(client.text_document_inline_completion_async(params))
    superseded = await asyncio.wait_for(second, timeout=60)
    assert isinstance(superseded, types.InlineCompletionList)
    assert list(superseded.items) == [], superseded
    newest = await asyncio.wait_for(third, timeout=60)
    assert isinstance(newest, types.InlineCompletionList)
    # One generation thread: the first two requests have finished when the third has.
    after = (await execute(client, "repotune.status"))["engine"]
    assert after["cancelled"] == before["cancelled"] + 2, (before, after)


async def test_ask_cites_a_real_file(client: LanguageClient, repo: Path) -> None:
    answer = await execute(
        client, "repotune.ask", {"question": "How is the polygon perimeter computed?"}
    )
    # The model's own text and the cited sources come separately (an editor renders them once);
    # `text` lists the sources after the answer for clients that show it as it is.
    assert answer["answer"].strip() and "**Sources**" not in answer["answer"], answer
    own_text, _, sources = answer["text"].partition("**Sources**")
    assert own_text.strip() == answer["answer"]
    assert "geometry.py:" in sources
    cited = {citation["path"] for citation in answer["citations"]}
    assert "geometry.py" in cited
    for citation in answer["citations"]:
        assert (repo / citation["path"]).is_file()
        assert citation["start_line"] >= 1


async def test_an_answer_grows_in_front_of_a_client_that_gave_a_token(
    client: LanguageClient,
) -> None:
    progress: list[Any] = client.answer_progress  # type: ignore[attr-defined]
    question = {"question": "Where is polygon_perimeter defined?"}
    before = len(progress)
    await execute(client, "repotune.ask", question)
    assert len(progress) == before  # no token, no notifications
    answer = await execute(client, "repotune.ask", {**question, "progressToken": "q-7"})
    await asyncio.sleep(0.2)  # notifications sent just before the response may trail it
    texts = [item.text for item in progress[before:] if item.token == "q-7"]
    assert texts and len(texts) == len(progress) - before, progress[before:]
    # each carries the whole answer so far: it grows, and ends as the response's answer begins
    for shorter, longer in itertools.pairwise(texts):
        assert longer.startswith(shorter), (shorter, longer)
    assert answer["answer"].startswith(texts[-1]), (texts[-1], answer["answer"])
    assert answer["answer"].startswith("`polygon_perimeter` (geometry.py:")


async def test_asked_from_the_editor_the_answer_is_about_the_code_in_view(
    client: LanguageClient, repo: Path
) -> None:
    """ "What does this function do?" is about the function at the cursor of the document the
    editor has open, as the buffer has it (not yet saved), cited first."""
    scratch = repo / "unsaved_scratch.py"  # open in the editor, never written to disk
    text = (
        "def triangle_area(base: float, height: float) -> float:\n"
        '    """Half the base times the height."""\n'
        "    return base * height / 2\n"
    )
    uri = scratch.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=text
            )
        )
    )
    cursor = {"line": 2, "character": 10}
    question = {
        "question": "What does this function do?",
        "textDocument": {"uri": uri},
        "range": {"start": cursor, "end": cursor},
    }
    answer = await execute(client, "repotune.ask", question)
    assert answer["answer"].startswith(
        "`triangle_area` (unsaved_scratch.py:1): Half the base times the height."
    ), answer["answer"]
    first = answer["citations"][0]
    assert (first["path"], first["start_line"], first["end_line"]) == ("unsaved_scratch.py", 1, 3)
    # selected lines go first, followed by the function they lie in
    selected = {"start": {"line": 2, "character": 4}, "end": {"line": 3, "character": 0}}
    answer = await execute(
        client, "repotune.ask", {**question, "question": "Why divide by 2?", "range": selected}
    )
    lines = [(c["path"], c["start_line"], c["end_line"]) for c in answer["citations"][:2]]
    assert lines == [("unsaved_scratch.py", 3, 3), ("unsaved_scratch.py", 1, 3)], answer
    # a document the editor has not opened is not read: the question is asked without it
    unopened = {**question, "textDocument": {"uri": (repo / "geometry.py").as_uri()}}
    answer = await execute(client, "repotune.ask", unopened)
    assert answer["citations"][0]["path"] != "unsaved_scratch.py"
    with pytest.raises(Exception, match="range"):
        await execute(client, "repotune.ask", {**question, "range": {"start": cursor}})
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )


async def test_where_code_is_used_is_read_from_the_index(
    client: LanguageClient, repo: Path
) -> None:
    """ "What calls X?" was answered with X's own definition: the model cannot list what it was
    not shown. The index lists every line that uses it, with the function each is in."""
    answer = await execute(client, "repotune.ask", {"question": "Where is distance used?"})
    assert answer["answer"] == (
        "`distance` is used in 1 place in 1 file (defined at geometry.py:6):\n"
        "- geometry.py:15 (in `polygon_perimeter`): "
        "`total += distance(point, points[(index + 1) % len(points)])`\n"
        "Imported without a use in: shapes.py:3.\n"
        "Mentioned in: README.md:3."
    ), answer["answer"]
    cited = [(c["path"], c["start_line"], c["end_line"]) for c in answer["citations"]]
    assert cited == [("geometry.py", 15, 15), ("shapes.py", 3, 3)]
    # and the other way: what it calls, each with where it is defined
    answer = await execute(
        client, "repotune.ask", {"question": "What does polygon_perimeter call?"}
    )
    assert answer["answer"].splitlines()[:3] == [
        "`polygon_perimeter` (geometry.py:11) calls:",
        "- `enumerate` (line 14): not defined in the indexed code (a builtin or a library)",
        "- `distance` (line 15): defined at geometry.py:6",
    ], answer["answer"]
    # asked from the editor: the function at the cursor is the one looked for
    uri = (repo / "geometry.py").as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=GEOMETRY
            )
        )
    )
    cursor = {"line": 13, "character": 4}  # in polygon_perimeter
    answer = await execute(
        client,
        "repotune.ask",
        {
            "question": "Where is this function called?",
            "textDocument": {"uri": uri},
            "range": {"start": cursor, "end": cursor},
        },
    )
    assert answer["answer"].startswith(
        "`polygon_perimeter` is used in 1 place in 1 file (defined at geometry.py:11):\n"
        "- shapes.py:17 (in `Square.perimeter`): `return polygon_perimeter(self.corners())`"
    ), answer["answer"]
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )


async def test_file_changed_on_disk_is_seen_by_next_retrieval(
    client: LanguageClient, repo: Path
) -> None:
    (repo / "units.py").write_text(
        "def convert_furlongs_to_meters(furlongs: float) -> float:\n    return furlongs * 201.168\n"
    )
    deadline = time.monotonic() + 20
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not found:
        results = await execute(client, "repotune.search", {"query": "convert_furlongs_to_meters"})
        found = [r for r in results if r["path"] == "units.py"]
        await asyncio.sleep(0.3)
    assert found, "a new file on disk never reached retrieval"


async def test_reindex_catches_up_with_a_change_no_event_reported(
    client: LanguageClient, repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A write through a hard link outside the workspace changes a workspace file without any
    inotify event in the watched directories (events go to the directory of the path written);
    repotune.reindex finds it by the file's changed stat."""
    outside = tmp_path_factory.mktemp("outside") / "tides.py"
    outside.write_text("def tide_table_v1() -> list[float]:\n    return []\n")
    linked = repo / "tides.py"
    os.link(outside, linked)
    assert await search_finds(client, "tide_table_v1", "tides.py"), "the new file was never seen"
    with outside.open("w") as handle:  # the same inode, written through the outside path
        handle.write("def tide_table_estuary_v2() -> list[float]:\n    return [1.5]\n")
    await asyncio.sleep(2.0)  # longer than the debounce: an event, had there been one, is handled
    assert not await search_finds(client, "tide_table_estuary_v2", "tides.py", wait=0.0)
    await execute(client, "repotune.reindex")
    assert await search_finds(client, "tide_table_estuary_v2", "tides.py"), "reindex missed it"
    linked.unlink()


async def search_finds(client: LanguageClient, query: str, path: str, wait: float = 20.0) -> bool:
    """Whether repotune.search returns a chunk of `path` holding `query`, within `wait` s."""
    deadline = time.monotonic() + wait
    while True:
        results = await execute(client, "repotune.search", {"query": query})
        if any(r["path"] == path and query in r["text"] for r in results):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.3)


async def test_errors_leave_the_server_serving(client: LanguageClient) -> None:
    with pytest.raises(Exception, match="question"):
        await execute(client, "repotune.ask", {"not_a_question": 1})
    with pytest.raises(JsonRpcMethodNotFound):
        await client.protocol.send_request_async("repotune/doesNotExist", {})
    status = await execute(client, "repotune.status")
    assert status["state"] in ("idle", "busy", "indexing")


async def test_invalid_setting_is_reported_and_previous_value_kept(client: LanguageClient) -> None:
    # A client sends its whole settings section each time (the index stays where it is; a
    # payload that moves the index reopens the folder — see README Status).
    index_dir = (await execute(client, "repotune.status"))["settings"]["index"]["index_dir"]
    client.messages.clear()
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={
                "repotune": {
                    "completion": {"max_tokens_line": "lots"},
                    "index": {"index_dir": index_dir},
                }
            }
        )
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not client.messages:
        await asyncio.sleep(0.1)
    assert client.messages, "no window/showMessage for an invalid setting"
    assert "completion.max_tokens_line" in client.messages[-1].message
    status = await execute(client, "repotune.status")
    assert status["settings"]["completion"]["max_tokens_line"] != "lots"
    # a valid change is applied
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={
                "repotune": {
                    "completion": {"max_tokens_line": 20},
                    "index": {"index_dir": index_dir},
                }
            }
        )
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = await execute(client, "repotune.status")
        if status["settings"]["completion"]["max_tokens_line"] == 20:
            break
        await asyncio.sleep(0.1)
    assert status["settings"]["completion"]["max_tokens_line"] == 20


@pytest.fixture(scope="module")
def second_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lsp2") / "units-repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "units.py").write_text(
        "def feet_to_meters(feet: float) -> float:\n    return feet * 0.3048\n"
    )
    # Its own adapter choice cannot apply: one model serves every folder (the first folder's).
    (root / "repotune.toml").write_text('[model]\nadapter = "none"\n')
    return root


async def test_multi_root_folders_added_and_removed_at_run_time(
    client: LanguageClient, repo: Path, second_repo: Path
) -> None:
    client.workspace_did_change_workspace_folders(
        types.DidChangeWorkspaceFoldersParams(
            event=types.WorkspaceFoldersChangeEvent(
                added=[types.WorkspaceFolder(uri=second_repo.as_uri(), name=second_repo.name)],
                removed=[],
            )
        )
    )
    deadline = time.monotonic() + 60
    results: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        results = await execute(client, "repotune.search", {"query": "feet_to_meters"})
        if any(r["uri"].startswith(second_repo.as_uri()) for r in results):
            break
        await asyncio.sleep(0.3)
    status = await execute(client, "repotune.status")
    roots = {folder["root"] for folder in status["folders"]}
    assert roots == {str(repo.resolve()), str(second_repo.resolve())}, (
        [f["root"] for f in status["folders"]],
        status.get("errors"),
    )
    assert any(r["uri"].startswith(second_repo.as_uri()) for r in results)
    rows = {folder["root"]: folder for folder in status["folders"]}
    assert "model_settings_unused" not in rows[str(repo.resolve())]
    unused = rows[str(second_repo.resolve())]["model_settings_unused"]
    assert "adapter = 'none'" in unused and "are not used" in unused, unused
    warnings = [m.message for m in client.log_messages if m.type == types.MessageType.Warning]
    assert unused in warnings, warnings  # said once in the log when the folder came
    client.workspace_did_change_workspace_folders(
        types.DidChangeWorkspaceFoldersParams(
            event=types.WorkspaceFoldersChangeEvent(
                added=[],
                removed=[types.WorkspaceFolder(uri=second_repo.as_uri(), name=second_repo.name)],
            )
        )
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = await execute(client, "repotune.status")
        if len(status["folders"]) == 1:
            break
        await asyncio.sleep(0.2)
    assert [folder["root"] for folder in status["folders"]] == [str(repo.resolve())]
