"""The long run of the names-and-cells fuzz (issue 19): hostile file names (arbitrary bytes,
control characters, ESC sequences, names near NAME_MAX) and labels cells (formulas, control
characters, huge cells, cp1252 / UTF-16 / BOMs, NULs, lone surrogates) through the real CLI.

    .venv/bin/python -m bench.fuzz_names [--examples 300] [--seed 0]

The same example as tests/test_boundaries_names.py (`fuzz_once`), many more of them, into one
store; every 25 examples and at the end both CSV exports and `posterdb check` run. Prints the
counts: examples, files, stored, failed (with a reason), tracebacks (must be 0).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(TESTS))
    import test_boundaries_names as t  # noqa: E402 - the test's own example and strategies
    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis import strategies as st

    counts = {"examples": 0, "files": 0, "stored": 0, "failed": 0, "tracebacks": 0}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="posterdb-fuzz-") as tmp:
        root = Path(tmp)

        @seed(args.seed)
        @settings(max_examples=args.examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(t.files, st.sampled_from(["jsonl", "csv", "csv-cp1252", "csv-utf16"]),
               st.integers(0, 10**6))
        def run(entries, labels_kind, n):
            counts["examples"] += 1
            try:
                report = t.fuzz_once(root, entries, labels_kind, n,
                                     full=counts["examples"] % 25 == 0)
            except AssertionError as e:
                if "traceback" in str(e):
                    counts["tracebacks"] += 1
                raise
            counts["files"] += len(entries)
            counts["failed"] += sum(1 for f in report["failed"] if "labels row" not in f["reason"])
            counts["stored"] += report["added"] + report["skipped"] + report["duplicates"]

        try:
            run()
            t.check_fuzz_store(root / "store")
        except Exception:   # noqa: BLE001 - report, then fail
            traceback.print_exc()
            print(counts, f"{time.perf_counter() - t0:.0f} s")
            return 1
    print(counts, f"{time.perf_counter() - t0:.0f} s")
    return 0 if counts["tracebacks"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
