"""Per-request records and their statistics.

Times are seconds of simulated time. For a request with output length n:
TTFT = first token - arrival; TPOT = (finish - first token) / (n - 1) (undefined for n = 1);
end-to-end = finish - arrival; queueing = time from arrival to the start of its prefill; decode
wait = time from the first token to admission into a decode batch (KV transfer, KV capacity).
Statistics cover requests that arrived after the warm-up and finished before the end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from sim.record import Record

if TYPE_CHECKING:
    from sim.serving.stepcost import StepCost

_FIELDS = ("arrival_s", "prefill_start_s", "first_token_s", "decode_admit_s", "finish_s")


class RequestLog:
    """Growable columns, one row per request id (ids are 0, 1, 2, ... in creation order)."""

    def __init__(self, capacity: int = 1024) -> None:
        self.size = 0
        self._cap = max(16, capacity)
        self.times = {f: np.full(self._cap, np.nan) for f in _FIELDS}
        self.input_len = np.zeros(self._cap, dtype=np.int64)
        self.output_len = np.zeros(self._cap, dtype=np.int64)
        self.cached_tokens = np.zeros(self._cap, dtype=np.int64)
        # KV entries a request holds at its end (prompt and every output token): what admission reserves
        self.footprint_tokens = np.zeros(self._cap, dtype=np.int64)

    def _grow(self) -> None:
        new = self._cap * 2
        for f in _FIELDS:
            col = np.full(new, np.nan)
            col[: self._cap] = self.times[f]
            self.times[f] = col
        for name in ("input_len", "output_len", "cached_tokens", "footprint_tokens"):
            old = getattr(self, name)
            col = np.zeros(new, dtype=np.int64)
            col[: self._cap] = old
            setattr(self, name, col)
        self._cap = new

    def new(self, arrival_s: float, input_len: int, output_len: int, cached_tokens: int) -> int:
        if self.size == self._cap:
            self._grow()
        rid = self.size
        self.size += 1
        self.times["arrival_s"][rid] = arrival_s
        self.input_len[rid] = input_len
        self.output_len[rid] = output_len
        self.cached_tokens[rid] = cached_tokens
        self.footprint_tokens[rid] = input_len + output_len
        return rid

    def mark(self, field: str, rid: int, time_s: float) -> None:
        col = self.times[field]
        if not np.isnan(col[rid]):
            raise RuntimeError(f"Request {rid} already has {field} = {col[rid]}; an event was counted twice.")
        col[rid] = time_s

    def column(self, field: str) -> np.ndarray:
        return self.times[field][: self.size]


@dataclass(frozen=True)
class LatencyStats(Record):
    """Percentiles and means in seconds (or tokens/s for ``tokens_per_s_per_user``)."""

    num_requests: int
    ttft_mean_s: float
    ttft_p50_s: float
    ttft_p90_s: float
    ttft_p99_s: float
    tpot_mean_s: float
    tpot_p50_s: float
    tpot_p90_s: float
    tpot_p99_s: float
    e2e_mean_s: float
    e2e_p50_s: float
    e2e_p99_s: float
    queueing_mean_s: float
    queueing_p99_s: float
    tokens_per_s_per_user: float
    decode_wait_mean_s: float = float("nan")  # first token to decode admission (KV transfer, capacity)


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if x.size else float("nan")


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else float("nan")


def latency_stats(log: RequestLog, start_s: float, end_s: float) -> LatencyStats:
    """Statistics of the requests that arrived in ``[start_s, end_s]`` and finished (the simulation
    follows them past ``end_s``): selecting on the finish time too would drop the requests that run
    longest, and every request whose end-to-end time exceeds the window."""
    arrival = log.column("arrival_s")
    finish = log.column("finish_s")
    first = log.column("first_token_s")
    prefill = log.column("prefill_start_s")
    n_out = log.output_len[: log.size]
    done = (arrival >= start_s) & (arrival <= end_s) & ~np.isnan(finish)
    ttft = (first - arrival)[done]
    e2e = (finish - arrival)[done]
    queue = (prefill - arrival)[done]
    admitted = done & ~np.isnan(log.column("decode_admit_s"))
    decode_wait = (log.column("decode_admit_s") - first)[admitted]
    multi = done & (n_out > 1)
    tpot = ((finish - first) / np.maximum(n_out - 1, 1))[multi]
    positive = tpot[tpot > 0]
    per_user = float(np.mean(1.0 / positive)) if positive.size else float("nan")
    return LatencyStats(
        num_requests=int(done.sum()),
        ttft_mean_s=_mean(ttft),
        ttft_p50_s=_pct(ttft, 50),
        ttft_p90_s=_pct(ttft, 90),
        ttft_p99_s=_pct(ttft, 99),
        tpot_mean_s=_mean(tpot),
        tpot_p50_s=_pct(tpot, 50),
        tpot_p90_s=_pct(tpot, 90),
        tpot_p99_s=_pct(tpot, 99),
        e2e_mean_s=_mean(e2e),
        e2e_p50_s=_pct(e2e, 50),
        e2e_p99_s=_pct(e2e, 99),
        queueing_mean_s=_mean(queue),
        queueing_p99_s=_pct(queue, 99),
        tokens_per_s_per_user=per_user,
        decode_wait_mean_s=_mean(decode_wait),
    )


def window_share(t0: float, t1: float, start_s: float, end_s: float) -> float:
    """The fraction of the interval [t0, t1] inside the measurement window [start_s, end_s]: 0 when they do
    not overlap (touching ends do not count), 1 for an instant (t1 <= t0) inside. The one place the
    engine clips work to the window: step times, tokens and the shares derived from them."""
    if t1 <= start_s or t0 >= end_s:
        return 0.0
    if t1 <= t0:
        return 1.0
    return (min(t1, end_s) - max(t0, start_s)) / (t1 - t0)


class WindowCounter:
    """Accumulates a quantity produced over an interval, keeping only what falls inside [start, end]."""

    def __init__(self, start_s: float, end_s: float) -> None:
        self.start_s = start_s
        self.end_s = end_s
        self.total = 0.0

    def add(self, amount: float, t0: float, t1: float) -> None:
        """Add ``amount`` produced uniformly over [t0, t1] (t1 >= t0), counting only the window's part."""
        share = window_share(t0, t1, self.start_s, self.end_s)
        if share:
            self.total += amount * share


@dataclass
class RoleStats:
    """What one role's instances did inside the measurement window (accumulated by :class:`Recorder`)."""

    busy_s: float = 0.0
    steps: int = 0
    batch_sum: float = 0.0
    kv_blocked_steps: int = 0
    bound_votes: dict[str, float] = field(default_factory=dict)
    breakdown_s: dict[str, float] = field(default_factory=dict)
    hit_s: float = 0.0  # prefill time attributable to cached prefixes
    kv_imbalance_sum: float = 0.0  # busiest / mean rank KV, summed over decode steps
    kv_imbalance_steps: int = 0


class StepRecord(NamedTuple):
    """One step of one instance, as :class:`Recorder` traces it (``Simulation(trace_steps=True)``)."""

    role: str
    instance: int
    start_s: float
    end_s: float
    requests: int  # decode requests stepped (prefill: requests in the batch)
    prefill_tokens: int  # prompt tokens computed (0 for a decode step)


class Recorder:
    """What the engine measures, clipped once to the measurement window [start_s, end_s]: tokens in and
    out, and per role the busy time, steps, batch sizes, what bound each step and where its time went.
    With ``trace`` it also keeps every step (:class:`StepRecord`), inside the window or not."""

    def __init__(self, start_s: float, end_s: float, roles: Iterable[str], trace: bool = False) -> None:
        self.start_s = start_s
        self.end_s = end_s
        self.input_tokens = WindowCounter(start_s, end_s)
        self.cached_input_tokens = WindowCounter(start_s, end_s)
        self.output_tokens = WindowCounter(start_s, end_s)
        self.stats = {role: RoleStats() for role in roles}
        self.steps: list[StepRecord] | None = [] if trace else None

    def step(
        self,
        role: str,
        instance: int,
        cost: StepCost,
        t0: float,
        t1: float,
        requests: int,
        prefill_tokens: int = 0,
        kv_imbalance: float | None = None,
        kv_blocked: bool = False,
        hit_share: float = 0.0,
        prefill_share: float | None = None,
    ) -> None:
        """A step of ``role`` from t0 to t1 costing ``cost``. ``kv_blocked``: a waiting request was held
        back by the KV cache (counted for steps starting after the warm-up); ``hit_share``: the part of
        the step's time spent on cached prefixes; ``prefill_share``: the part that was prefill
        (colocated iterations)."""
        stats = self.stats[role]
        if kv_blocked and t0 >= self.start_s:
            stats.kv_blocked_steps += 1
        if self.steps is not None:
            self.steps.append(StepRecord(role, instance, t0, t1, requests, prefill_tokens))
        share = window_share(t0, t1, self.start_s, self.end_s)
        if not share:
            return
        inside_s = (t1 - t0) * share
        stats.busy_s += inside_s
        stats.steps += 1
        stats.batch_sum += requests
        if kv_imbalance is not None:
            stats.kv_imbalance_sum += kv_imbalance
            stats.kv_imbalance_steps += 1
        stats.bound_votes[cost.bound_by] = stats.bound_votes.get(cost.bound_by, 0.0) + inside_s
        scale = inside_s / cost.time_s if cost.time_s > 0 else 0.0
        breakdown = stats.breakdown_s
        for k, v in cost.breakdown_s.items():
            breakdown[k] = breakdown.get(k, 0.0) + v * scale
        stats.hit_s += hit_share * inside_s
        if prefill_share is not None:
            breakdown["prefill_share_s"] = breakdown.get("prefill_share_s", 0.0) + prefill_share * inside_s
