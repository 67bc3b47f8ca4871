"""The GGUF layout check that runs before llama.cpp opens a model file: the same answer as the
`gguf` package's own reader on real files (the shipped adapter, the converted embedder, files its
writer made), and a GGUFLayoutError, never another exception, a hang or a huge allocation, for
every truncation and a seeded set of corrupted copies."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
from repotune.server.gguf_layout import GGUFLayoutError, read_layout
from repotune.server.models import ModelError, ResolvedModel, default_adapter_path, validate_gguf


def write_gguf(path: Path, alignment: int | None = None) -> Path:
    """A small file with every kind of metadata value and tensors of three types."""
    writer = gguf.GGUFWriter(str(path), "llama")
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    writer.add_string("general.name", "tiny")
    writer.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(300)])
    writer.add_array("tokenizer.ggml.scores", [float(i) for i in range(300)])
    writer.add_array("nested", [[1, 2], [3]])
    writer.add_bool("flag", True)
    writer.add_int64("big", -(2**40))
    writer.add_float64("pi", 3.14159)
    writer.add_tensor("a", np.arange(64, dtype=np.float32).reshape(4, 16))
    writer.add_tensor("b", np.ones(96, dtype=np.float16))
    writer.add_tensor("c", np.zeros((2, 3, 8), dtype=np.int8))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def reader_answer(path: Path) -> tuple[int, int, int]:
    """(tensors, data start, data end) as gguf.GGUFReader sees them: the oracle."""
    reader = gguf.GGUFReader(str(path))
    ends = [int(t.data_offset) + int(t.n_bytes) for t in reader.tensors]
    starts = [int(t.data_offset) for t in reader.tensors]
    return len(reader.tensors), min(starts), max(ends)


def our_answer(path: Path) -> tuple[int, int, int]:
    layout = read_layout(path)
    return len(layout.tensors), layout.data_start, layout.data_end


def same_as_the_reader(path: Path) -> None:
    """Tensor names, shapes, types, offsets and sizes, and every scalar metadata value (an
    array by its length), as gguf.GGUFReader reads them."""
    reader = gguf.GGUFReader(str(path))
    layout = read_layout(path)
    assert [
        (t.name, tuple(int(d) for d in t.shape), int(t.tensor_type), int(t.data_offset))
        for t in reader.tensors
    ] == [(t.name, t.shape, t.type, t.offset) for t in layout.tensors]
    assert [int(t.n_bytes) for t in reader.tensors] == [t.n_bytes for t in layout.tensors]
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if field.types[:2] == [gguf.GGUFValueType.ARRAY] * 2:
            continue  # the reader lists a nested array's leaves; the test below checks it
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            assert layout.metadata[key] == len(field.data), key
        else:
            assert layout.metadata[key] == pytest.approx(field.contents()), key
    assert len(layout.metadata) == len(reader.fields) - 3  # the reader's GGUF.* entries


@pytest.mark.parametrize("alignment", [None, 64])
def test_the_layout_matches_the_gguf_reader_on_files_its_writer_made(
    tmp_path: Path, alignment: int | None
) -> None:
    path = write_gguf(tmp_path / "tiny.gguf", alignment)
    assert our_answer(path) == reader_answer(path)
    same_as_the_reader(path)
    layout = read_layout(path)
    assert layout.metadata["nested"] == 2 and layout.metadata["general.name"] == "tiny"
    assert layout.data_end <= path.stat().st_size < layout.data_end + (alignment or 32)


def test_the_layout_matches_the_gguf_reader_on_the_real_model_files(
    embedder_model: ResolvedModel,
) -> None:
    for path in (default_adapter_path(), embedder_model.path):
        assert our_answer(path) == reader_answer(path), path
        same_as_the_reader(path)


def test_every_truncation_is_refused(tmp_path: Path) -> None:
    whole = write_gguf(tmp_path / "whole.gguf").read_bytes()
    start = read_layout(tmp_path / "whole.gguf").data_start
    cut = tmp_path / "cut.gguf"
    for size in range(read_layout(tmp_path / "whole.gguf").data_end):  # then only padding
        cut.write_bytes(whole[:size])
        try:  # the layout says more is needed than the file has, or it cannot be read
            assert read_layout(cut).data_end > size
        except GGUFLayoutError:
            assert size < start  # only inside the header, metadata or tensor infos
        if size in (0, 10, start // 2, start + 10):
            with pytest.raises(ModelError, match=r"not a GGUF file|damaged|truncated"):
                validate_gguf(cut)


def test_corrupted_copies_give_a_layout_or_a_layout_error_nothing_else(tmp_path: Path) -> None:
    whole = bytearray(write_gguf(tmp_path / "whole.gguf").read_bytes())
    start = read_layout(tmp_path / "whole.gguf").data_start
    rng = random.Random(1234)
    damaged = tmp_path / "damaged.gguf"
    outcomes = {"layout": 0, "error": 0}
    for _ in range(400):
        copy = bytearray(whole)
        for _ in range(rng.randint(1, 4)):
            copy[rng.randrange(4, start)] = rng.randrange(256)  # magic kept: the walk runs
        damaged.write_bytes(bytes(copy))
        try:
            read_layout(damaged)
            outcomes["layout"] += 1
        except GGUFLayoutError:
            outcomes["error"] += 1
    assert outcomes["error"] > 100 and outcomes["layout"] > 0, outcomes


def test_lengths_and_counts_beyond_the_file_are_refused_before_use(tmp_path: Path) -> None:
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    cases = {
        "huge key": header + struct.pack("<Q", 2**62),
        "huge string array": header
        + struct.pack("<Q", 1)
        + b"k"
        + struct.pack("<IIQ", 9, 8, 2**60),
        "huge float array": header + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 6, 2**60),
        "unknown type": header + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 77),
        "tensor count": b"GGUF" + struct.pack("<IQQ", 3, 2**50, 0),
        "version": b"GGUF" + struct.pack("<IQQ", 9, 0, 0),
    }
    for what, data in cases.items():
        path = tmp_path / f"{what}.gguf"
        path.write_bytes(data + b"\0" * 16)
        with pytest.raises(GGUFLayoutError):
            read_layout(path)


def test_repeated_keys_and_a_bad_alignment_are_refused(tmp_path: Path) -> None:
    def one_key(key: bytes, kind: int, value: bytes, times: int = 1) -> bytes:
        entry = struct.pack("<Q", len(key)) + key + struct.pack("<I", kind) + value
        return b"GGUF" + struct.pack("<IQQ", 3, 0, times) + entry * times + b"\0" * 32

    path = tmp_path / "bad.gguf"
    path.write_bytes(one_key(b"general.name", 4, struct.pack("<I", 1), times=2))
    with pytest.raises(GGUFLayoutError, match="twice"):
        read_layout(path)
    path.write_bytes(one_key(b"general.alignment", 4, struct.pack("<I", 48)))
    with pytest.raises(GGUFLayoutError, match="power of two"):
        read_layout(path)
    path.write_bytes(one_key(b"general.alignment", 4, struct.pack("<I", 64)))
    assert read_layout(path).tensors == ()
