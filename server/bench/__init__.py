"""Benchmarks: completion, index and LSP latency on pinned corpora, and their saved results."""
