"""Compositionality metrics, run loading, reports and plots. Needs numpy/scipy/matplotlib only, never torch."""
