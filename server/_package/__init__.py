"""RepoTune: a local code assistant that learns your repository."""

__version__ = "0.1.0"
