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

from repotune.server.config import Settings
from repotune.server.prompts import (
    ASK_DOCUMENT_STOPS,
    ContextSnippet,
    as_snippet,
    build_ask_document,
    build_ask_messages,
)
from repotune.training.base import TrainError

DEFINITION_NODES = frozenset(
    {
        "function_definition",
        "function_declaration",
        "function_item",
        "method_definition",
        "method_declaration",
        "class_definition",
        "class_declaration",
        "impl_item",
    }
)
MIN_DEFINITION_LINES = 3
MAX_DEFINITION_LINES = 80
MAX_CODE_CHARS = 4000  # what the teacher is shown of one definition
# The answer ends the way the served document prompt is stopped, so the model learns to stop.
DOCUMENT_END = ASK_DOCUMENT_STOPS[0]

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


# --------------------------------------------------------------------------- definitions


@dataclass(frozen=True)
class Definition:
    path: str
    node: str
    start: int  # bytes
    end: int
    start_line: int
    end_line: int


def definitions(source: Any) -> list[Definition]:
    """Functions, methods and classes of one file with a reasonable size (tree-sitter)."""
    from repotune.training.dataset import _parser, _walk

    try:
        tree = _parser(source.language).parse(source.data)
    except Exception:  # a grammar that fails to load: no definitions from this file
        return []
    found = []
    for node in _walk(tree.root_node):
        if node.type not in DEFINITION_NODES or node.has_error:
            continue
        first, last = node.start_point[0] + 1, node.end_point[0] + 1
        if MIN_DEFINITION_LINES <= last - first + 1 <= MAX_DEFINITION_LINES:
            found.append(
                Definition(source.path, node.type, node.start_byte, node.end_byte, first, last)
            )
    return found


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


# --------------------------------------------------------------------------- examples


@dataclass
class AskPrompt:
    """The server's question prompt for this generator: document (base model) or chat."""

    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""

    @classmethod
    def for_model(cls, llm: Any) -> AskPrompt:
        metadata = {str(k): str(v) for k, v in llm.metadata.items()}
        template = metadata.get("tokenizer.chat_template")
        if not template:
            return cls()

        def token_text(key: str) -> str:
            token_id = metadata.get(key)
            if token_id is None:
                return ""
            return llm.detokenize([int(token_id)], special=True).decode("utf-8", "replace")

        return cls(
            template,
            token_text("tokenizer.ggml.bos_token_id"),
            token_text("tokenizer.ggml.eos_token_id"),
        )

    @property
    def name(self) -> str:
        return "ask_chat" if self.chat_template else "ask_document"

    def build(self, question: str, snippets: Sequence[ContextSnippet], chars: int) -> str:
        if not self.chat_template:
            prompt, _stops = build_ask_document(question, snippets, max_snippet_chars=chars)
            return prompt
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        messages = build_ask_messages(question, snippets, max_snippet_chars=chars)
        formatter = Jinja2ChatFormatter(self.chat_template, self.eos_token, self.bos_token)
        prompt = formatter(messages=messages).prompt  # type: ignore[arg-type]
        # The engine's tokenizer adds BOS itself; the template's textual BOS would double it.
        return prompt.removeprefix(self.bos_token) if self.bos_token else prompt

    def completion(self, answer: str) -> str:
        if not self.chat_template:
            return " " + answer.strip() + DOCUMENT_END
        return answer.strip() + self.eos_token


def snippet_of(source: Any, definition: Definition) -> ContextSnippet:
    text = source.data[definition.start : definition.end].decode("utf-8", "replace")
    line_start = source.data.rfind(b"\n", 0, definition.start) + 1
    indent = source.data[line_start : definition.start].decode("utf-8", "replace")
    return ContextSnippet(
        path=definition.path,
        text=indent + text if not indent.strip() else text,
        start_line=definition.start_line,
        end_line=definition.end_line,
    )


def qa_examples(
    builder: Any,
    client: TeacherClient,
    ask: AskPrompt,
    stats: TeacherStats,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Ask the teacher about sampled train definitions; one ``qa`` row per usable pair."""
    import httpx
    from repotune.training.dataset import Span, _example_id, context_hit
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
        # What the server's ask does (index.search(question, top_k)), from train files only.
        retrieved = [
            as_snippet(c)
            for c in builder.retriever.index.search(question, settings.retrieval.top_k * 4 + 8)
            if c.path in allowed
        ][: max(1, settings.retrieval.top_k)]
        retrieved = [s for s in retrieved if not _overlaps(s, oracle)]
        distractors = [
            as_snippet(c)
            for c in builder._distractors(definition.path, allowed, {s.path for s in retrieved})
        ]
        mode = "retrieved"
        helpful = [oracle, *retrieved]
        if builder.rng.random() < train.no_context_share:
            mode, helpful = "distractors_only", []
        # The oracle leads, as the best hit does in the server's ranked context (and so it
        # survives the character cap); other hits and distractors follow in random order.
        rest = [*helpful[1:], *distractors]
        builder.rng.shuffle(rest)
        snippets = [*helpful[:1], *rest]
        if not snippets:
            mode = "none"
        roles = {(s.path, s.start_line): "retrieved" for s in retrieved}
        roles[(oracle.path, oracle.start_line)] = "oracle"
        for s in distractors:  # (one may repeat a retrieved chunk in a very small repository)
            roles.setdefault((s.path, s.start_line), "distractor")
        prompt = ask.build(question, snippets, chars)
        completion = ask.completion(answer)
        span = Span("qa", definition.node, definition.start, definition.end)
        rows.append(
            {
                "id": _example_id(definition.path, span) + f"-{stats.pairs}",
                "kind": "qa",
                "span": definition.node,
                "split": "train",
                "path": definition.path,
                "language": source.language,
                "start_byte": definition.start,
                "end_byte": definition.end,
                "format": ask.name,
                "prompt": prompt,
                "segments": [[prompt, False]],
                "completion": completion,
                "middle": answer,
                "question": question,
                "context": [
                    {
                        "path": s.path,
                        "start_line": s.start_line,
                        "end_line": s.last_line,
                        "role": roles.get((s.path, s.start_line), "retrieved"),
                    }
                    for s in snippets
                    if f"### {s.citation}" in prompt
                ],
                "context_mode": mode if snippets else "none",
                "context_hit": context_hit(answer, question, helpful),
                "prompt_tokens": builder.count(prompt),
                "completion_tokens": builder.count(completion),
            }
        )
        stats.pairs += 1
    return rows


def _overlaps(snippet: ContextSnippet, oracle: ContextSnippet) -> bool:
    if snippet.path != oracle.path:
        return False
    return not (snippet.last_line < oracle.start_line or snippet.start_line > oracle.last_line)
