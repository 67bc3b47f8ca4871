"""RepoTune: a local code assistant that learns your repository."""

import os

__version__ = "0.1.0"

# llama.cpp's CPU backend runs on OpenMP (libgomp), whose threads busy-wait at every barrier for
# a long while by default. When another process holds one of the cores (an editor, a build, our
# own embedder) a thread then waits for a descheduled peer at each of the graph's hundreds of
# barriers. On 2 cores with one core busy elsewhere, query embeddings took 10-30x their idle time
# and decoding ran at under half its idle speed; a 1000-iteration spin brings both within about 2x
# of idle and leaves the idle speed as it was. Must be set before libgomp loads (the first
# llama_cpp or torch import); a user's own OMP_WAIT_POLICY / GOMP_SPINCOUNT wins.
#
# The policy is "active" as well: libgomp cuts the spin to 100 iterations ("throttled") whenever
# it manages more threads than there are CPUs, and it does as soon as two threads each lead a
# team (the index's embedder thread and the generation thread: 4 threads on 2 cores). With 100
# spins every barrier went to sleep and Gemma decoded at one thread's speed (with an embedder
# thread alive); "active" makes the throttled spin the spin count itself
# (min(1000, GOMP_SPINCOUNT)), and changes nothing else once GOMP_SPINCOUNT is set.
OPENMP_SPIN_COUNT = "1000"
OPENMP_WAIT_POLICY = "active"
_SPIN_SET_HERE = "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ
if _SPIN_SET_HERE:
    os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT
    os.environ["OMP_WAIT_POLICY"] = OPENMP_WAIT_POLICY


def use_default_openmp_spin() -> None:
    """Dedicated compute jobs (training, evaluation) own the cores and are faster with libgomp's
    own long spin (LoRA training ran about a third faster on idle cores). Undoes only
    RepoTune's default, and works only before libgomp loads (the first torch/llama_cpp import)."""
    if _SPIN_SET_HERE and os.environ.get("GOMP_SPINCOUNT") == OPENMP_SPIN_COUNT:
        del os.environ["GOMP_SPINCOUNT"]
        # "active" without a spin count would spin for minutes (libgomp's 30 billion)
        if os.environ.get("OMP_WAIT_POLICY") == OPENMP_WAIT_POLICY:
            del os.environ["OMP_WAIT_POLICY"]
