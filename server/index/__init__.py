"""The workspace index: files -> chunks -> store (SQLite + Chroma), kept current by a watcher."""
