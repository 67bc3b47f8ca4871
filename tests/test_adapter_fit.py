"""An adapter that does not fit the generator is refused with its reason before llama.cpp sees
it: llama.cpp refuses such a file too, but llama-cpp-python then crashed the process
(segmentation fault), the language server with it. Real generator, crafted adapters."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from repotune.server.adapter_fit import AdapterMismatch, check_adapter_fits
from repotune.server.models import ModelError, ResolvedModel, default_adapter_path, fitting_adapter
from tiny_models import write_lora

# The 270M generator's blk.0.attn_q.weight: 1024 rows out, 640 columns in.
Q = "blk.0.attn_q.weight"
MISFITS: dict[str, tuple[dict, str, str]] = {
    # name: (write_lora's arguments, what the refusal says)
    "whole-model": ({"pairs": {Q: (1024, 640, 8)}, "kind": "model"}, "not a LoRA adapter"),
    "other-architecture": ({"pairs": {Q: (1024, 640, 8)}, "architecture": "llama"}, "'llama'"),
    "other-size": ({"pairs": {Q: (1024, 320, 8)}}, "another size"),
    "half-a-pair": ({"pairs": {Q: (1024, 640, 0)}}, "missing one of its two tensors"),
    "unknown-weight": ({"pairs": {"blk.99.attn_q.weight": (1024, 640, 8)}}, "does not have"),
}


@pytest.mark.parametrize("name", sorted(MISFITS))
def test_a_misfit_is_refused_with_its_reason(
    name: str, generator_model: ResolvedModel, tmp_path: Path
) -> None:
    arguments, reason = MISFITS[name]
    adapter = write_lora(tmp_path / f"{name}.gguf", **arguments)
    with pytest.raises(AdapterMismatch, match=reason):
        check_adapter_fits(adapter, generator_model.path)
    with pytest.raises(ModelError, match=f"{name}.gguf.*does not fit the generator"):
        fitting_adapter(str(adapter), generator_model)


def test_fitting_adapters_pass(generator_model: ResolvedModel, tmp_path: Path) -> None:
    check_adapter_fits(default_adapter_path(), generator_model.path)
    small = write_lora(tmp_path / "fits.gguf", {Q: (1024, 640, 8)})
    assert fitting_adapter(str(small), generator_model).path == small


def test_the_generator_itself_as_the_adapter_is_refused(generator_model: ResolvedModel) -> None:
    with pytest.raises(AdapterMismatch, match=r"general\.type is 'model'"):
        check_adapter_fits(generator_model.path, generator_model.path)


def test_repotune_complete_with_a_misfit_adapter_exits_with_the_reason(
    generator_model: ResolvedModel, tmp_path: Path
) -> None:
    """The old code died with a segmentation fault (exit -11) inside llama-cpp-python."""
    (tmp_path / "app.py").write_text("def double(x):\n    return x * 2\n")
    shutil.copy(generator_model.path, tmp_path / "base.gguf")  # the user's mix-up
    for adapter in (
        tmp_path / "base.gguf",
        write_lora(tmp_path / "small.gguf", {Q: (512, 640, 8)}),
    ):
        result = subprocess.run(
            [
                *(sys.executable, "-m", "repotune", "complete", "app.py:2:5", "--no-context"),
                *("--model", str(generator_model.path), "--adapter", str(adapter)),
            ],
            cwd=tmp_path,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 1, (result.returncode, result.stderr)
        assert "does not fit the generator" in result.stderr


def test_past_the_check_llama_cpp_s_refusal_is_an_error_not_a_crash(
    generator_model: ResolvedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a misfit get past check_adapter_fits, llama.cpp still refuses it; llama-cpp-python
    0.3 missed that (a NULL pointer is not None) and served on until the first decode crashed."""
    from repotune.server.completion import model as model_module
    from repotune.server.config import load_settings

    misfit = write_lora(tmp_path / "other-size.gguf", {Q: (1024, 320, 8)})
    monkeypatch.setattr(
        model_module,
        "fitting_adapter",
        lambda reference, generator: ResolvedModel(reference, Path(reference), "", "test"),
    )
    settings = load_settings(
        None, {"model": {"generator": str(generator_model.path), "adapter": str(misfit)}}
    )
    with pytest.raises(ModelError, match=r"adapter was refused.*incorrect shape"):
        model_module.load_model(settings)
