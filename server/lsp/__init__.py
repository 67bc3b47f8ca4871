"""The Language Server Protocol adapter: JSON-RPC framing, document text and the handlers."""
