"""Export a trained LoRA to llama.cpp: read the adapter, write its GGUF, check parity, merge."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repotune.server.models import sha256_file
from repotune.training.base import TrainError
from repotune.training.checkpoint import ADAPTER_DIR
from repotune.training.export.adapter import LoraWeights, read_peft_adapter, write_adapter_gguf
from repotune.training.export.gguf import arch_of
from repotune.training.export.merge import MERGE_KINDS, export_merged
from repotune.training.export.parity import (
    ParityReport,
    parity_check,
    raise_parity,
    torch_reference,
)
from repotune.training.finetune import base_for_run


@dataclass
class ExportResult:
    adapter_path: Path
    sha256: str
    size_bytes: int
    base_sha256: str
    parity: list[ParityReport]
    merged_path: Path | None = None
    merged_kind: str | None = None
    merged_sha256: str | None = None
    merged_parity: list[ParityReport] = field(default_factory=list)  # [F32 merged, quantized]

    def to_json(self) -> dict[str, Any]:
        return {
            "adapter_path": str(self.adapter_path),
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "base_sha256": self.base_sha256,
            "parity": [report.to_json() for report in self.parity],
            "merged_path": str(self.merged_path) if self.merged_path else None,
            "merged_kind": self.merged_kind,
            "merged_sha256": self.merged_sha256,
            "merged_parity": [report.to_json() for report in self.merged_parity],
        }


def export(
    run_dir: Path,
    output: Path,
    parity_texts: Sequence[str],
    check: bool = True,
    merge: str | None = None,
    dtype: str = "f32",
    allow_q4: bool = False,
) -> ExportResult:
    """Write the run's best adapter as a GGUF adapter; check parity; optionally merge.

    With `merge`, the merged model is written as `<output stem>-<merge>.gguf` only when its
    parity passes (F32 merged model, then the quantized one); otherwise ParityError, and the
    quantized file is left as `*.failed-parity.gguf`.
    """
    check_request(check, merge, allow_q4)
    run_dir = Path(run_dir)
    adapter_dir = run_dir / ADAPTER_DIR
    if not adapter_dir.is_dir():
        raise TrainError(f"{run_dir} has no trained adapter ({ADAPTER_DIR}/); run finetune first")
    base = base_for_run(run_dir)
    if base.gguf_path is None:
        raise TrainError("exporting needs a GGUF base (the model the server runs)")
    lora = read_gguf_keyed(adapter_dir, base.gguf_path)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_adapter_gguf(lora, base.gguf_path, output, dtype=dtype)
    reports: list[ParityReport] = []
    merged: Path | None = None
    merged_reports: list[ParityReport] = []
    if check:
        reference = torch_reference(run_dir, parity_texts)
        reports = parity_check(run_dir, output, parity_texts, reference=reference)
        failed = [report for report in reports if not report.passed]
        if failed:
            output.rename(output.with_suffix(".failed-parity.gguf"))
            raise_parity(failed[0], "the adapter was not exported")
        if merge:
            merged, merged_reports = export_merged(lora, base, output, merge, reference)
    result = ExportResult(
        adapter_path=output,
        sha256=sha256_file(output),
        size_bytes=output.stat().st_size,
        base_sha256=base.sha256,
        parity=reports,
        merged_path=merged,
        merged_kind=merge if merged else None,
        merged_sha256=sha256_file(merged) if merged else None,
        merged_parity=merged_reports,
    )
    (run_dir / "export.json").write_text(json.dumps(result.to_json(), indent=2))
    return result


def check_request(check: bool, merge: str | None, allow_q4: bool) -> None:
    """Refuse an export that could not be trusted before any file is written."""
    if merge is not None and merge not in MERGE_KINDS:
        raise TrainError(f"unsupported merge type '{merge}' (choose from {', '.join(MERGE_KINDS)})")
    if merge == "Q4_K_M" and not allow_q4:
        raise TrainError(
            "merging into Q4_K_M is refused by default: 4-bit re-quantization of the merged "
            "weights adds noise the parity check cannot separate from adapter bugs; use Q8_0, "
            "the adapter (default), or pass --allow-q4 to export it with its parity reported"
        )
    if merge is not None and not check:
        raise TrainError("a merged export needs the parity check (drop --no-check)")


def read_gguf_keyed(adapter_dir: Path, base_gguf: Path) -> LoraWeights:
    """The peft adapter, keyed by the GGUF tensor names of its base."""
    arch, blocks = arch_of(base_gguf)
    return read_peft_adapter(adapter_dir, arch, blocks)
