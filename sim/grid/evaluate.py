"""One configuration of a sweep to one row of figures, with the simulators' own cost models.

``serving``: the closed-form capacity of an instance shape, as fleet sizing computes it
(``sim.serving.plan.decode_operating_point`` and ``sim.serving.fleet.prefill_capacity``, the same
step-cost model the serving simulator runs): the largest decode batch per GPU that meets the TPOT
target (the plan search's bisection over decode steps at the mean KV length), its tokens/s per GPU
and per user, the prefill throughput of full batches, and the rental cost per million output and
input tokens. It takes a few milliseconds, where a discrete-event run of ``sim.estimate_serving``
takes a few hundred.

``training``: ``sim.estimate_training`` (one optimizer step simulated with SimPy, about 0.1 s).

A configuration the simulator refuses (the weights do not fit, ep does not divide the experts ...)
is a row with ``ok = False`` and the simulator's message in ``error``, not an exception.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sim.grid.provenance import gpu_sha256, model_sha256, run_provenance
from sim.grid.spec import PROFILE_PRICE, SweepSpec, canonical_json

# Columns of every row, then each kind's configuration and figure columns, as (name, type) with type
# one of "int", "float", "str", "bool" (``sim.grid.store`` maps them to Arrow types). Every column
# may be null where it does not apply (an error row has no figures).
COMMON_COLUMNS: list[tuple[str, str]] = [
    ("config_id", "int"),
    ("kind", "str"),
    ("config", "str"),
    ("ok", "bool"),
    ("error", "str"),
    ("model", "str"),
    ("gpu", "str"),
    ("usd_per_gpu_hour", "float"),
    ("price_source", "str"),
]
PROVENANCE_COLUMNS: list[tuple[str, str]] = [
    ("model_sha256", "str"),
    ("gpu_sha256", "str"),
    ("calibration_sha256", "str"),
    ("stack", "str"),
]
KIND_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "serving": [
        ("deployment", "str"),
        ("input_len", "int"),
        ("output_len", "int"),
        ("cache_hit_rate", "float"),
        ("mtp_draft_tokens", "int"),
        ("mtp_acceptance", "float"),
        ("tpot_target_s", "float"),
        ("prefill_gpus", "int"),
        ("decode_gpus", "int"),
        ("decode_feasible", "bool"),
        ("decode_limit", "str"),
        ("decode_batch_per_gpu", "int"),
        ("decode_step_time_s", "float"),
        ("tpot_s", "float"),
        ("tokens_per_s_per_user", "float"),
        ("output_tokens_per_s_per_gpu", "float"),
        ("decode_bound_by", "str"),
        ("prefill_input_tokens_per_s_per_gpu", "float"),
        ("prefill_batch_time_s", "float"),
        ("prefill_bound_by", "str"),
        ("usd_per_million_output_tokens", "float"),
        ("usd_per_million_input_tokens", "float"),
    ],
    "training": [
        ("plan", "str"),
        ("num_gpus", "int"),
        ("seq_len", "int"),
        ("global_batch_seqs", "int"),
        ("precision", "str"),
        ("tokens", "float"),
        ("step_time_s", "float"),
        ("tokens_per_s_per_gpu", "float"),
        ("mfu", "float"),
        ("gpu_hours", "float"),
        ("days", "float"),
        ("cost_usd", "float"),
        ("usd_per_million_tokens", "float"),
        ("bound_by", "str"),
        ("memory_per_gpu_bytes", "float"),
        ("notes", "str"),
    ],
}


def columns(kind: str) -> list[tuple[str, str]]:
    """Every column of a ``kind`` row, in order."""
    return COMMON_COLUMNS + KIND_COLUMNS[kind] + PROVENANCE_COLUMNS


def _price(gpu_name: str, price: Any) -> tuple[float, str]:
    import gpus

    if price == PROFILE_PRICE:
        return float(gpus.get(gpu_name).price.usd_per_gpu_hour), PROFILE_PRICE
    return float(price), "given"


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _serving_capacity(config: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The price-independent figures of a serving configuration (deployment, workload, target)."""
    import numpy as np

    import gpus
    import moe
    from sim.serving.deployment import parse_deployment
    from sim.serving.fleet import prefill_capacity
    from sim.serving.plan import decode_operating_point
    from sim.serving.workloads import parse_workload

    model = moe.get(config["model"])
    gpu = gpus.get(config["gpu"])
    shape = config["deployment"]
    roles = shape if "prefill" in shape else {"prefill": shape, "decode": shape}
    deployment = parse_deployment({"mode": "disaggregated", **roles}, model, gpu)
    workload_spec: dict[str, Any] = {
        "input_len": config["input_len"],
        "output_len": config["output_len"],
        "cache_hit_rate": config["cache_hit_rate"],
        "arrival_rate_per_s": 1.0,  # capacity does not depend on it; a workload needs one
        "mtp_acceptance": config["mtp_acceptance"],
    }
    if config["mtp_draft_tokens"] != "model":
        workload_spec["mtp_draft_tokens"] = config["mtp_draft_tokens"]
    # the serving API's default: the model's own MTP depth, at most one draft token (sim.serving.api)
    workload = parse_workload(
        workload_spec,
        default_mtp_draft_tokens=min(1, int(model.num_mtp_modules or 0)),
        default_mtp_acceptance=float(config["mtp_acceptance"]),
    )
    if deployment.prefill is None or deployment.decode is None:  # parse_deployment guarantees both
        raise RuntimeError("a disaggregated deployment came back without a prefill or decode instance")
    decode = decode_operating_point(
        model, gpu, deployment.decode, workload, float(config["tpot_target_s"]), np.random.default_rng(seed)
    )
    prefill = prefill_capacity(model, gpu, deployment.prefill, workload, np.random.default_rng(seed))
    return {
        "mtp_draft_tokens": workload.mtp_draft_tokens,
        "mtp_acceptance": workload.mtp_acceptance,
        "prefill_gpus": deployment.prefill.gpus,
        "decode_gpus": deployment.decode.gpus,
        "decode_feasible": decode.feasible,
        "decode_limit": decode.limit,
        "decode_batch_per_gpu": decode.batch_per_gpu,
        "decode_step_time_s": _finite_or_none(decode.step_time_s),
        "tpot_s": _finite_or_none(decode.tpot_s),
        "tokens_per_s_per_user": decode.tokens_per_s_per_user,
        "output_tokens_per_s_per_gpu": decode.output_tokens_per_s_per_gpu,
        "decode_bound_by": decode.bound_by,
        "prefill_input_tokens_per_s_per_gpu": prefill.input_tokens_per_s_per_instance
        / deployment.prefill.gpus,
        "prefill_batch_time_s": prefill.batch_time_s,
        "prefill_bound_by": prefill.bound_by,
    }


def _serving_row(config: Mapping[str, Any], seed: int, capacity: Mapping[str, Any]) -> dict[str, Any]:
    from sim.cost import usd_per_million_tokens

    price, _ = _price(config["gpu"], config["usd_per_gpu_hour"])
    row = dict(capacity)
    output_rate = capacity["output_tokens_per_s_per_gpu"]
    row["usd_per_million_output_tokens"] = (
        usd_per_million_tokens(1, price, output_rate)
        if capacity["decode_feasible"] and output_rate > 0
        else None
    )
    input_rate = capacity["prefill_input_tokens_per_s_per_gpu"]
    row["usd_per_million_input_tokens"] = (
        usd_per_million_tokens(1, price, input_rate) if input_rate > 0 else None
    )
    return row


def _training_row(config: Mapping[str, Any], seed: int) -> dict[str, Any]:
    from sim.training.estimate import estimate_training

    price, _ = _price(config["gpu"], config["usd_per_gpu_hour"])
    plan = dict(config["plan"])
    result = estimate_training(
        model=config["model"],
        gpu=config["gpu"],
        seq_len=config["seq_len"],
        global_batch_seqs=config["global_batch_seqs"],
        tokens=float(config["tokens"]),
        precision=config["precision"],
        usd_per_gpu_hour=price,
        seed=seed,
        **plan,
    )
    return {
        "step_time_s": result.step_time_s,
        "tokens_per_s_per_gpu": result.tokens_per_s_per_gpu,
        "mfu": result.mfu,
        "gpu_hours": result.gpu_hours,
        "days": result.days,
        "cost_usd": result.cost_usd,
        "usd_per_million_tokens": result.usd_per_million_tokens,
        "bound_by": result.bound_by,
        "memory_per_gpu_bytes": result.memory_per_gpu_bytes,
        "notes": "; ".join(result.notes),
    }


def _config_columns(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    price, source = _price(config["gpu"], config["usd_per_gpu_hour"])
    out: dict[str, Any] = {
        "config_id": config["config_id"],
        "kind": kind,
        "config": canonical_json({k: v for k, v in config.items() if k != "config_id"}),
        "model": config["model"],
        "gpu": config["gpu"],
        "usd_per_gpu_hour": price,
        "price_source": source,
    }
    if kind == "serving":
        out["deployment"] = canonical_json(config["deployment"])
        for key in ("input_len", "output_len", "cache_hit_rate", "mtp_acceptance", "tpot_target_s"):
            out[key] = config[key]
        draft = config["mtp_draft_tokens"]
        out["mtp_draft_tokens"] = None if draft == "model" else draft
    else:
        plan = config["plan"]
        out["plan"] = canonical_json(plan)
        out["num_gpus"] = plan["num_gpus"]
        for key in ("seq_len", "global_batch_seqs", "precision", "tokens"):
            out[key] = config[key]
    return out


def _provenance_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    run = run_provenance()
    return {
        "model_sha256": model_sha256(config["model"]),
        "gpu_sha256": gpu_sha256(config["gpu"]),
        "calibration_sha256": run["calibration_sha256_json"],
        "stack": run["stack_json"],
    }


def evaluate_config(
    spec: SweepSpec,
    config: Mapping[str, Any],
    cache: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One row for one configuration: its columns, ``ok`` and ``error``, its figures and provenance.

    ``cache`` (a dict the caller keeps, e.g. for one chunk) holds the price-independent serving
    figures by configuration, so that a price axis costs one evaluation, not one per price.
    A ValueError from the simulators (a configuration they refuse) becomes ``ok = False`` with the
    message; any other exception propagates (a bug, which fails the chunk).
    """
    row: dict[str, Any] = {name: None for name, _ in columns(spec.kind)}
    row.update(_config_columns(spec.kind, config))
    row.update(_provenance_columns(config))
    try:
        if spec.kind == "serving":
            key = canonical_json(
                {k: v for k, v in config.items() if k not in ("config_id", "usd_per_gpu_hour")}
            )
            capacity = cache.get(key) if cache is not None else None
            if capacity is None:
                capacity = _serving_capacity(config, spec.seed)
                if cache is not None:
                    cache[key] = capacity
            figures = _serving_row(config, spec.seed, capacity)
        else:
            figures = _training_row(config, spec.seed)
    except ValueError as error:
        row["ok"] = False
        row["error"] = str(error)
        return row
    row.update(figures)
    row["ok"] = True
    return row


def evaluate_range(spec: SweepSpec, start: int, end: int) -> list[dict[str, Any]]:
    """Rows of configurations ``start`` to ``end - 1`` (one chunk), in order."""
    cache: dict[str, Any] = {}
    return [evaluate_config(spec, config, cache) for config in spec.configs(start, end)]
