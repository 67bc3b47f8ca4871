"""The `repotune` command line (an adapter over the core, like the LSP server)."""
