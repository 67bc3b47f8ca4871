"""Questions about the workspace: the answering prompt and the answer with its sources."""
