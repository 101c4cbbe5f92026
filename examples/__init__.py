"""Runnable examples of riverbed (not installed with the package; run them from the repository root)."""
