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
* The H800 part fits DeepSeek's published tables the same way (``kernels_numba.published``),
  and the ``gemm_wgrad`` / ``memory_bound`` / ``norm_rope`` / ``attention_backward`` families on kernel
  instances of the V3 training trace (tables ``v3_trace_*``; whole shapes held out, as for the
  other tables: ``kernels_numba.published.trace_split``). A trace table with one shape
  (``v3_trace_attention_bwd``: one FlashAttnBwd shape, four layers) is fitted on all of it and
  listed under ``fitted_only``, with no held-out error.

The last line printed is one JSON object:
``{"device": ..., "held_out": {"<family>/<impl>": {"median_pct", "p90_pct", "n"}},
"published": {"<table>": {"median_pct", "p90_pct", "n"}}, "fitted_only": {"<table>": {"fit_n",
"fit_median_pct"}}, "trace_cross_checks": {...}}`` (percent; ``fit_median_pct`` is the fit's own
residual, not a validation).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sim import calibration as cal

CPU_START = cal.FamilyParams(
    launch_s=1e-5, compute_efficiency=0.5, memory_efficiency=0.5, overlap_exponent=2.0
)
CPU_MAX_EFFICIENCY = 8.0  # caches (L2/L3 bandwidth) can beat the measured DRAM copy ceiling on a CPU
GPU_MAX_EFFICIENCY = 1.0


def model_time(
    profile: Any, family: str, shape: Mapping[str, Any], config: Mapping[str, Any], impl: str = "numba_cpu"
) -> Any:
    """The ``sim.timing`` OpTime for a benchmark record (its compute_s and memory_s feed the fit).

    Numba kernels are one call; the torch references issue ``torch_ref.launch_count`` calls.
    """
    from sim import timing

    launches = 1
    if impl.startswith("torch"):
        from kernels_numba.torch_ref import launch_count

        launches = launch_count(family, shape, config)
    s = shape
    if family == "gemm":
        return timing.gemm_time(profile, s["m"], s["n"], s["k"], s["dtype"])
    if family == "grouped_gemm":
        return timing.grouped_gemm_time(profile, s["group_sizes"], s["n"], s["k"], s["dtype"], launches)
    if family == "gating":
        return timing.gating_time(
            profile,
            s["num_tokens"],
            s["num_experts"],
            s["top_k"],
            config.get("scoring", "sigmoid"),
            config.get("n_group", 1),
            launches,
            unfused=impl.startswith("torch"),
            topk_group=config.get("topk_group"),
        )
    if family == "permute":
        return timing.permute_time(
            profile,
            s["num_tokens"],
            s["hidden"],
            s["top_k"],
            s["dtype"],
            s["combine"],
            launches,
            unfused=impl.startswith("torch"),
        )
    if family in ("attention_prefill", "attention_decode"):
        size = cal.dtype_bytes(s["dtype"])
        kv_bytes = s["batch"] * config["kv_heads"] * s["kv_len"] * (s["qk_head_dim"] + s["v_head_dim"]) * size
        materialized = False
        if impl == "torch_cpu":
            from kernels_numba.torch_ref import materializes_scores

            materialized = materializes_scores(s["qk_head_dim"], s["v_head_dim"])
        return timing.attention_time(
            profile,
            s["batch"],
            s["q_len"],
            s["kv_len"],
            s["num_heads"],
            s["qk_head_dim"],
            s["v_head_dim"],
            s["causal"],
            s["dtype"],
            kv_bytes=kv_bytes,
            materialized_scores=materialized,
        )
    raise ValueError(f"unknown family {family!r}; allowed: {', '.join(cal.FAMILIES)}")


def profile_for(doc: Mapping[str, Any], path: Path | None) -> Any:
    """The device profile: a CPU profile from the file's ceilings, or the GPU's own profile."""
    import gpus

    if doc.get("kind") == "cpu":
        if path is None:
            raise ValueError("a CPU calibration document needs its file path to build the profile")
        return gpus.cpu_profile_from_calibration(path)
    return gpus.get(str(doc["device"]))


def model_family(record: Mapping[str, Any]) -> str:
    """The timing model's family for a benchmark record: a one-row GEMM is ``gemv``
    (``sim.timing.gemm_family``: BLAS's matrix-vector path, the Numba kernel's one-row loop);
    torch's prefill attention on the CPU with unequal head dims runs PyTorch's unfused math path
    (``torch_ref.materializes_scores``), a different kernel from its fused flash path, so it is
    fitted as ``attention_prefill_math``."""
    family = str(record["family"])
    if family == "gemm":
        from sim.timing import gemm_family

        return gemm_family(int(record["shape"]["m"]))
    if family == "attention_prefill" and record["impl"] == "torch_cpu":
        from kernels_numba.torch_ref import materializes_scores

        s = record["shape"]
        if materializes_scores(s["qk_head_dim"], s["v_head_dim"]):
            return "attention_prefill_math"
    return family


def _groups(doc: Mapping[str, Any]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in doc.get("measurements", []):
        groups.setdefault((model_family(record), record["impl"]), []).append(record)
    return groups


def _fit_group(
    profile: Any, records: list[dict[str, Any]], kind: str
) -> tuple[cal.FamilyParams, list[int], list[int], list[tuple[float, float]]]:
    times = [model_time(profile, r["family"], r["shape"], r.get("config", {}), r["impl"]) for r in records]
    measured = [float(r["measured_s"]) for r in records]
    keys = [_shape_key(r["shape"]) for r in records]
    fit_idx, held_idx = cal.split_fit_holdout(keys)

    def predict(params: cal.FamilyParams, i: int) -> float:
        return cal.predict_seconds(params, times[i].compute_s, times[i].memory_s, times[i].launches)

    cap = CPU_MAX_EFFICIENCY if kind == "cpu" else GPU_MAX_EFFICIENCY
    params = cal.fit_params(predict, measured, fit_idx, CPU_START, max_efficiency=cap)
    pairs = [(predict(params, i), measured[i]) for i in range(len(records))]
    return params, fit_idx, held_idx, pairs


def _shape_key(shape: Mapping[str, Any]) -> tuple[Any, ...]:
    """Numbers first in a fixed field order, so that shapes sort by size within a family."""
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(shape.items()))


def fit_families(doc: Mapping[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    """Fitted parameters per family and implementation (fit half only), for the file at ``path``."""
    profile = profile_for(doc, path)
    families: dict[str, dict[str, Any]] = {}
    for (family, impl), records in sorted(_groups(doc).items()):
        params, fit_idx, held_idx, _ = _fit_group(profile, records, str(doc.get("kind")))
        families.setdefault(family, {})[impl] = {
            **params.to_dict(),
            "fit_n": len(fit_idx),
            "held_out_n": len(held_idx),
        }
    return families


def score_device(doc: Mapping[str, Any], path: Path) -> tuple[dict[str, Any], list[str]]:
    """Held-out summaries per "family/impl" and printable lines."""
    profile = profile_for(doc, path)
    held_out: dict[str, Any] = {}
    lines = []
    for (family, impl), records in sorted(_groups(doc).items()):
        params, fit_idx, held_idx, pairs = _fit_group(profile, records, str(doc.get("kind")))
        errors = cal.abs_pct_errors([pairs[i][0] for i in held_idx], [pairs[i][1] for i in held_idx])
        summary = cal.summarise(errors)
        if summary["n"] == 0:
            lines.append(f"{family + '/' + impl:30s} no held-out shape (only {len(records)} measured)")
            continue
        held_out[f"{family}/{impl}"] = summary
        lines.append(
            f"{family + '/' + impl:30s} held-out median {summary['median_pct']:6.1f}%  "
            f"p90 {summary['p90_pct']:6.1f}%  n={summary['n']:3d}  (fit on {len(fit_idx)})  "
            f"launch {params.launch_s * 1e6:.1f} us, compute eff {params.compute_efficiency:.3f}, "
            f"memory eff {params.memory_efficiency:.3f}, p {params.overlap_exponent:.2f}"
        )
    return held_out, lines


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

        measured = bench.run(out=args.file, log=lambda line: print(line, file=sys.stderr))
        args.file = measured
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
    held_out, lines = score_device(doc, path)
    print(
        f"device {doc['device']} ({doc.get('kind')}, {doc.get('cores')} cores), measured {doc.get('date')}, "
        f"file {path.name}"
    )
    for line in lines:
        print(line)
    from kernels_numba import published

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
        today = datetime.date.today().isoformat()
        written = [published.write_calibration(result, today).name]
        for label in sorted(published.VINTAGES):  # the older tables, refitted by the same rule
            written.append(published.write_calibration(published.fit_and_score(as_of=label), today).name)
        updated = dict(doc)
        updated["families"] = fit_families(doc, path)
        path.write_text(json.dumps(updated, indent=1) + "\n")
        print(f"wrote {', '.join(written)} and {path.name}")
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
