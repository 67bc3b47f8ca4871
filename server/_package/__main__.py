"""`python -m repotune ...` is how editors start the server without relying on PATH."""

from repotune.server.cli.app import main

if __name__ == "__main__":
    main()
