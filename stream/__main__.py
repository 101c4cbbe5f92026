"""``python -m stream`` runs the ``riverbed`` CLI."""

from stream.cli.main import main

raise SystemExit(main())
