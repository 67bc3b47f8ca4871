"""llama.cpp: loading models one at a time, decoding, embeddings and the embedder conversion."""
