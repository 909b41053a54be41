"""lazyfuse.bench."""
