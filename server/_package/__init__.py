"""RepoTune: a local code assistant that learns your repository."""

import os

__version__ = "0.1.0"

# llama.cpp's CPU backend runs on OpenMP (libgomp), whose threads busy-wait at every barrier for
# a long while. When another process holds one of the cores (an editor, a build, a second model)
# a thread waits for a descheduled peer at each of the graph's hundreds of barriers: a 14 ms
# query embedding took 120-520 ms on 2 cores (`repotune bench index`, README). A short spin keeps
# the idle speed and degrades gracefully. Must be set before libgomp loads (first llama_cpp or
# torch import); a user's own OMP_WAIT_POLICY / GOMP_SPINCOUNT wins.
OPENMP_SPIN_COUNT = "10000"
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT
