"""Optional teacher: question/answer pairs about the repository from an OpenAI-compatible endpoint.

The original work's synthetic Q&A pairs, made locally when `train.teacher_endpoint` is set: for a
bounded sample (`train.teacher_max_pairs`) of *train-split* definitions the teacher is shown the
code and asked, as JSON, for a question a developer might ask about it and its answer. Each pair
becomes a ``qa`` example built with the server's own question prompt (`prompts.build_ask_document`
for base models such as the default Gemma 3 270M, the model's chat template over
`prompts.build_ask_messages` otherwise), with context retrieved for the question from train files
only, the definition itself as the oracle snippet, and distractors; like the FIM kinds, a
`train.no_context_share` of the examples keep only the distractors (RAFT).

The endpoint is probed once before any work (a clear error when it cannot be reached); replies
that are not the JSON asked for are counted in the statistics, never fatal. The API key is read
from the environment variable named by `train.teacher_api_key_env` and never written anywhere.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from repotune.server.ask.definitions import Definition, definitions, snippet_of
from repotune.server.config import Settings
from repotune.training.base import TrainError
from repotune.training.data.qa import DOCUMENT_END, AskPrompt, assemble, qa_row
from repotune.training.data.spans import Span, example_id

__all__ = [
    "DOCUMENT_END",
    "AskPrompt",
    "Definition",
    "TeacherClient",
    "TeacherStats",
    "definitions",
    "parse_pair",
    "qa_examples",
    "sample_definitions",
    "snippet_of",
]

MAX_CODE_CHARS = 4000  # what the teacher is shown of one definition

# No minLength/maxLength: grammar-constrained servers (llama.cpp) expand them into huge rules.
QA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
    "additionalProperties": False,
}

TEACHER_SYSTEM = (
    "You write training data for a code assistant. Given code from a repository, write one "
    "question a developer working in that repository might ask about it, and a correct, concise "
    "answer that names the file and the function or class. Reply with JSON only: "
    '{"question": "...", "answer": "..."}.'
)


def sample_definitions(files: Sequence[Any], count: int, seed: int) -> list[Definition]:
    """`count` train-split definitions, spread over files (round robin in a seeded order)."""
    rng = random.Random(f"{seed}:teacher")
    per_file = []
    for source in files:
        if source.split != "train":
            continue
        found = definitions(source)
        rng.shuffle(found)
        if found:
            per_file.append(found)
    rng.shuffle(per_file)
    chosen: list[Definition] = []
    while len(chosen) < count and any(per_file):
        for group in per_file:
            if group and len(chosen) < count:
                chosen.append(group.pop())
    return chosen


@dataclass
class TeacherStats:
    """What the teacher gave; kept in stats.json beside the example counts."""

    requested: int = 0
    pairs: int = 0
    malformed: int = 0  # not JSON, or JSON without a non-empty question and answer
    failed: int = 0  # HTTP errors and timeouts after the probe succeeded
    model: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)

    def count(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class TeacherClient:
    """A small OpenAI-compatible chat client (httpx) that asks for one Q&A pair at a time."""

    def __init__(self, settings: Settings, transport: Any = None) -> None:
        import httpx

        train = settings.train
        if not train.teacher_endpoint:
            raise TrainError("no teacher endpoint is configured (train.teacher_endpoint)")
        self.endpoint = train.teacher_endpoint.rstrip("/")
        self.model = train.teacher_model
        self.max_tokens = train.teacher_max_tokens
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(train.teacher_api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(train.teacher_timeout_s, connect=10.0),
            transport=transport,
        )
        # OpenAI's response_format first; llama-cpp-python's server only knows its own dialect
        # ({"type": "json_object", "schema": ...}) and says so with a 4xx, once.
        self._dialect = "json_schema"

    def close(self) -> None:
        self._client.close()

    def probe(self) -> None:
        """One cheap request, so a wrong URL fails before minutes of dataset work."""
        import httpx

        url = f"{self.endpoint}/models"
        try:
            response = self._client.get(url, timeout=10.0)
        except httpx.HTTPError as exc:
            raise TrainError(
                f"teacher endpoint {self.endpoint} is unreachable ({type(exc).__name__}: {exc}); "
                "fix train.teacher_endpoint or unset it to build the dataset without a teacher"
            ) from None
        if response.status_code in (401, 403):
            raise TrainError(
                f"teacher endpoint {self.endpoint} refused the request ({response.status_code}); "
                "put the API key in the environment variable named by train.teacher_api_key_env"
            )
        if response.status_code >= 500:
            raise TrainError(
                f"teacher endpoint {self.endpoint} answered {response.status_code} to GET /models"
            )

    def _body(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        if self._dialect == "json_schema":
            response_format: dict[str, Any] = {
                "type": "json_schema",
                "json_schema": {"name": "qa_pair", "strict": True, "schema": QA_SCHEMA},
            }
        else:
            response_format = {"type": "json_object", "schema": QA_SCHEMA}
        body: dict[str, Any] = {
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": 0.2,
            "response_format": response_format,
        }
        if self.model:
            body["model"] = self.model
        return body

    def chat(self, messages: list[dict[str, str]]) -> str:
        """The reply's text; httpx.HTTPError on transport or HTTP errors."""
        url = f"{self.endpoint}/chat/completions"
        response = self._client.post(url, json=self._body(messages))
        if (
            self._dialect == "json_schema"
            and response.status_code in (400, 422, 500)
            and "response_format" in response.text
        ):
            self._dialect = "json_object"
            response = self._client.post(url, json=self._body(messages))
        response.raise_for_status()
        payload = response.json()
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return ""
        return content if isinstance(content, str) else ""


def parse_pair(text: str) -> tuple[str, str] | None:
    """(question, answer) from a reply, tolerating code fences and text around the JSON."""
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text.split("\n", 1)[1] if "\n" in text else ""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        # strict=False: grammar-constrained servers let raw newlines into strings.
        data = json.loads(text[start : end + 1], strict=False)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    question, answer = data.get("question"), data.get("answer")
    if not isinstance(question, str) or not isinstance(answer, str):
        return None
    question, answer = question.strip(), answer.strip()
    if len(question) < 8 or len(answer) < 2:
        return None
    return question, answer


def teacher_messages(path: str, code: str) -> list[dict[str, str]]:
    fence = path.rsplit(".", 1)[-1] if "." in path else ""
    user = f"File {path}:\n```{fence}\n{code[:MAX_CODE_CHARS]}\n```"
    return [{"role": "system", "content": TEACHER_SYSTEM}, {"role": "user", "content": user}]


# --------------------------------------------------------------------------- examples


def qa_examples(
    builder: Any,
    client: TeacherClient,
    ask: AskPrompt,
    stats: TeacherStats,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Ask the teacher about sampled train definitions; one ``qa`` row per usable pair."""
    import httpx
    from tqdm import tqdm

    settings: Settings = builder.settings
    train = settings.train
    by_path = {source.path: source for source in builder.files}
    allowed = {source.path for source in builder.files if source.split == "train"}
    chosen = sample_definitions(builder.files, train.teacher_max_pairs, train.seed)
    stats.model = client.model
    # Room for the answer within max_seq_tokens; ~3 characters per token for code.
    chars = max(400, min(6000, (train.max_seq_tokens - train.teacher_max_tokens // 2 - 96) * 3))
    rows = []
    for definition in tqdm(chosen, desc="teacher", unit="pair", disable=not progress):
        source = by_path[definition.path]
        oracle = snippet_of(source, definition)
        stats.requested += 1
        try:
            reply = client.chat(teacher_messages(definition.path, oracle.text))
        except httpx.HTTPError as exc:
            stats.failed += 1
            stats.count(type(exc).__name__)
            continue
        pair = parse_pair(reply)
        if pair is None:
            stats.malformed += 1
            stats.count("empty" if not reply.strip() else "not the JSON asked for")
            continue
        question, answer = pair
        mode = "distractors_only" if builder.rng.random() < train.no_context_share else "retrieved"
        context = assemble(builder, question, definition.path, oracle, allowed, mode)
        span = Span("qa", definition.node, definition.start, definition.end)
        rows.append(
            qa_row(
                builder,
                ask,
                row_id=example_id(definition.path, span) + f"-{stats.pairs}",
                source=source,
                span=definition.node,
                start=definition.start,
                end=definition.end,
                question=question,
                answer=answer,
                context=context,
                chars=chars,
                split="train",
            )
        )
        stats.pairs += 1
    return rows
