"""The RepoTune language server and its core modules (no torch here, ever)."""
