"""lazyfuse.backends."""
