"""lazyfuse.frontends."""
