"""The llama.cpp embedder matches the reference sentence-transformers model (needs [train])."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.train

TEXTS = [
    "def add(a, b):\n    return a + b",
    "class LRUCache:\n    def __init__(self, capacity: int) -> None:\n        self.data = {}",
    "import os\nfrom pathlib import Path\n\nROOT = Path(os.environ['HOME'])",
    "function debounce(fn, ms) { let t; "
    "return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); }; }",
    'fn main() { println!("hello {}", 42); }',
    "SELECT id, name FROM users WHERE created_at > NOW() - INTERVAL '1 day';",
    "The quick brown fox jumps over the lazy dog.",
    "How do I configure the index directory for a workspace?",
    "Returns the top-k chunks fused from dense and lexical rankings.",
    "snake_case_identifier and camelCaseIdentifier and SCREAMING_CONSTANT",
    "    if not path.exists():\n        raise FileNotFoundError(path)",
    "# TODO: handle the empty case\n",
    '{"name": "repotune", "version": "0.1.0"}',
    "Ünïcödé naïve café résumé",
    "日本語のテキストと中文文本",
    "x = [i ** 2 for i in range(10) if i % 2 == 0]",
    "async def fetch(session, url):\n    async with session.get(url) as response:\n"
    "        return await response.text()",
    '<div class="container"><p>Hello</p></div>',
    "git commit -m 'fix: keep brackets balanced in completions'",
    "a" * 150 + " long identifier-like run",
    "short",
    # Longer than the model's 256-token window: both sides must truncate the same way.
    " ".join(f"def function_{i}(value): return value * {i}" for i in range(60)),
]


def test_embeddings_match_sentence_transformers(embedder) -> None:  # type: ignore[no-untyped-def]
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from repotune.server.models import minilm_source_dir

    assert embedder.count_tokens(TEXTS[-1]) == 256  # truncated to the window, [CLS]/[SEP] kept
    reference = sentence_transformers.SentenceTransformer(str(minilm_source_dir()), device="cpu")
    expected = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    actual = embedder.embed(TEXTS)
    assert actual.shape == expected.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(actual, axis=1), 1.0, atol=1e-4)
    cosines = (actual * expected).sum(axis=1)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= 0.999, f"text {worst} {TEXTS[worst][:40]!r}: cosine {cosines[worst]}"
