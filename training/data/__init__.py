"""Training data: repository -> file splits -> spans -> completion and question examples (JSONL)."""
