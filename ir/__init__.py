"""lazyfuse.ir."""
