"""Per-request records and their statistics.

Times are seconds of simulated time. For a request with output length n:
TTFT = first token - arrival; TPOT = (finish - first token) / (n - 1) (undefined for n = 1);
end-to-end = finish - arrival; queueing = time from arrival to the start of its prefill; decode
wait = time from the first token to admission into a decode batch (KV transfer, KV capacity).
Statistics cover requests that arrived after the warm-up and finished before the end.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

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

    def _grow(self) -> None:
        new = self._cap * 2
        for f in _FIELDS:
            col = np.full(new, np.nan)
            col[: self._cap] = self.times[f]
            self.times[f] = col
        for name in ("input_len", "output_len", "cached_tokens"):
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
        return rid

    def mark(self, field: str, rid: int, time_s: float) -> None:
        col = self.times[field]
        if not np.isnan(col[rid]):
            raise RuntimeError(f"Request {rid} already has {field} = {col[rid]}; an event was counted twice.")
        col[rid] = time_s

    def column(self, field: str) -> np.ndarray:
        return self.times[field][: self.size]


@dataclass(frozen=True)
class LatencyStats:
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


class WindowCounter:
    """Accumulates a quantity produced over an interval, keeping only what falls inside [start, end]."""

    def __init__(self, start_s: float, end_s: float) -> None:
        self.start_s = start_s
        self.end_s = end_s
        self.total = 0.0

    def add(self, amount: float, t0: float, t1: float) -> None:
        """Add ``amount`` produced uniformly over [t0, t1] (t1 >= t0), counting only the window's part."""
        if t1 <= self.start_s or t0 >= self.end_s:
            return
        if t1 <= t0:
            self.total += amount
            return
        overlap = min(t1, self.end_s) - max(t0, self.start_s)
        self.total += amount * overlap / (t1 - t0)
