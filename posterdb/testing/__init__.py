"""Helpers shared by the test suite and the benchmarks (never imported by the library itself):
real poster slices, the CLI as a subprocess, the crash-and-resume harness."""
