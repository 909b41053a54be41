"""lazyfuse.backends.numba_cpu."""
