"""``python -m lazyfuse`` runs the command line."""

from lazyfuse.cli import main

raise SystemExit(main())
