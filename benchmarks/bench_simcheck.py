"""Wall time of each Numba-CUDA kernel check on the CUDA simulator, against issue 3's 10 s target.

``python benchmarks/bench_simcheck.py [--repeats N]``

Each check of ``python -m kernels_numba.simcheck`` runs in its own subprocess (the simulator must be
switched on before numba loads), as the test suite runs it; the figure is the median wall time of
``--repeats`` runs per check, start-up included. The unit tests only guard against a hang (a
generous timeout): a timed unit test fails on a loaded machine for reasons that are not the code's,
so the 10 s target is measured here. The last line is one JSON object; the exit status is 1 when a
check fails or its median is over the target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 10.0  # issue 3: each simulator check within 10 s on the development machine


def names() -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "kernels_numba.simcheck", "--list"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def _env() -> dict[str, str]:
    return dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))


def time_check(name: str) -> tuple[float, bool]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "kernels_numba.simcheck", name],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - start, result.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    report: dict[str, dict[str, object]] = {}
    for name in names():
        runs = [time_check(name) for _ in range(args.repeats)]
        median = statistics.median(t for t, _ in runs)
        ok = all(passed for _, passed in runs)
        report[name] = {"median_s": round(median, 3), "passed": ok, "within_target": median <= TARGET_S}
        print(f"{name:24s} {median:6.2f} s {'ok' if ok else 'FAILED'}", file=sys.stderr)
    print(json.dumps({"target_s": TARGET_S, "checks": report}))
    return 0 if all(r["passed"] and r["within_target"] for r in report.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
