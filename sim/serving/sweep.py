"""Throughput-vs-interactivity sweep: run a workload at several concurrencies (or decode batch caps)
and keep the Pareto-optimal points (no other point has both more tokens/s per GPU and more tokens/s
per user), each with its cost."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.record import Record
from sim.serving.api import estimate_serving

if TYPE_CHECKING:
    from gpus import GPUProfile
    from moe import MoEModel


@dataclass(frozen=True)
class ParetoPoint(Record):
    concurrency: int
    output_tokens_per_s_per_gpu: float
    decode_output_tokens_per_s_per_node: float
    prefill_input_tokens_per_s_per_node: float
    tokens_per_s_per_user: float
    ttft_p50_s: float
    tpot_p50_s: float
    usd_per_million_input_tokens: float
    usd_per_million_output_tokens: float
    bound_by: str


def pareto_front(points: Sequence[ParetoPoint]) -> list[ParetoPoint]:
    """Points not dominated in (output tokens/s per GPU, tokens/s per user), sorted by interactivity."""
    front = []
    for p in points:
        dominated = any(
            q.output_tokens_per_s_per_gpu >= p.output_tokens_per_s_per_gpu
            and q.tokens_per_s_per_user >= p.tokens_per_s_per_user
            and q != p
            and (
                q.output_tokens_per_s_per_gpu > p.output_tokens_per_s_per_gpu
                or q.tokens_per_s_per_user > p.tokens_per_s_per_user
            )
            for q in points
        )
        if not dominated:
            front.append(p)
    return sorted(front, key=lambda p: p.tokens_per_s_per_user)


def pareto_sweep(
    model: str | MoEModel,
    gpu: str | GPUProfile,
    deployment: Mapping[str, Any],
    workload: Mapping[str, Any],
    concurrencies: Sequence[int],
    usd_per_gpu_hour: float | None = None,
    duration_s: float = 300.0,
    seed: int = 0,
) -> list[ParetoPoint]:
    """Run the workload (closed loop) at each concurrency; return the Pareto front."""
    if isinstance(concurrencies, np.ndarray):
        concurrencies = concurrencies.tolist()
    if isinstance(concurrencies, str | bytes) or not isinstance(concurrencies, Sequence):
        raise ValueError(
            f"concurrencies must be a list of whole numbers >= 1, got {type(concurrencies).__name__}."
        )
    if not concurrencies:
        raise ValueError("A sweep needs at least one concurrency.")
    for c in concurrencies:
        if isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 1:
            raise ValueError(f"Each concurrency of a sweep must be a whole number >= 1, got {c!r}.")
    if not isinstance(workload, Mapping):
        raise ValueError(
            f"workload must be a dict of DESIGN.md's workload keys, got {type(workload).__name__}."
        )
    base = {k: v for k, v in workload.items() if k not in ("concurrency", "arrival_rate_per_s", "trace")}
    points = []
    for c in concurrencies:
        r = estimate_serving(
            model,
            gpu,
            deployment,
            {**base, "concurrency": int(c)},
            usd_per_gpu_hour=usd_per_gpu_hour,
            duration_s=duration_s,
            seed=seed,
        )
        points.append(
            ParetoPoint(
                int(c),
                r.output_tokens_per_s_per_gpu,
                r.decode_output_tokens_per_s_per_node,
                r.prefill_input_tokens_per_s_per_node,
                r.tokens_per_s_per_user,
                r.ttft_p50_s,
                r.tpot_p50_s,
                r.usd_per_million_input_tokens,
                r.usd_per_million_output_tokens,
                r.bound_by,
            )
        )
    return pareto_front(points)
