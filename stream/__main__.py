"""``python -m stream`` runs the ``riverbed`` CLI."""

from stream.cli import main

raise SystemExit(main())
