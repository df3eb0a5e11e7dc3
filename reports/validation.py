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
    kernels: str = ""  # a kernel vintage ("2025-02": the GPU named "H800@2025-02"); "" = the newest

    @property
    def description(self) -> str:
        if self.kernels:
            return f"{self.figure.description}, with the kernels of {self.kernels}"
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
        if self.figure.lower_bound:  # "over X": met when the prediction reaches X
            return error >= -1e-9
        return abs(error) <= self.tolerance_pct_or_points + 1e-9

    @property
    def group(self) -> FigureGroup:
        return group_of(self.figure.key)

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
            "group": self.group.name,
            "basis": self.group.basis,
            "source": self.figure.source,
            "note": self.note,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernels": self.kernels,
            "level": self.level,
            "figure": self.figure.to_dict(),
            "simulated": self.simulated,
            "error": self.error,
            "within": self.within,
            "group": self.group.name,
            "basis": self.group.basis,
            "note": self.note,
        }


# How the figures are counted. A figure group is one degree of freedom of the simulation: figures
# join a group when one follows from another (or all from one simulated quantity) through
# published constants alone, so that a simulator error moves them together and counting each would
# count one test several times. At the published configuration:
#   * a training step's time fixes its tokens/s per GPU (tokens per step / time / GPUs), GPU-hours
#     per trillion tokens (1e12 / tokens/s / 3,600) and MFU causal and non-causal (model FLOPs per
#     step / time / peak); the whole V3 run is 14.8T tokens at that rate (96% of its GPU-hours) plus
#     context extension and a given post-training figure, so it goes with pre-training too;
#   * at a fixed decode concurrency, output tokens/s per node = requests in decode x speed per user
#     / nodes (Little's law) and $ per million output tokens = price per node-hour / tokens per
#     node-hour: one group per concurrency point;
#   * ISCA'25's time per output token is two EP steps per layer x 61 layers.
# Figures from separate simulations (another model, length, deployment) are separate groups.
# A group is within tolerance only when every figure in it is.
#
# A group is a *consistency check*, not a prediction, when it cannot fail for the reason it
# would test: data from the same run fed a fit (the V3 training trace feeds four H800 kernel
# families, sim.calibration.published.TRACE_TABLES, so the trace's layer pair and V3 pre-training
# at the trace's configuration are checked against the job the calibration was fitted to), or
# the figure is the source's own calculation repeated from its own inputs (ISCA'25's bound).
# Everything else is *independent*: no data of that system fed any fit.
INDEPENDENT = "independent"
CONSISTENCY = "consistency"


@dataclass(frozen=True)
class FigureGroup:
    """Figures that are one degree of freedom, counted once; ``basis`` says whether the check is
    independent of the calibration data or a consistency check, ``why`` gives the reason."""

    name: str
    keys: tuple[str, ...]
    basis: str
    why: str = ""  # why the figures are one group, and for a consistency check why it is one


_TRACE_FITTED = (
    "four H800 kernel families (weight-gradient GEMMs, memory-bound kernels, RMSNorm/RoPE, attention "
    "backward) are fitted to kernels of this job's trace (V3 pre-training, EP64, 4K, H800)"
)
FIGURE_GROUPS: tuple[FigureGroup, ...] = (
    FigureGroup("DeepSeek-V3 total parameters", ("v3_total_params",), INDEPENDENT),
    FigureGroup("DeepSeek-V3 active parameters", ("v3_active_params",), INDEPENDENT),
    FigureGroup("DeepSeek-V3 KV cache per token", ("v3_kv_bytes_per_token",), INDEPENDENT),
    FigureGroup("DeepSeek-V3 training compute per token", ("v3_training_gflop_per_token",), INDEPENDENT),
    FigureGroup("DeepSeek-V2 total parameters", ("v2_total_params",), INDEPENDENT),
    FigureGroup("DeepSeek-V2 active parameters", ("v2_active_params",), INDEPENDENT),
    FigureGroup("Mixtral-8x7B total parameters", ("mixtral_8x7b_total_params",), INDEPENDENT),
    FigureGroup("Mixtral-8x7B active parameters", ("mixtral_8x7b_active_params",), INDEPENDENT),
    FigureGroup("DeepSeek-V4-Flash total parameters", ("v4_flash_total_params",), INDEPENDENT),
    FigureGroup("DeepSeek-V4-Pro total parameters", ("v4_pro_total_params",), INDEPENDENT),
    FigureGroup(
        "V3 layer forward + backward against its trace",
        ("v3_layer_pair_span_ms",),
        CONSISTENCY,
        "the trace the four trace-fitted kernel families were fitted to",
    ),
    FigureGroup(
        "V3 pre-training throughput",
        (
            "v3_step_time_s",
            "v3_gpu_hours_per_trillion",
            "v3_tokens_per_s_per_gpu",
            "v3_mfu_causal",
            "v3_mfu_noncausal",
            "v3_total_gpu_hours",
        ),
        CONSISTENCY,
        f"{_TRACE_FITTED}; step time, tokens/s, GPU-hours and MFU are one number rescaled, and the whole "
        "run is 96% pre-training",
    ),
    FigureGroup("V3 context extension", ("v3_context_extension_gpu_hours",), INDEPENDENT),
    FigureGroup("V2 pre-training", ("v2_gpu_hours_per_trillion",), INDEPENDENT),
    FigureGroup("V3 prefill, EP32 (profiled)", ("profile_prefill_tokens_per_s_per_node",), INDEPENDENT),
    FigureGroup("V3 decode, EP128 (profiled)", ("profile_decode_tokens_per_s_per_node",), INDEPENDENT),
    FigureGroup(
        "Day-6 decode at 12,686 concurrent requests",
        ("day6_decode_tokens_per_s_per_node", "day6_tokens_per_s_per_user", "day6_usd_per_million_output"),
        INDEPENDENT,
        "throughput per node, speed per user and cost per output token follow from one another at a "
        "fixed concurrency and price",
    ),
    FigureGroup(
        "ISCA'25 decode bound over 400G IB",
        ("isca_ep_step_us", "isca_tpot_ms"),
        CONSISTENCY,
        "the paper's own arithmetic (zero compute, NIC peak) repeated from its own inputs; no measurement",
    ),
    FigureGroup(
        "V2 generation on one node (lower bound)", ("v2_generation_tokens_per_s_per_node",), INDEPENDENT
    ),
)


def group_of(key: str) -> FigureGroup:
    """The figure group a published figure is counted in; every checked figure has exactly one."""
    found = [g for g in FIGURE_GROUPS if key in g.keys]
    if len(found) != 1:
        raise ValueError(f"published figure {key!r} is in {len(found)} figure groups; put it in exactly one.")
    return found[0]


@dataclass(frozen=True)
class GroupVerdict:
    """One figure group's checks with one set of kernels, and whether all are within tolerance
    (None when no figure of the group could be simulated)."""

    group: FigureGroup
    kernels: str
    checks: tuple[Check, ...]

    @property
    def within(self) -> bool | None:
        verdicts = [c.within for c in self.checks]
        if any(v is None for v in verdicts):
            return None
        return all(verdicts)


def group_verdicts(checks: list[Check]) -> list[GroupVerdict]:
    """The checks gathered by (figure group, kernel vintage), in :data:`FIGURE_GROUPS` order and,
    within a group, the newest kernels first."""
    out = []
    vintages = sorted({c.kernels for c in checks})
    for group in FIGURE_GROUPS:
        for kernels in vintages:
            members = tuple(c for c in checks if c.kernels == kernels and c.figure.key in group.keys)
            if members:
                out.append(GroupVerdict(group, kernels, members))
    return out


def _run(
    level: str, keys: list[str], compute: Callable[[], dict[str, float]], needs: str, kernels: str = ""
) -> list[Check]:
    """Compute several checks with one simulation; a missing module or a failure becomes a note."""
    figures = [published(key) for key in keys]
    if not landed(needs):
        return [Check(level, f, None, f"needs {needs}, not landed yet", kernels) for f in figures]
    try:
        values = compute()
    except Exception as error:  # a failing simulator is reported in the table, not hidden
        return [Check(level, f, None, f"failed: {type(error).__name__}: {error}", kernels) for f in figures]
    return [
        Check(level, f, values.get(f.key), "" if f.key in values else "not computed", kernels)
        for f in figures
    ]


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


def _v3_training(gpu: str = "H800") -> dict[str, float]:
    """DeepSeek-V3's published pre-training (sim/scenarios/v3_pretraining.toml: V3 report section 3,
    ISCA'25 Table 4) and its figures."""
    return _scenario("v3-pretraining", gpu)


def _v3_layer_pair(gpu: str = "H800") -> dict[str, float]:
    """One MoE layer's overlapped forward + backward as the trace runs it (sim.training.trace)."""
    from sim.training.trace import simulated_per_layer

    return {"v3_layer_pair_span_ms": simulated_per_layer(gpu=gpu)["span_per_layer_s"] * 1e3}


def training_checks() -> list[Check]:
    checks = _run("training", ["v3_layer_pair_span_ms"], _v3_layer_pair, "sim.training.trace")
    keys = [
        "v3_gpu_hours_per_trillion", "v3_step_time_s", "v3_mfu_causal", "v3_mfu_noncausal",
        "v3_tokens_per_s_per_gpu",
    ]  # fmt: skip
    checks += _run("training", keys, _v3_training, "sim.training.api")
    checks += _run(
        "training", ["v3_total_gpu_hours", "v3_context_extension_gpu_hours"], _v3_run, "sim.training.run"
    )
    checks += _run("training", ["v2_gpu_hours_per_trillion"], _v2_training, "sim.training.api")
    return checks


def _v3_run(gpu: str = "H800") -> dict[str, float]:
    """The whole V3 run as the training package lays it out (ramp, 32K and 128K phases, post-training)."""
    from sim.training.run import deepseek_v3_run

    run = deepseek_v3_run(gpu=gpu)
    context = sum(p["gpu_hours"] for p in run.phases if str(p["name"]).startswith("context"))
    return {"v3_total_gpu_hours": run.gpu_hours, "v3_context_extension_gpu_hours": context}


def _v2_training(gpu: str = "H800") -> dict[str, float]:
    """DeepSeek-V2 at the configuration its report gives (V2 report p.12): 16-way zero-bubble PP,
    8-way EP, ZeRO-1, no TP, BF16, 4K x 9,216 sequences. The cluster size is not stated: 2,048
    H800 assumed (V3's cluster), as the training package's own test does."""
    import sim

    t = sim.estimate_training(
        model="deepseek-v2", gpu=gpu, num_gpus=2048, tp=1, pp=16, ep=8, seq_len=4096,
        global_batch_seqs=9216, tokens=1e12, precision="bf16", schedule="zb1p", usd_per_gpu_hour=2.0,
    )  # fmt: skip
    return {"v2_gpu_hours_per_trillion": t.gpu_hours}


# DeepSeek-V3 on H800 as DeepSeek served it (Day 6 of the open-infra week; DESIGN.md), the profiled
# configurations (deepseek-ai/profile-data) and V2's generation claim: the scenarios of
# sim/scenarios/*.toml, which the serving reference tests (tests/sim/serving/test_serving_reference.py)
# run too, each with the figures published for it.
def _scenario(name: str, gpu: str | None = None) -> dict[str, float]:
    """The published figures' simulated values of one scenario, on ``gpu`` (default: the scenario's)."""
    from sim import scenarios

    scenario = scenarios.get(name)
    result = scenario.run(**({} if gpu is None else {"gpu": gpu}))
    return {figure.key: figure.of(result) for figure in scenario.figures}


def _day6(gpu: str = "H800") -> dict[str, float]:
    return _scenario("day6", gpu)


def _profiles(gpu: str = "H800") -> dict[str, float]:
    return {**_scenario("profile-prefill", gpu), **_scenario("profile-decode", gpu)}


def _isca_bound() -> dict[str, float]:
    from sim.serving.fleet import isca_decode_bound

    bound = isca_decode_bound("H800")
    return {"isca_ep_step_us": bound.ep_step_s * 1e6, "isca_tpot_ms": bound.tpot_s * 1e3}


def _v2_generation(gpu: str = "H800") -> dict[str, float]:
    return _scenario("v2-generation", gpu)


def serving_checks() -> list[Check]:
    needs = "sim.serving.api"
    profiled = ["profile_prefill_tokens_per_s_per_node", "profile_decode_tokens_per_s_per_node"]
    checks = _run("serving", profiled, _profiles, needs)
    checks += _run(
        "serving",
        ["day6_decode_tokens_per_s_per_node", "day6_tokens_per_s_per_user", "day6_usd_per_million_output"],
        _day6,
        needs,
    )
    checks += _run("serving", ["isca_ep_step_us", "isca_tpot_ms"], _isca_bound, "sim.serving.fleet")
    checks += _run("serving", ["v2_generation_tokens_per_s_per_node"], _v2_generation, needs)
    return checks


# DeepSeek's systems of February 2025 and before, predicted again with the H800 kernel tables as
# they stood at the end of February 2025 (sim.calibration.published.vintages(): DeepGEMM v1, FlashMLA
# and DeepEP at launch, the earliest public ones): V2 (2024) and V3's training (late 2024; its
# trace is of 2025-02-27), V2's generation claim, the profiled configurations (2025-02-27) and
# Day 6 (2025-02-27/28). The rows above use the newest tables. ISCA'25's bound has no kernels.
KERNELS_OF_THEIR_TIME = "2025-02"


def dated_checks(training: bool = True, serving: bool = True) -> list[Check]:
    vintage, gpu = KERNELS_OF_THEIR_TIME, f"H800@{KERNELS_OF_THEIR_TIME}"
    checks: list[Check] = []
    if training:
        pair = ["v3_layer_pair_span_ms"]
        checks += _run("training", pair, lambda: _v3_layer_pair(gpu), "sim.training.trace", vintage)
        keys = ["v3_gpu_hours_per_trillion", "v3_step_time_s", "v3_mfu_causal"]
        checks += _run("training", keys, lambda: _v3_training(gpu), "sim.training.api", vintage)
        keys = ["v3_total_gpu_hours", "v3_context_extension_gpu_hours"]
        checks += _run("training", keys, lambda: _v3_run(gpu), "sim.training.run", vintage)
        checks += _run(
            "training", ["v2_gpu_hours_per_trillion"], lambda: _v2_training(gpu), "sim.training.api", vintage
        )
    if serving:
        profiled = ["profile_prefill_tokens_per_s_per_node", "profile_decode_tokens_per_s_per_node"]
        checks += _run("serving", profiled, lambda: _profiles(gpu), "sim.serving.api", vintage)
        day6 = [
            "day6_decode_tokens_per_s_per_node",
            "day6_tokens_per_s_per_user",
            "day6_usd_per_million_output",
        ]
        checks += _run("serving", day6, lambda: _day6(gpu), "sim.serving.api", vintage)
        v2 = ["v2_generation_tokens_per_s_per_node"]
        checks += _run("serving", v2, lambda: _v2_generation(gpu), "sim.serving.api", vintage)
    return checks


def published_checks(training: bool = True, serving: bool = True, dated: bool = True) -> list[Check]:
    """Every published figure the project checks, simulated where the simulator exists; with
    ``dated``, DeepSeek's own systems also with the kernels of their time (:func:`dated_checks`)."""
    checks = accounting_checks()
    if training:
        checks += training_checks()
    if serving:
        checks += serving_checks()
    if dated:
        checks += dated_checks(training, serving)
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
        raise RuntimeError(
            f"kernels_numba.validate printed nothing (exit {completed.returncode}): "
            f"{completed.stderr.strip()[-1000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def kernel_points() -> tuple[list[dict[str, Any]], list[str]] | None:
    """Per-shape predicted and measured kernel times, and notes on what could not be scored.

    Each point: device, family, impl, shape (text), measured_s, predicted_s, held_out (bool).
    The H800 points are DeepSeek's published tables (``sim.calibration.published``); the others
    come from this machine's committed calibration file, fitted on the fixed half as
    ``kernels_numba.validate`` does (``sim.calibration.devices``). None when the kernels package
    (which finds the hardware at hand) has not landed.
    """
    if not landed("kernels_numba.validate"):
        return None
    from kernels_numba import validate
    from sim import calibration
    from sim.calibration import devices
    from sim.calibration import published as published_tables

    points: list[dict[str, Any]] = []
    notes: list[str] = []
    for row in published_tables.fit_and_score()["rows"]:
        points.append(
            {
                "device": "H800 (published tables)",
                "family": row["family"],
                "impl": row["table"],
                "shape": json.dumps(row["shape"]) if row["shape"] else str(row["key"]),
                "measured_s": row["measured_s"],
                "predicted_s": row["predicted_s"],
                "held_out": row["held_out"],
            }
        )
    try:
        path = validate.device_file()
        doc = calibration.load_file(path)
        profile = devices.profile_for(doc, path)
        groups = devices.groups(doc)  # the same grouping and fixed split as the validation
        for (family, impl), records in sorted(groups.items()):
            _, _, held_idx, pairs = devices.fit_group(profile, records, str(doc.get("kind")))
            for i, (predicted_s, measured_s) in enumerate(pairs):
                points.append(
                    {
                        "device": str(doc["device"]),
                        "family": family,
                        "impl": impl,
                        "shape": json.dumps(records[i]["shape"]),
                        "measured_s": measured_s,
                        "predicted_s": predicted_s,
                        "held_out": i in held_idx,
                    }
                )
    except ValueError as error:  # e.g. no measured calibration file for this machine yet
        notes.append(str(error))
    return points, notes
