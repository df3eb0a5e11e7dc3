"""What the project reproduces, and how well: published figures against the simulators' answers.

Used by notebook 4 and by ``reports/readme_table.py`` (the README's validation table). Each
check runs the public API (``moe``, ``sim.estimate_training``, ``sim.estimate_serving``) at the
published configuration and compares with the figure in ``reports/published.py`` (source and
tolerance there). A check whose simulator has not landed, or that raises, is kept with no
simulated value and a note saying why; nothing is filled in by hand.

Kernel-level evidence comes from ``python -m kernels_numba.validate --json`` (held-out errors
per family, implementation and device) and, for the scatter, from the validation module's
per-shape records when it offers them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reports.nbtools import landed
from reports.published import PublishedFigure, published


@dataclass(frozen=True)
class Check:
    """One published figure, the simulated value (None when not available) and the verdict."""

    level: str  # "accounting", "training", "serving"
    figure: PublishedFigure
    simulated: float | None
    note: str = ""

    @property
    def description(self) -> str:
        return self.figure.description

    @property
    def error(self) -> float | None:
        """Relative error in percent, or for absolute tolerances the difference in the figure's unit."""
        if self.simulated is None:
            return None
        if self.figure.absolute:
            return self.simulated - self.figure.value
        return 100.0 * (self.simulated - self.figure.value) / self.figure.value

    @property
    def error_pct_or_points(self) -> float | None:
        """Error for charts: percent, or percentage points for fractions compared absolutely (MFU)."""
        error = self.error
        if error is None:
            return None
        return 100.0 * error if self.figure.absolute else error

    @property
    def tolerance_pct_or_points(self) -> float:
        return 100.0 * self.figure.tolerance

    @property
    def within(self) -> bool | None:
        error = self.error_pct_or_points
        if error is None:
            return None
        return abs(error) <= self.tolerance_pct_or_points + 1e-9

    def table_row(self) -> dict[str, Any]:
        unit = "points" if self.figure.absolute else "%"
        error = self.error_pct_or_points
        return {
            "level": self.level,
            "figure": self.description,
            "published": self.figure.value,
            "unit": self.figure.unit,
            "simulated": self.simulated if self.simulated is not None else "not available",
            "error": f"{error:+.1f} {unit}" if error is not None else "",
            "tolerance": f"{self.tolerance_pct_or_points:g} {unit}",
            "within": {True: "yes", False: "NO", None: "-"}[self.within],
            "source": self.figure.source,
            "note": self.note,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "figure": self.figure.to_dict(),
            "simulated": self.simulated,
            "error": self.error,
            "within": self.within,
            "note": self.note,
        }


def _run(level: str, keys: list[str], compute: Callable[[], dict[str, float]], needs: str) -> list[Check]:
    """Compute several checks with one simulation; a missing module or a failure becomes a note."""
    figures = [published(key) for key in keys]
    if not landed(needs):
        return [Check(level, f, None, f"needs {needs}, not landed yet") for f in figures]
    try:
        values = compute()
    except Exception as error:  # a failing simulator is reported in the table, not hidden
        return [Check(level, f, None, f"failed: {type(error).__name__}: {error}") for f in figures]
    return [Check(level, f, values.get(f.key), "" if f.key in values else "not computed") for f in figures]


def accounting_checks() -> list[Check]:
    def compute() -> dict[str, float]:
        import moe

        v3, v2, mixtral = moe.get("deepseek-v3"), moe.get("deepseek-v2"), moe.get("mixtral-8x7b")
        flash, pro = moe.get("deepseek-v4-flash"), moe.get("deepseek-v4-pro")
        return {
            "v3_total_params": float(v3.total_params),
            "v3_active_params": float(v3.active_params),
            "v3_kv_bytes_per_token": float(v3.kv_cache_bytes_per_token(dtype="bf16", context_len=4096)),
            "v3_training_gflop_per_token": v3.training_flops_per_token(seq_len=4096, causal=True) / 1e9,
            "v2_total_params": float(v2.total_params),
            "v2_active_params": float(v2.active_params),
            "mixtral_8x7b_total_params": float(mixtral.total_params),
            "mixtral_8x7b_active_params": float(mixtral.active_params),
            "v4_flash_total_params": float(flash.total_params),
            "v4_pro_total_params": float(pro.total_params),
        }

    keys = [
        "v3_total_params", "v3_active_params", "v3_kv_bytes_per_token", "v3_training_gflop_per_token",
        "v2_total_params", "v2_active_params", "mixtral_8x7b_total_params", "mixtral_8x7b_active_params",
        "v4_flash_total_params", "v4_pro_total_params",
    ]  # fmt: skip
    return _run("accounting", keys, compute, "moe")


# DeepSeek-V3's published pre-training configuration (V3 report section 3; ISCA'25 Table 4).
V3_TRAINING = dict(
    model="deepseek-v3", gpu="H800", num_gpus=2048, tp=1, pp=16, ep=64, seq_len=4096,
    global_batch_seqs=15360, tokens=14.8e12, precision="fp8", schedule="dualpipe", usd_per_gpu_hour=2.0,
)  # fmt: skip


def training_checks() -> list[Check]:
    def compute_v3() -> dict[str, float]:
        import sim

        t = sim.estimate_training(**V3_TRAINING)  # type: ignore[arg-type]
        return {
            "v3_gpu_hours_per_trillion": 1e12 / t.tokens_per_s_per_gpu / 3600.0,
            "v3_step_time_s": t.step_time_s,
            "v3_mfu_causal": t.mfu,
            "v3_mfu_noncausal": t.mfu_noncausal,
            "v3_tokens_per_s_per_gpu": t.tokens_per_s_per_gpu,
        }

    keys = [
        "v3_gpu_hours_per_trillion", "v3_step_time_s", "v3_mfu_causal", "v3_mfu_noncausal",
        "v3_tokens_per_s_per_gpu",
    ]  # fmt: skip
    checks = _run("training", keys, compute_v3, "sim.training.api")
    checks += _run("training", ["v2_gpu_hours_per_trillion"], _v2_training, "sim.training.api")
    return checks


def _v2_training() -> dict[str, float]:
    """DeepSeek-V2 at the configuration the training package documents as its V2 reference."""
    from sim.training import reference  # type: ignore[attr-defined]

    t = reference.deepseek_v2()
    return {"v2_gpu_hours_per_trillion": 1e12 / t.tokens_per_s_per_gpu / 3600.0}


def serving_checks() -> list[Check]:
    def compute() -> dict[str, float]:
        from sim.serving import reference  # type: ignore[attr-defined]

        return dict(reference.published_values())

    keys = [
        "profile_prefill_tokens_per_s_per_node", "profile_decode_tokens_per_s_per_node",
        "day6_decode_tokens_per_s_per_node", "day6_tokens_per_s_per_user", "day6_usd_per_million_output",
        "isca_ep_step_us", "isca_tpot_ms", "v2_generation_tokens_per_s_per_node",
    ]  # fmt: skip
    return _run("serving", keys, compute, "sim.serving.reference")


def published_checks(training: bool = True, serving: bool = True) -> list[Check]:
    """Every published figure the project checks, simulated where the simulator exists."""
    checks = accounting_checks()
    if training:
        checks += training_checks()
    if serving:
        checks += serving_checks()
    return checks


def kernel_scores(timeout_s: float = 300.0) -> dict[str, Any] | None:
    """The last JSON line of ``python -m kernels_numba.validate --json`` (DESIGN.md), or None if absent."""
    if not landed("kernels_numba.validate"):
        return None
    completed = subprocess.run(
        [sys.executable, "-m", "kernels_numba.validate", "--json"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"kernels_numba.validate printed nothing (exit {completed.returncode}): "
                           f"{completed.stderr.strip()[-1000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def kernel_points() -> list[dict[str, Any]] | None:
    """Per-shape predicted and measured kernel times, or None when the kernels package offers none.

    Each point: device, family, impl, shape (text), measured_s, predicted_s, held_out (bool).
    """
    if not landed("kernels_numba.validate"):
        return None
    from kernels_numba import validate  # type: ignore[attr-defined]

    records = getattr(validate, "points", None)
    if records is None:
        return None
    return list(records())
