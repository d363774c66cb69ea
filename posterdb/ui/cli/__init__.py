"""posterdb command line (Typer)."""
