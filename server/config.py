"""One validated settings object for the server, the CLI and the trainer.

Precedence, lowest first: built-in defaults < the workspace's `repotune.toml` (or the
`[tool.repotune]` table of its `pyproject.toml`) < values from the editor
(initializationOptions / workspace configuration) or the command line.
Every error names the offending key and where it came from, so a user can fix it. What a
repository's own file may not set is checked in repository_settings.py.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from repotune.server.index.redact import DEFAULT_SECRET_PATTERNS
from repotune.server.repository_settings import repository_problem, repository_values
from repotune.server.untrusted_files import read_regular_file

CONFIG_FILE_NAME = "repotune.toml"
# A settings file (or a pyproject.toml) beyond this is not one; a link to /proc or a huge file
# must not be read whole.
SETTINGS_FILE_MAX_BYTES = 1 << 20


class SettingsError(ValueError):
    """Raised for any invalid setting; the message names the key and its source."""


def chroma_url_problem(value: str) -> str | None:
    """Why `value` is not a usable Chroma server address (http[s]://HOST[:PORT]), or None."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"expected http://HOST:PORT or https://HOST[:PORT], got {value!r}"
    if parts.username or parts.password:
        return "put the token in the variable named by index.chroma_token_env, not in the URL"
    if parts.path.strip("/") or parts.query or parts.fragment:
        return f"the Chroma client takes no path, query or fragment (got {value!r})"
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        return f"bad port in {value!r}: {exc}"
    return None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# 'auto' (every layer the device takes), -1 (the same), 0 (CPU only) or a layer count.
GpuLayers = Literal["auto"] | Annotated[int, Field(ge=-1)]


class ModelSettings(_Section):
    generator: str = Field("default", description="'default', a .gguf path or hf:ORG/REPO[:FILE]")
    embedder: str = Field("default", description="'default' (MiniLM-L6-v2) or a GGUF embedder")
    adapter: str | None = Field(
        "default",
        description="LoRA adapter in GGUF: 'default' (shipped with RepoTune, for the default "
        "generator), 'none', a path or an hf: reference",
    )
    adapter_scale: float = Field(1.0, ge=0.0, le=4.0)
    context_length: int = Field(4096, ge=256, le=131072)
    threads: int = Field(
        0,
        ge=0,
        le=512,  # llama.cpp's GGML_MAX_N_THREADS: 100000 aborted the process (std::bad_alloc)
        description="0 = automatic (all physical cores); at most the logical CPUs are used",
    )
    gpu_layers: GpuLayers = Field(
        "auto",
        description="'auto' = every layer when llama.cpp was built with a GPU backend (-1 is the "
        "same), 0 = CPU only, N = the first N layers; the generator and the embedder",
    )
    prompt_format: str = Field(
        "auto", description="'auto' or a format name from completion/prompts.py"
    )
    cpu_extra_buffers: bool | None = Field(
        None,
        description="llama.cpp extra CPU weight buffers (repack/AMX); unset = off on AMX CPUs, "
        "where llama.cpp's AMX path crashed on Gemma 3",
    )
    repository_models: bool = Field(
        True,
        description="load the model files a repository's own settings file names; false in an "
        "untrusted workspace (the VS Code extension sends it); never from a repository's file",
    )
    # Remote generation (completion/remote.py). Never from a repository's own file: an
    # untrusted repository would choose where its code and prompts are sent (load_settings).
    endpoint: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+",
        description="OpenAI-compatible base URL (e.g. http://gpu-box:8080/v1): completions go "
        "to {endpoint}/completions, questions to {endpoint}/chat/completions; unset = in-process",
    )
    endpoint_model: str | None = Field(
        None,
        description="model name sent to the endpoint (vLLM: the served or LoRA module name); "
        "with prompt_format 'auto' it also picks the prompt format",
    )
    endpoint_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="NAME of the environment variable holding the endpoint's API key (sent as a "
        "Bearer token; the key itself is never a setting)",
    )
    endpoint_timeout_ms: int = Field(
        5000, ge=100, le=600_000, description="connect and between-chunk timeout"
    )
    endpoint_fallback: bool = Field(
        True,
        description="when the endpoint fails, load the local generator and complete with it",
    )

    def in_process(self) -> dict[str, Any]:
        """The settings that decide the model loaded in-process (not the endpoint's, nor the
        trust flag, whose effect is already in `adapter`)."""
        return self.model_dump(exclude={"repository_models"} | _ENDPOINT_FIELDS)


_ENDPOINT_FIELDS = {name for name in ModelSettings.model_fields if name.startswith("endpoint")}


class IndexSettings(_Section):
    max_file_bytes: int = Field(1_000_000, ge=1, le=100_000_000)  # each is read whole
    exclude: list[str] = Field(
        default_factory=list, description="extra gitignore-style patterns to skip"
    )
    include: list[str] = Field(
        default_factory=list,
        description="gitignore-style patterns re-included even if ignored (vendored code)",
    )
    secret_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_SECRET_PATTERNS))
    index_dir: str | None = Field(
        None,
        description="where the index lives (default: the cache dir); relative: inside the "
        "workspace; absolute: a folder per workspace is made inside it. From a repository's "
        "own file: only below its .repotune/ folder or inside the cache dir",
    )
    chunk_lines: int = Field(60, ge=5, le=1000, description="target chunk size in lines")
    chunk_overlap: int = Field(10, ge=0, le=500)
    debounce_ms: int = Field(300, ge=0, le=60_000)
    dense: bool = Field(True, description="compute dense vectors (lexical-only when false)")
    embed_batch_size: int = Field(32, ge=1, le=1024)
    chroma_url: str | None = Field(
        None,
        description="a shared Chroma server (http://HOST:PORT) used as a team cache of chunk "
        "vectors; editor or command-line settings only, never a repository's own file",
    )
    chroma_tenant: str = Field("default_tenant", min_length=1)
    chroma_database: str = Field("default_database", min_length=1)
    chroma_token_env: str = Field(
        "REPOTUNE_CHROMA_TOKEN",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the server's token (the token is never stored)",
    )
    chroma_timeout_s: float = Field(
        5.0, gt=0, le=120, description="per-request timeout; a slower server counts as down"
    )

    @field_validator("chroma_url")
    @classmethod
    def _chroma_url_shape(cls, value: str | None) -> str | None:
        if value is None:
            return value
        problem = chroma_url_problem(value)
        if problem:
            raise ValueError(problem)
        return value.rstrip("/")


class RetrievalSettings(_Section):
    top_k: int = Field(5, ge=0, le=100)
    rrf_k: int = Field(60, ge=1)
    query_lines: int = Field(
        20, ge=1, le=400, description="lines before the cursor in the lexical query"
    )
    dense_query_lines: int = Field(
        6, ge=1, le=400, description="at most this many lines before the cursor in the dense query"
    )
    dense_query_tokens: int = Field(
        64,
        ge=8,
        le=512,
        description="and at most this many embedder tokens (whole lines nearest the cursor): the "
        "embedder's cost grows with each token, so this bounds a query's embedding cost",
    )
    definition_weight: float = Field(
        2.0,
        ge=0.0,
        le=10.0,
        description="weight of the definitions of names used near the cursor (found in other "
        "files) in the rank fusion, against 1 for the lexical and dense rankings, and of the "
        "names and quoted sentences a question gives; 0 turns the lookups off (recall@5 of "
        "cross-file definitions on trl/outlines: 3/13 % at 0, 23/43 % at 1, 30/74 % at 2)",
    )
    same_name_weight: float = Field(
        2.0,
        ge=0.0,
        le=10.0,
        description="weight of the other definitions of the function the cursor is in (a "
        "sibling class's method of the same name, this file's first) in the rank fusion; 0 "
        "turns the lookup off",
    )


class CompletionSettings(_Section):
    enabled: bool = True
    languages: list[str] = Field(default_factory=lambda: ["*"])
    fallback_completion_item: bool = Field(True, description="also answer textDocument/completion")
    # 256, not 512: the default adapter's training budget; a new place evaluates ~250 fewer
    # tokens, and line EM held (−0.3 [−1.7, +1.2] over 600 tasks on three repositories).
    context_tokens: int = Field(256, ge=0, le=32768)
    prefix_tokens: int = Field(512, ge=16, le=32768)
    # 64, not 192: a new place evaluates 128 fewer tokens; line EM held (−0.5 on two repos).
    suffix_tokens: int = Field(64, ge=0, le=32768)
    max_tokens_line: int = Field(48, ge=1, le=1024)
    max_tokens_block: int = Field(128, ge=1, le=4096)
    time_cap_ms: int = Field(2000, ge=50, le=120_000)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    cache_size: int = Field(256, ge=0)
    prompt_lookup: bool = Field(False, description="llama.cpp prompt-lookup decoding")
    token_healing: bool = Field(
        True,
        description="the prompt's last token before the cursor is left out and the answer "
        "must spell it first, so a half-typed name is finished, not cut after",
    )
    copy_lines: bool = Field(
        True,
        description="where what is typed on the cursor's line begins exactly one longer line "
        "in the retrieved snippets or above in the file, the completion starts with that "
        "line's rest and its end of line (the model goes on after it only in a block)",
    )
    repository_ngrams: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="greedy decoding mixes in what followed the same tokens in the open file "
        "and the indexed repository (a cache language model); the weight its matches can "
        "reach (0 = off)",
    )
    sticky_context: bool = Field(
        True,
        description="keep the retrieved snippets while the cursor stays near where they were "
        "retrieved (KV cache reuse: the next line's first request re-evaluates a few tokens, "
        "not the whole prompt)",
    )
    sticky_context_lines: int = Field(
        8, ge=0, le=1000, description="how near, in lines of the same file (0 = the same line)"
    )
    stable_context: bool = Field(
        True,
        description="at a new place one of whose two most relevant snippets the context block "
        "in the KV cache already shows, keep that block for the first suggestions (only the "
        "file's part of the prompt is evaluated) and switch to the place's own snippets once "
        "their prompt is evaluated in the background (with sticky_context)",
    )
    prefill: bool = Field(
        True,
        description="work ahead: complete an edited place in the background as soon as the "
        "edit arrives (the prompt a step at a time, then the completion), so the debounced "
        "request finds it done or under way",
    )
    first_line_first: bool = Field(
        True,
        description="on an empty line, answer with the block's first line as soon as it is "
        "generated; the rest is generated in the background for when the line is accepted",
    )
    warm_files: int = Field(
        3, ge=0, le=16, description="KV caches of this many recent files kept for going back"
    )
    # "auto": a fast machine answers as without it (no quality given up), a slow one in time.
    quick_start: bool | Literal["auto"] = Field(
        "auto",
        description="at a new place (the full prompt still needs more than "
        "quick_start_min_tokens evaluated) answer first from a short prompt: the window "
        "around the cursor and quick_context_tokens of retrieved context; the full prompt "
        'is evaluated in the background and answers once it is ready. "auto": only where '
        "the measured prompt speed makes a whole new-place prompt take over 1.8 s",
    )
    quick_prefix_tokens: int = Field(256, ge=16, le=4096)
    quick_suffix_tokens: int = Field(64, ge=0, le=4096)
    quick_context_tokens: int = Field(
        0,
        ge=0,
        le=32768,
        description="retrieved context in the short prompt (its most relevant snippets; 0: none)",
    )
    quick_start_min_tokens: int = Field(
        256,
        ge=0,
        le=32768,
        description="a request whose full prompt needs more than this many tokens evaluated "
        "gets the short prompt's answer (with quick_start)",
    )
    debounce_ms: int = Field(
        0,
        ge=0,
        le=5000,
        description="the editor client's extra wait after a keystroke before an automatic "
        "request, on top of the editor's own (VS Code: 50 ms); the server starts its work at "
        "the edit, so a longer wait saves no work and only delays the suggestion",
    )
    auto_skip_after_deletion: bool = Field(
        True,
        description="no automatic completion right after text was deleted (backspace, delete, "
        "cut); an explicit request still gets one",
    )
    auto_max_chars_right: int = Field(
        8,
        ge=0,
        le=100_000,
        description="no automatic completion when more than this many characters (closing "
        "brackets, quotes and punctuation not counted) follow the cursor on its line",
    )

    @property
    def prompt_budget_tokens(self) -> int:
        """Tokens of a whole completion prompt at a new place: context + prefix + suffix."""
        return self.context_tokens + self.prefix_tokens + self.suffix_tokens


class AskSettings(_Section):
    """Codebase questions: how long an answer may be and how much code the model is shown."""

    max_tokens: int = Field(256, ge=16, le=4096, description="token cap per answer")
    time_cap_ms: int = Field(
        30_000, ge=500, le=600_000, description="answers stop (with what they have) after this"
    )
    # About what training fits in train.max_seq_tokens (1024 tokens: ~2300 characters of code).
    context_chars: int = Field(
        3000, ge=200, le=200_000, description="characters of retrieved code in a question prompt"
    )


class TrainSettings(_Section):
    lora_r: int = Field(16, ge=1, le=512)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    learning_rate: float = Field(2e-4, gt=0)
    epochs: float = Field(2.0, gt=0)
    batch_size: int = Field(8, ge=1)
    micro_batch_size: int = Field(1, ge=1)
    max_seq_tokens: int = Field(1024, ge=128)
    eval_every: int = Field(20, ge=1)
    early_stopping_patience: int = Field(3, ge=1)
    seed: int = 1234
    distractors: int = Field(2, ge=0, le=20)
    no_context_share: float = Field(0.2, ge=0.0, le=1.0)
    teacher_endpoint: str | None = None
    teacher_model: str | None = None
    teacher_api_key_env: str = Field(
        "REPOTUNE_TEACHER_API_KEY",
        description="environment variable holding the teacher's API key (the key is never stored)",
    )
    teacher_max_pairs: int = Field(32, ge=0, le=10_000, description="teacher Q&A pairs to ask for")
    teacher_max_tokens: int = Field(384, ge=16, description="token cap per teacher reply")
    teacher_timeout_s: float = Field(120.0, gt=0, description="per-request teacher timeout")
    question_share: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="share of each file's examples that are questions derived from its code "
        "(what/where/how to call/which function/setting; 0 = none)",
    )
    question_abstain_share: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="share of those questions whose answer abstains: half about names the "
        "repository does not define, half with the definition left out of the context",
    )
    lora_target_modules: list[str] = Field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        description="linear layers that get LoRA (never the tied embeddings)",
    )
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto",
        description="recompute activations in the backward pass to save memory; 'auto': on for "
        "a GPU, off on the CPU, where compute rather than memory limits training",
    )
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0)
    eval_max_examples: int = Field(128, ge=1, description="validation examples per evaluation")
    max_examples: int = Field(20_000, ge=1, description="cap on examples per dataset split")
    test_share: float = Field(0.1, ge=0.0, lt=1.0, description="files held out for testing")
    validation_share: float = Field(0.1, ge=0.0, lt=1.0, description="files for validation")
    init_adapter: str = Field(
        "default",
        description="the adapter a fine-tune starts from: 'default' (the shipped default "
        "adapter, when training the default generator), 'none', or a GGUF adapter path",
    )


class Settings(_Section):
    model: ModelSettings = Field(default_factory=ModelSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    completion: CompletionSettings = Field(default_factory=CompletionSettings)
    ask: AskSettings = Field(default_factory=AskSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    telemetry: Literal[False] = Field(False, description="there is none; kept to say so")


def cache_dir() -> Path:
    """RepoTune's cache root: models, converted embedders and indexes live here."""
    override = os.environ.get("REPOTUNE_CACHE_DIR")
    root = Path(override) if override else Path(platformdirs.user_cache_dir("repotune"))
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # one line naming the folder and where it came from, not a traceback
        source = "REPOTUNE_CACHE_DIR" if override else "the default cache folder"
        raise SettingsError(
            f"RepoTune's cache folder {root} ({source}) cannot be used: {exc.strerror or exc}"
        ) from None
    return root


def _format_validation_error(error: ValidationError, source: str, prefix: str = "") -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        key = f"{prefix}{key}" if prefix else key
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown setting '{key}'")
        else:
            problems.append(f"setting '{key}': {item['msg']} (got {item.get('input')!r})")
    return f"{source}: " + "; ".join(problems)


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_workspace_config(workspace: Path) -> tuple[dict[str, Any], str | None]:
    """The workspace's own settings table and the file it came from (None when absent)."""
    own_file = workspace / CONFIG_FILE_NAME
    pyproject = workspace / "pyproject.toml"
    for path, table in ((own_file, None), (pyproject, ("tool", "repotune"))):
        try:
            raw = read_regular_file(path, SETTINGS_FILE_MAX_BYTES + 1)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise SettingsError(f"{path}: cannot be read: {exc.strerror or exc}") from None
        if len(raw) > SETTINGS_FILE_MAX_BYTES:
            raise SettingsError(f"{path}: larger than {SETTINGS_FILE_MAX_BYTES} bytes, not read")
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{path}: not valid TOML: {exc}") from exc
        if table is None:
            return data, str(path)
        section: Any = data
        for name in table:
            section = section.get(name) if isinstance(section, dict) else None
        if isinstance(section, dict):
            return section, str(path)
    return {}, None


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """`SECTION.KEY=VALUE` command-line pairs as a nested settings layer.

    Values are parsed as JSON where they are JSON, else taken as strings
    (`train.learning_rate=1e-4`, `model.adapter=a.gguf`)."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or "." not in key:
            raise SettingsError(f"--set expects SECTION.KEY=VALUE, got '{pair}'")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = result
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return result


def validate_layer(values: Mapping[str, Any], source: str) -> None:
    """Check one layer on its own so an error names the layer that is wrong."""
    try:
        Settings.model_validate(dict(values))
    except ValidationError as exc:
        raise SettingsError(_format_validation_error(exc, source)) from None


def load_settings(
    workspace: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    overrides_source: str = "editor settings",
) -> Settings:
    """Build the settings for a workspace, validating each layer separately."""
    merged: dict[str, Any] = {}
    if workspace is not None:
        file_values, file_source = read_workspace_config(workspace)
        if file_source:
            validate_layer(file_values, file_source)
            editor_index = (overrides or {}).get("index")
            editor_sets_dir = isinstance(editor_index, Mapping) and "index_dir" in editor_index
            problem = repository_problem(file_values, workspace, cache_dir(), editor_sets_dir)
            if problem:
                raise SettingsError(f"{file_source}: {problem}")
            editor_model = (overrides or {}).get("model")
            use_models = not (
                isinstance(editor_model, Mapping) and editor_model.get("repository_models") is False
            )
            merged = deep_merge(merged, repository_values(file_values, workspace, use_models))
    if overrides:
        validate_layer(overrides, overrides_source)
        merged = deep_merge(merged, overrides)
    return Settings.model_validate(merged)


def settings_with(settings: Settings, overrides: Mapping[str, Any], source: str) -> Settings:
    """A copy of `settings` with `overrides` applied; the original stays valid on error."""
    validate_layer(overrides, source)
    merged = deep_merge(settings.model_dump(), overrides)
    return Settings.model_validate(merged)
