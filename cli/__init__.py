"""Typer command-line interface: one module per study, rendering in render.py. No model
arithmetic here; heavy libraries are imported inside commands so `explore --help` starts fast."""
