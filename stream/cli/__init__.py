"""The ``riverbed`` command line (:func:`stream.cli.main.main`), the report and the demo."""
