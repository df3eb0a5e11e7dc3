"""Score the timing model against measurements: held-out shapes on this machine, and H800 tables.

``python -m kernels_numba.validate [--json] [--measure] [--write]``

* Default: read the committed calibration file of the hardware at hand
  (``gpus/calibration/cpu-*.json``, or the GPU's file when a CUDA GPU is present), fit each
  (family, implementation) on the fit half of its shapes, and report the median and 90th
  percentile absolute percentage error of predicted against measured time on the held-out
  half. The split is the fixed rule of ``sim.calibration.split_fit_holdout`` (sorted shape
  keys, alternate): whole shapes, the same for every implementation, never random.
  Deterministic and fast: no timing, no files written.
* ``--measure`` re-times first (``python -m kernels_numba.bench``), which rewrites the file.
* ``--write`` also rewrites the fitted H800 parameters (``gpus/calibration/h800.json``) and the
  families of the device file from the same fits.
* The H800 part fits DeepSeek's published tables the same way (``sim.calibration.published``),
  and the ``gemm_wgrad`` / ``memory_bound`` / ``norm_rope`` / ``attention_backward`` families on kernel
  instances of the V3 training trace (tables ``v3_trace_*``; whole shapes held out, as for the
  other tables: ``sim.calibration.published.trace_split``). A trace table with one shape
  (``v3_trace_attention_bwd``: one FlashAttnBwd shape, four layers) is fitted on all of it and
  listed under ``fitted_only``, with no held-out error.

The last line printed is one JSON object:
``{"device": ..., "held_out": {"<family>/<impl>": {"median_pct", "p90_pct", "n"}},
"published": {"<table>": {"median_pct", "p90_pct", "n"}}, "fitted_only": {"<table>": {"fit_n",
"fit_median_pct"}}, "trace_cross_checks": {...}}`` (percent; ``fit_median_pct`` is the fit's own
residual, not a validation).

This is the harness's command line: it picks the file of the hardware at hand and re-times on
request; the fitting, scoring and writing are :mod:`sim.calibration`'s (``devices`` for the device
file, ``published`` for the H800 tables).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from sim import calibration as cal
from sim.calibration import devices, published

__all__ = ["device_file", "main"]


def device_file() -> Path:
    """The calibration file of the hardware at hand (GPU when present, else this CPU)."""
    from kernels_numba import bench

    folder = cal.calibration_dir()
    if bench.cuda_present():
        import torch

        candidate = folder / f"{cal.device_key(torch.cuda.get_device_name(0))}.json"
        if candidate.exists():
            return candidate
    cpus = sorted(p for p in folder.glob("cpu-*.json"))
    if not cpus:
        raise ValueError(f"no measured calibration file in {folder}; run python -m kernels_numba.bench first")
    mine = f"cpu-{cal.device_key(bench.cpu_name())}"
    for p in cpus:
        if p.stem.startswith(mine[: len(p.stem)]) or p.stem == mine:
            return p
    return cpus[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kernels_numba.validate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON line (always printed last)")
    parser.add_argument(
        "--measure", action="store_true", help="re-time the kernels first (rewrites the file)"
    )
    parser.add_argument(
        "--write", action="store_true", help="rewrite fitted parameters (device file, h800.json)"
    )
    parser.add_argument("--file", type=Path, default=None, help="score this calibration file instead")
    args = parser.parse_args(argv)
    if args.measure:
        from kernels_numba import bench

        args.file = bench.run(out=args.file, log=lambda line: print(line, file=sys.stderr))
    path = args.file if args.file is not None else device_file()
    if not path.exists():
        raise ValueError(f"calibration file {path} does not exist; run python -m kernels_numba.bench first")
    if not path.is_file():
        raise ValueError(f"calibration file {path} is not a file (give a gpus/calibration/*.json file)")
    try:
        doc = cal.load_file(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"calibration file {path} is not valid JSON: {err}") from None
    missing = [
        key for key in ("device", "kind", "measurements") if not isinstance(doc, dict) or key not in doc
    ]
    if missing or not isinstance(doc.get("measurements"), list):
        raise ValueError(
            f"calibration file {path} is not a kernels_numba.bench file: it needs 'device', 'kind' and a "
            f"'measurements' list (missing or malformed: {missing or ['measurements']})"
        )
    held_out, lines = devices.score_device(doc, path)
    print(
        f"device {doc['device']} ({doc.get('kind')}, {doc.get('cores')} cores), measured {doc.get('date')}, "
        f"file {path.name}"
    )
    for line in lines:
        print(line)
    result = published.fit_and_score()
    for table, summary in result["tables"].items():
        if summary.get("fitted_only"):
            print(
                f"H800 {table:24s} fitted only: one shape ({summary['fit_n']} instances, "
                f"{', '.join(summary['fitted'])}); in-sample median {summary['fit_median_pct']:.1f}%, "
                "no held-out error"
            )
            continue
        print(
            f"H800 {table:24s} held-out median {summary['median_pct']:6.1f}%  p90 {summary['p90_pct']:6.1f}% "
            f"n={summary['n']:3d}  (fit on {summary['fit_n']}: {', '.join(summary['fitted'])})"
        )
    if args.write:
        # the newest tables, then the older ones refitted by the same rule, then the device file
        written = published.write_all(datetime.date.today().isoformat())
        devices.write_device_file(path, doc)
        print(f"wrote {', '.join(p.name for p in written)} and {path.name}")
    trace = published.trace_cross_checks()
    for name, check in trace.items():
        print(
            f"H800 trace {name:22s} predicted {check['predicted_s'] * 1e3:.3f} ms, trace "
            f"{check['trace_low_s'] * 1e3:.2f}-{check['trace_high_s'] * 1e3:.2f} ms, "
            f"{check['error_vs_middle_pct']:.1f}% from the middle ({check['calibration']})"
        )
    published_summary = {
        t: {"median_pct": s["median_pct"], "p90_pct": s["p90_pct"], "n": s["n"]}
        for t, s in result["tables"].items()
        if not s.get("fitted_only")
    }
    fitted_only = {
        t: {"fit_n": s["fit_n"], "fit_median_pct": s["fit_median_pct"]}
        for t, s in result["tables"].items()
        if s.get("fitted_only")
    }
    cross = {
        name: {"error_vs_middle_pct": c["error_vs_middle_pct"], "within_range": c["within_range"]}
        for name, c in trace.items()
    }
    print(
        json.dumps(
            {
                "device": doc["device"],
                "held_out": held_out,
                "published": published_summary,
                "fitted_only": fitted_only,
                "trace_cross_checks": cross,
            }
        )
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as err:
        print(f"python -m kernels_numba.validate: error: {err}", file=sys.stderr)
        sys.exit(2)
