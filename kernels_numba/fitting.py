"""Fit the timing model's efficiency parameters to kernel measurements, and score the fits.

The public interface of a calibration file's fitting, shared by ``kernels_numba.bench`` (which
writes each file's fitted families), ``kernels_numba.validate`` (which reports the held-out errors)
and ``reports`` (the README's table and the validation notebook's scatter):

* :func:`groups` -- a file's measurements by (family, implementation);
* :func:`fit_group` -- one group fitted on the fit half of its shapes (the fixed rule of
  ``sim.calibration.split_fit_holdout``), with every record's (predicted, measured) seconds;
* :func:`fit_families` -- the fitted parameters of every group, as a file stores them;
* :func:`score_device` -- held-out error summaries per group, and printable lines.
"""

from __future__ import annotations

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


def groups(doc: Mapping[str, Any]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """A calibration file's measurements grouped by (model family, implementation)."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in doc.get("measurements", []):
        out.setdefault((model_family(record), record["impl"]), []).append(record)
    return out


def fit_group(
    profile: Any, records: list[dict[str, Any]], kind: str
) -> tuple[cal.FamilyParams, list[int], list[int], list[tuple[float, float]]]:
    """Fit one group's parameters on the fit half of its shapes; returns them, the fit and held-out
    record indices, and every record's (predicted, measured) seconds. ``kind``: "cpu" or "gpu"."""
    times = [model_time(profile, r["family"], r["shape"], r.get("config", {}), r["impl"]) for r in records]
    measured = [float(r["measured_s"]) for r in records]
    keys = [shape_key(r["shape"]) for r in records]
    fit_idx, held_idx = cal.split_fit_holdout(keys)

    def predict(params: cal.FamilyParams, i: int) -> float:
        return cal.predict_seconds(params, times[i].compute_s, times[i].memory_s, times[i].launches)

    cap = CPU_MAX_EFFICIENCY if kind == "cpu" else GPU_MAX_EFFICIENCY
    params = cal.fit_params(predict, measured, fit_idx, CPU_START, max_efficiency=cap)
    pairs = [(predict(params, i), measured[i]) for i in range(len(records))]
    return params, fit_idx, held_idx, pairs


def shape_key(shape: Mapping[str, Any]) -> tuple[Any, ...]:
    """Numbers first in a fixed field order, so that shapes sort by size within a family."""
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(shape.items()))


def fit_families(doc: Mapping[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    """Fitted parameters per family and implementation (fit half only), for the file at ``path``."""
    profile = profile_for(doc, path)
    families: dict[str, dict[str, Any]] = {}
    for (family, impl), records in sorted(groups(doc).items()):
        params, fit_idx, held_idx, _ = fit_group(profile, records, str(doc.get("kind")))
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
    for (family, impl), records in sorted(groups(doc).items()):
        params, fit_idx, held_idx, pairs = fit_group(profile, records, str(doc.get("kind")))
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
