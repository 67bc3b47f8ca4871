"""A tiny shop used to test questions about code."""
