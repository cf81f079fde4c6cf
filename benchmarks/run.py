"""Run every benchmark as its own process and print one table of measured ratios.

Usage::

    python benchmarks/run.py                 # all benchmarks
    python benchmarks/run.py data_loading    # the ones whose file name contains "data_loading"

Protocol: each ``benchmarks/bench_*.py`` is a standalone script. For each measurement it
prints one line ``BENCH {json}`` with the keys ``name`` (what was measured), ``value`` and
``unit``, and, when the measurement is a comparison, ``baseline`` (the value of the
reference in the same run), ``ratio`` (value / baseline, or the speed-up, as ``ratio_meaning``
says) and ``n`` (how many items were measured). Anything else it prints is shown only with
``--verbose``. Benchmarks that need optional data or extras print ``SKIP reason`` and exit 0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _fmt(x: object) -> str:
    if isinstance(x, float):
        return f"{x:,.4g}" if abs(x) < 1e4 else f"{x:,.0f}"
    return "" if x is None else str(x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("filter", nargs="*", help="run only benchmarks whose file name contains one of these")
    parser.add_argument("--verbose", action="store_true", help="show everything the benchmarks print")
    parser.add_argument("--json", type=Path, help="also write all results to this JSON file")
    args = parser.parse_args(argv)

    scripts = sorted(HERE.glob("bench_*.py"))
    if args.filter:
        scripts = [s for s in scripts if any(f in s.stem for f in args.filter)]
    rows: list[dict[str, object]] = []
    failed = 0
    for script in scripts:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        if args.verbose:
            print(proc.stdout, proc.stderr, sep="\n")
        found = False
        for line in proc.stdout.splitlines():
            if line.startswith("BENCH "):
                row = json.loads(line[6:])
                row["script"] = script.stem
                rows.append(row)
                found = True
            elif line.startswith("SKIP"):
                rows.append({"script": script.stem, "name": "(skipped)", "note": line[5:].strip()})
                found = True
        if proc.returncode != 0 or not found:
            failed += 1
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            rows.append({"script": script.stem, "name": "(failed)", "note": " | ".join(tail)})
        print(f"# {script.stem}: {elapsed:.1f} s", file=sys.stderr)

    cols = ["script", "name", "n", "value", "unit", "baseline", "ratio", "ratio_meaning", "note"]
    table = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) if table else len(c) for i, c in enumerate(cols)]
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-|-".join("-" * w for w in widths))
    for t in table:
        print(" | ".join(v.ljust(w) for v, w in zip(t, widths)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
