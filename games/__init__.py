"""Runnable game scripts and presets: `python -m games.referential --help`."""
