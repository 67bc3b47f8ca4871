"""One greedy completion and one embedding through RepoTune's own loaders, printed as JSON, so a
test can run it under two llama-cpp-python builds (CPU, GPU backend) and compare the results.

Usage: python tests/llm/gpu_probe.py GPU_LAYERS   ("auto" or a layer count)"""

from __future__ import annotations

import json
import sys

PROMPT = "def fibonacci(n):\n    "
TEXTS = ["def parse(text: str) -> list[str]:\n    return text.split()", "class Cache: pass"]
NEW_TOKENS = 16


def main(gpu_layers: str) -> None:
    from repotune.server.completion.model import load_model
    from repotune.server.config import load_settings
    from repotune.server.llm.embeddings import load_embedder
    from repotune.server.llm.gpu import backend_report, offload_supported

    layers: int | str = gpu_layers if gpu_layers == "auto" else int(gpu_layers)
    settings = load_settings(
        None, {"model": {"adapter": "none", "context_length": 512, "gpu_layers": layers}}
    )
    loaded = load_model(settings)
    llm = loaded.llm
    tokens: list[int] = []
    for token in llm.generate(llm.tokenize(PROMPT.encode()), temp=0.0, top_k=1):
        if token == llm.token_eos() or len(tokens) == NEW_TOKENS:
            break
        tokens.append(token)
    embedder = load_embedder("default", gpu_layers=layers)
    vectors = embedder.embed(TEXTS)
    print(
        json.dumps(
            {
                "offload": offload_supported(),
                **backend_report(),
                "gpu_layers": loaded.info["gpu_layers"],
                "gpu_fallback": loaded.info["gpu_fallback"],
                "embedder_gpu_layers": embedder.gpu_layers,
                "embedder_gpu_fallback": embedder.gpu_fallback,
                "tokens": tokens,
                "text": llm.detokenize(tokens).decode("utf-8", errors="replace"),
                "embeddings": vectors.tolist(),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
