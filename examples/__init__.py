"""lazyfuse.examples."""
