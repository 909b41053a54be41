"""lazyfuse.passes."""
