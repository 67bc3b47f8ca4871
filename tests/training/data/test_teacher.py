"""Teacher Q&A pairs against a real OpenAI-compatible server: llama-cpp-python's own server
running the default Gemma 3 270M (grammar-constrained JSON), offline on a local port.

Checks that `qa` examples appear in the train split only, built with the server's question prompt,
with context from train files only; that statistics count them; that truncated replies are counted
as malformed instead of failing; and that an unreachable endpoint is a clear error up front.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import copy_fixture_repo
from repotune.server.ask.prompts import build_ask_document
from repotune.server.completion.context import ContextSnippet
from repotune.server.config import load_settings
from repotune.training.base import TrainError
from repotune.training.data.teacher import DOCUMENT_END, parse_pair

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
pytest.importorskip("sse_starlette")
pytest.importorskip("starlette_context")
pytest.importorskip("pydantic_settings")

REPO_FILES = ["retrieval.py", "postprocess.py", "prompts.py", "models.py", "embeddings.py"]

# llama_cpp.server with llama.cpp's repacked ("extra") CPU buffers off, as the engine loads models
# (AMX advertised but not enabled makes those kernels crash on some virtual machines).
LAUNCH = """
import sys
import llama_cpp.llama_cpp as native
original = native.llama_model_default_params
def patched():
    params = original()
    params.use_extra_bufts = False
    return params
native.llama_model_default_params = patched
from llama_cpp.server.__main__ import main
sys.argv[0] = "llama_cpp.server"
main()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def teacher_url(generator_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import httpx

    port = free_port()
    log = tmp_path_factory.mktemp("teacher") / "server.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                LAUNCH,
                "--model",
                str(generator_model.path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--chat_format",
                "gemma",
                "--n_threads",
                "1",
                "--verbose",
                "false",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def small_repo(target: Path) -> Path:
    return copy_fixture_repo(REPO_FILES, target)


def settings_for(tmp: Path, url: str | None, **train: object):  # type: ignore[no-untyped-def]
    values = {
        "max_seq_tokens": 512,
        "test_share": 0.2,
        "validation_share": 0.2,
        "teacher_endpoint": url,
        "teacher_max_pairs": 3,
        "teacher_max_tokens": 96,
        "teacher_timeout_s": 60.0,
        "question_share": 0.0,  # only the teacher's pairs (code-derived ones: their own test)
        **train,
    }
    return load_settings(
        None, {"train": values, "index": {"index_dir": str(tmp / "index")}, "model": {"threads": 1}}
    )


def rows(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


def test_parse_pair_is_defensive() -> None:
    assert parse_pair('{"question": "What does f do?", "answer": "It adds."}') == (
        "What does f do?",
        "It adds.",
    )
    fenced = '```json\n{"question": "Why is x cached?",\n "answer": "Speed."}\n```'
    assert parse_pair(fenced) == ("Why is x cached?", "Speed.")
    raw_newline = '{"question": "What is\n returned?", "answer": "A list."}'
    assert parse_pair(raw_newline) == ("What is\n returned?", "A list.")
    for bad in ["", "no json", '{"question": "What does f do?"', '{"question": 3, "answer": "x"}']:
        assert parse_pair(bad) is None
    assert parse_pair('{"question": "", "answer": "yes"}') is None
    assert parse_pair('["question", "answer"]') is None


def test_teacher_pairs_are_train_only_in_the_servers_prompt(
    teacher_url: str, tmp_path: Path
) -> None:
    from repotune.training.data.build import build_dataset

    repo = small_repo(tmp_path / "repo")
    out = tmp_path / "out"
    started = time.perf_counter()
    stats = build_dataset(
        repo, out, settings_for(tmp_path, teacher_url), per_kind=1, progress=False
    )
    elapsed = time.perf_counter() - started
    teacher = stats.teacher
    assert teacher is not None
    assert teacher["requested"] == 3 and teacher["failed"] == 0
    assert teacher["pairs"] + teacher["malformed"] == teacher["requested"]
    assert teacher["pairs"] > 0, teacher
    assert stats.examples["train"].get("qa", 0) == teacher["pairs"]
    assert "qa" not in stats.examples["validation"] and "qa" not in stats.examples["test"]
    saved = json.loads((out / "stats.json").read_text())
    assert saved["teacher"] == teacher

    split = json.loads((out / "split.json").read_text())
    train_files = set(split["train"])
    qa = [row for row in rows(out, "train") if row["kind"] == "qa"]
    assert len(qa) == teacher["pairs"]
    for name in ("validation", "test"):
        assert all(row["kind"] != "qa" for row in rows(out, name))
    reference, stops = build_ask_document("Q?", [ContextSnippet(path="x.py", text="pass")])
    head = reference.split("### ")[0]
    assert DOCUMENT_END in stops  # the engine stops where the trained answer ends
    for row in qa:
        assert row["split"] == "train" and row["path"] in train_files
        assert row["format"] == "ask_document"  # the default Gemma 3 270M has no chat template
        assert row["prompt"].startswith(head)
        assert row["prompt"].endswith(f"\n\nQuestion: {row['question']}\nAnswer:")
        assert row["completion"] == " " + row["middle"] + DOCUMENT_END
        assert row["segments"] == [[row["prompt"], False]]
        assert row["context"], row
        for snippet in row["context"]:
            assert snippet["path"] in train_files  # context never leaves the train split
            citation = f"### {snippet['path']}:{snippet['start_line']}-{snippet['end_line']}"
            assert citation in row["prompt"]
        roles = {snippet["role"] for snippet in row["context"]}
        assert ("oracle" in roles) == (row["context_mode"] == "retrieved")
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    print(f"dataset with 3 teacher requests: {elapsed:.1f} s")


def test_truncated_teacher_replies_are_counted_not_fatal(teacher_url: str, tmp_path: Path) -> None:
    """A 16-token cap cuts the JSON short: the build goes on and the statistics say why."""
    from repotune.training.data.build import build_dataset

    repo = small_repo(tmp_path / "repo")
    settings = settings_for(tmp_path, teacher_url, teacher_max_pairs=2, teacher_max_tokens=16)
    stats = build_dataset(repo, tmp_path / "out", settings, per_kind=1, progress=False)
    teacher = stats.teacher
    assert teacher is not None and teacher["requested"] == 2
    assert teacher["malformed"] >= 1 and teacher["failed"] == 0, teacher
    assert teacher["reasons"].get("not the JSON asked for", 0) >= 1
    assert stats.examples["train"].get("qa", 0) == teacher["pairs"]


def test_unreachable_teacher_is_a_clear_error_up_front(tmp_path: Path) -> None:
    from repotune.training.data.build import build_dataset

    repo = small_repo(tmp_path / "repo")
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    out = tmp_path / "out"
    started = time.perf_counter()
    with pytest.raises(TrainError, match=r"teacher endpoint .* is unreachable"):
        build_dataset(repo, out, settings_for(tmp_path, url), per_kind=1, progress=False)
    assert time.perf_counter() - started < 30
    assert not out.exists()  # nothing was built before the probe
