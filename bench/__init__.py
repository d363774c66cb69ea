"""posterdb benchmarks (not part of the test run): `.venv/bin/python -m bench`."""
