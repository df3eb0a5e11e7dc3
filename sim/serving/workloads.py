"""Serving workloads: how requests arrive and how long they are.

A workload is a dict with the keys of DESIGN.md (``input_len``, ``output_len``,
``cache_hit_rate``, one of ``concurrency`` | ``arrival_rate_per_s`` | ``trace``,
``mtp_draft_tokens``, ``mtp_acceptance``), parsed once into a frozen :class:`Workload`.

``requests`` makes a workload a finite benchmark of that many requests, measured as benchmark
tools measure it (throughput = tokens / makespan, from the first arrival to the last completion;
no warm-up is cut): alone, every request arrives at t = 0 (an offline batch, as ``trtllm-bench
throughput`` and vLLM's offline benchmark or ``vllm bench serve --request-rate inf`` run it); with
``concurrency``, at most that many are in flight until all have been issued (``--max-concurrency``);
with ``arrival_rate_per_s``, that many Poisson arrivals.

Lengths are a number (every request has that length) or a distribution spec::

    {"dist": "lognormal", "mean": 4383, "cv": 1.0, "min": 1, "max": 131072}
    {"dist": "exponential", "mean": 1211, "min": 1}
    {"dist": "uniform", "low": 100, "high": 2000}
    {"dist": "empirical", "values": [...]}          # drawn with replacement

Randomness always comes from an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.cost import is_finite_number

WORKLOAD_KEYS = frozenset(
    {
        "input_len",
        "output_len",
        "cache_hit_rate",
        "concurrency",
        "arrival_rate_per_s",
        "trace",
        "requests",
        "mtp_draft_tokens",
        "mtp_acceptance",
    }
)
_DIST_KEYS = {
    "fixed": {"value"},
    "lognormal": {"mean", "cv", "min", "max"},
    "exponential": {"mean", "min", "max"},
    "uniform": {"low", "high"},
    "empirical": {"values"},
}


def _positive_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}.")
    return float(value)


@dataclass(frozen=True)
class LengthSpec:
    """A token-length distribution. ``mean`` is its expected value (before the min/max clip)."""

    dist: str
    params: tuple[tuple[str, Any], ...]

    @property
    def mean(self) -> float:
        p = dict(self.params)
        if self.dist == "fixed":
            return float(p["value"])
        if self.dist in ("lognormal", "exponential"):
            return float(p["mean"])
        if self.dist == "uniform":
            return (float(p["low"]) + float(p["high"])) / 2.0
        return float(np.mean(p["values"]))

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` integer lengths >= 1."""
        p = dict(self.params)
        if self.dist == "fixed":
            return np.full(size, int(round(p["value"])), dtype=np.int64)
        if self.dist == "lognormal":
            mean, cv = float(p["mean"]), float(p.get("cv", 1.0))
            sigma2 = math.log1p(cv * cv)
            mu = math.log(mean) - sigma2 / 2.0
            x = rng.lognormal(mu, math.sqrt(sigma2), size)
        elif self.dist == "exponential":
            x = rng.exponential(float(p["mean"]), size)
        elif self.dist == "uniform":
            x = rng.uniform(float(p["low"]), float(p["high"]) + 1.0, size)
        else:
            values = np.asarray(p["values"], dtype=np.int64)
            return rng.choice(values, size=size, replace=True)
        lo = float(p.get("min", 1))
        hi = float(p.get("max", math.inf))
        return np.clip(np.floor(x), max(lo, 1.0), hi).astype(np.int64)


def parse_length(name: str, spec: Any) -> LengthSpec:
    """A number or a distribution dict -> LengthSpec; errors name the key."""
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        value = _positive_number(name, spec)
        if value < 1:
            raise ValueError(f"{name} must be at least 1 token, got {spec!r}.")
        return LengthSpec("fixed", (("value", value),))
    if not isinstance(spec, Mapping):
        raise ValueError(f"{name} must be a number of tokens or a distribution dict, got {spec!r}.")
    dist = spec.get("dist")
    if dist not in _DIST_KEYS:
        raise ValueError(f"{name}: 'dist' must be one of {sorted(_DIST_KEYS)}, got {dist!r}.")
    unknown = set(spec) - _DIST_KEYS[dist] - {"dist"}
    if unknown:
        raise ValueError(
            f"{name}: unknown keys {sorted(unknown)} for dist {dist!r}; allowed: {sorted(_DIST_KEYS[dist])}."
        )
    params: dict[str, Any] = {}
    if dist == "empirical":
        values = spec.get("values")
        if not isinstance(values, Sequence) or len(values) == 0:
            raise ValueError(f"{name}: an empirical distribution needs a non-empty list 'values'.")
        for v in values:
            if _positive_number(f"{name} value", v) < 1:
                raise ValueError(f"{name}: every value must be at least 1 token, got {v!r}.")
        params["values"] = tuple(int(v) for v in values)
    elif dist == "uniform":
        for key in ("low", "high"):
            if key not in spec:
                raise ValueError(f"{name}: a uniform distribution needs 'low' and 'high'.")
            params[key] = _positive_number(f"{name}.{key}", spec[key])
        if params["low"] > params["high"]:
            raise ValueError(f"{name}: uniform needs low <= high, got {params['low']} > {params['high']}.")
    elif dist == "fixed":
        params["value"] = _positive_number(f"{name}.value", spec.get("value"))
    else:
        if "mean" not in spec:
            raise ValueError(f"{name}: a {dist} distribution needs 'mean'.")
        params["mean"] = _positive_number(f"{name}.mean", spec["mean"])
        if "cv" in spec:
            params["cv"] = _positive_number(f"{name}.cv", spec["cv"])
        for key in ("min", "max"):
            if key in spec:
                params[key] = _positive_number(f"{name}.{key}", spec[key])
    return LengthSpec(dist, tuple(sorted(params.items())))


@dataclass(frozen=True)
class TraceRow:
    arrival_time_s: float
    input_len: int
    output_len: int


def read_trace(
    source: str | os.PathLike[str] | Sequence[Mapping[str, Any]] | io.TextIOBase,
) -> tuple[TraceRow, ...]:
    """A trace: CSV with header ``arrival_time_s,input_len,output_len`` (``arrival_time`` is accepted),
    or a list of dicts with those keys. Arrival times must be >= 0 and non-decreasing; lengths >= 1.
    """
    rows: list[Mapping[str, Any]]
    label = "trace"
    if isinstance(source, str | os.PathLike):
        label = str(source)
        if not os.path.exists(source):
            raise ValueError(f"Trace file {label!r} does not exist.")
        with open(source, newline="") as handle:
            rows = list(csv.DictReader(handle))
    elif isinstance(source, io.TextIOBase):
        rows = list(csv.DictReader(source))
    elif isinstance(source, Sequence):
        rows = list(source)  # type: ignore[arg-type]
    else:
        raise ValueError(f"trace must be a CSV path or a list of rows, got {type(source).__name__}.")
    if not rows:
        raise ValueError(f"Trace {label!r} has no rows.")
    out: list[TraceRow] = []
    last = 0.0
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise ValueError(f"Trace {label!r} row {i} is not a record.")
        time_key = "arrival_time_s" if "arrival_time_s" in row else "arrival_time"
        missing = {time_key, "input_len", "output_len"} - set(k for k in row if row[k] not in (None, ""))
        if missing:
            raise ValueError(
                f"Trace {label!r} row {i} lacks {sorted(missing)}; the columns are "
                "arrival_time_s,input_len,output_len."
            )
        try:
            t = float(row[time_key])
            n_in = float(row["input_len"])
            n_out = float(row["output_len"])
        except (TypeError, ValueError):
            raise ValueError(
                f"Trace {label!r} row {i} has a value that is not a number: {dict(row)!r}."
            ) from None
        if not (math.isfinite(t) and t >= 0):
            raise ValueError(f"Trace {label!r} row {i}: arrival time must be a number >= 0, got {t!r}.")
        if t < last:
            raise ValueError(f"Trace {label!r} row {i}: arrival times must not decrease ({t} after {last}).")
        for key, v in (("input_len", n_in), ("output_len", n_out)):
            if not (math.isfinite(v) and v >= 1 and v == int(v)):
                raise ValueError(f"Trace {label!r} row {i}: {key} must be a whole number >= 1, got {v!r}.")
        last = t
        out.append(TraceRow(t, int(n_in), int(n_out)))
    return tuple(out)


@dataclass(frozen=True)
class Workload:
    """A parsed workload. At most one of concurrency, arrival_rate_per_s, trace is set; none only for
    an offline batch (``requests`` set). ``requests`` makes any but a trace finite (module docstring)."""

    input_len: LengthSpec
    output_len: LengthSpec
    cache_hit_rate: float = 0.0
    concurrency: int | None = None
    arrival_rate_per_s: float | None = None
    trace: tuple[TraceRow, ...] | None = field(default=None, repr=False)
    mtp_draft_tokens: int = 0
    mtp_acceptance: float = 0.0
    requests: int | None = None

    @property
    def kind(self) -> str:
        if self.concurrency is not None:
            return "closed"
        if self.arrival_rate_per_s is not None:
            return "open"
        if self.trace is not None:
            return "trace"
        return "offline"

    @property
    def finite(self) -> bool:
        """True when the run is a benchmark of ``requests`` requests measured to their makespan."""
        return self.requests is not None

    @property
    def mean_input_len(self) -> float:
        if self.trace is not None:
            return float(np.mean([r.input_len for r in self.trace]))
        return self.input_len.mean

    @property
    def mean_output_len(self) -> float:
        if self.trace is not None:
            return float(np.mean([r.output_len for r in self.trace]))
        return self.output_len.mean

    @property
    def tokens_per_decode_step(self) -> float:
        """Expected tokens each request gains per decode step with MTP: 1 + a + a^2 + ... + a^d.

        With d draft tokens each accepted with probability a, verification keeps the accepted prefix
        of the drafts plus one token from the main model (V3-TR section 5.4.3 / Leviathan et al. 2023).
        """
        a, d = self.mtp_acceptance, self.mtp_draft_tokens
        return float(sum(a**i for i in range(d + 1)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_len": {"dist": self.input_len.dist, **dict(self.input_len.params)},
            "output_len": {"dist": self.output_len.dist, **dict(self.output_len.params)},
            "cache_hit_rate": self.cache_hit_rate,
            "concurrency": self.concurrency,
            "arrival_rate_per_s": self.arrival_rate_per_s,
            "trace_rows": None if self.trace is None else len(self.trace),
            "requests": self.requests,
            "mtp_draft_tokens": self.mtp_draft_tokens,
            "mtp_acceptance": self.mtp_acceptance,
        }


def parse_workload(
    spec: Mapping[str, Any], default_mtp_draft_tokens: int = 0, default_mtp_acceptance: float = 0.0
) -> Workload:
    """Validate a workload dict (DESIGN.md keys) and return a :class:`Workload`.

    ``default_mtp_*`` apply when the dict does not set them (the API passes the model's own MTP depth).
    """
    if isinstance(spec, Workload):
        return spec
    if not isinstance(spec, Mapping):
        raise ValueError(f"workload must be a dict, got {type(spec).__name__}.")
    unknown = set(spec) - WORKLOAD_KEYS
    if unknown:
        raise ValueError(f"Unknown workload keys {sorted(unknown)}; allowed: {sorted(WORKLOAD_KEYS)}.")
    modes = [k for k in ("concurrency", "arrival_rate_per_s", "trace") if spec.get(k) is not None]
    requests = spec.get("requests")
    if requests is not None:
        if (
            isinstance(requests, bool)
            or not isinstance(requests, int | float)
            or not math.isfinite(requests)
            or requests != int(requests)
            or requests < 1
        ):
            raise ValueError(f"requests must be a whole number >= 1 of requests to run, got {requests!r}.")
        if "trace" in modes:
            raise ValueError("'requests' cannot be combined with 'trace': a trace lists its own requests.")
    if len(modes) > 1 or (not modes and requests is None):
        raise ValueError(
            "A workload needs exactly one of 'concurrency' (closed loop), 'arrival_rate_per_s' "
            "(open loop, Poisson) or 'trace' (CSV), or 'requests' alone (an offline batch arriving at "
            f"t = 0); got {modes or 'none'}."
        )
    trace = None
    concurrency = None
    rate = None
    mode = modes[0] if modes else "offline"
    if mode == "concurrency":
        c = spec["concurrency"]
        if isinstance(c, bool) or not isinstance(c, int | float) or c != int(c) or c < 1:
            raise ValueError(f"concurrency must be a whole number >= 1 of requests in flight, got {c!r}.")
        concurrency = int(c)
    elif mode == "arrival_rate_per_s":
        rate = _positive_number("arrival_rate_per_s", spec["arrival_rate_per_s"])
    elif mode == "trace":
        trace = read_trace(spec["trace"])
    if trace is None:
        for key in ("input_len", "output_len"):
            if key not in spec:
                raise ValueError(f"workload needs '{key}' (a number of tokens or a distribution dict).")
        input_len = parse_length("input_len", spec["input_len"])
        output_len = parse_length("output_len", spec["output_len"])
    else:
        input_len = LengthSpec("empirical", (("values", tuple(r.input_len for r in trace)),))
        output_len = LengthSpec("empirical", (("values", tuple(r.output_len for r in trace)),))
    hit = spec.get("cache_hit_rate", 0.0)
    if isinstance(hit, bool) or not isinstance(hit, int | float) or not (0.0 <= hit < 1.0):
        raise ValueError(
            f"cache_hit_rate is the fraction of input tokens found in the prefix cache, "
            f"in [0, 1); got {hit!r}."
        )
    draft = spec.get("mtp_draft_tokens", default_mtp_draft_tokens)
    if isinstance(draft, bool) or not isinstance(draft, int | float) or draft != int(draft) or draft < 0:
        raise ValueError(f"mtp_draft_tokens must be a whole number >= 0, got {draft!r}.")
    acceptance = spec.get("mtp_acceptance", default_mtp_acceptance if draft else 0.0)
    if isinstance(acceptance, bool) or not isinstance(acceptance, int | float) or not 0 <= acceptance <= 1:
        raise ValueError(f"mtp_acceptance must be a probability in [0, 1], got {acceptance!r}.")
    if int(draft) == 0:
        acceptance = 0.0
    return Workload(
        input_len=input_len,
        output_len=output_len,
        cache_hit_rate=float(hit),
        concurrency=concurrency,
        arrival_rate_per_s=rate,
        trace=trace,
        mtp_draft_tokens=int(draft),
        mtp_acceptance=float(acceptance),
        requests=None if requests is None else int(requests),
    )


@dataclass(frozen=True)
class RequestDraw:
    """Lengths of a block of requests drawn at once (vectorised)."""

    input_len: np.ndarray
    output_len: np.ndarray
    cached_tokens: np.ndarray


def draw_requests(workload: Workload, rng: np.random.Generator, size: int) -> RequestDraw:
    """Draw ``size`` requests' lengths and prefix-cache hits.

    Each request's cached prefix is ``cache_hit_rate`` x its input length, rounded at random so that
    the expected hit fraction over tokens is exactly ``cache_hit_rate``; at least one token is computed.
    """
    n_in = workload.input_len.sample(rng, size)
    n_out = workload.output_len.sample(rng, size)
    exact = workload.cache_hit_rate * n_in
    cached = np.floor(exact + rng.random(size)).astype(np.int64)
    cached = np.minimum(cached, n_in - 1)
    return RequestDraw(n_in, n_out, cached)


@dataclass(frozen=True)
class DailyLoadCurve:
    """Requests per hour over 24 hours (hour 0 = the first hour of the window)."""

    requests_per_hour: tuple[float, ...]
    source: str = ""

    def __post_init__(self) -> None:
        values = self.requests_per_hour
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            raise ValueError(
                f"A daily load curve is a sequence of 24 hourly request counts, got {type(values).__name__}."
            )
        if len(values) != 24:
            raise ValueError(f"A daily load curve has 24 hourly values, got {len(values)}.")
        for h, v in enumerate(values):
            if not is_finite_number(v) or v < 0:
                raise ValueError(f"Hour {h}: requests per hour must be a number >= 0, got {v!r}.")
        object.__setattr__(self, "requests_per_hour", tuple(float(v) for v in values))

    @property
    def arrival_rate_per_s(self) -> tuple[float, ...]:
        return tuple(v / 3600.0 for v in self.requests_per_hour)

    @property
    def requests_per_day(self) -> float:
        return float(sum(self.requests_per_hour))

    def to_dict(self) -> dict[str, Any]:
        return {"requests_per_hour": list(self.requests_per_hour), "source": self.source}


# DeepSeek Day-6 chart "H800 Node Count For Inference Service" (open-infra-index, 24 h from 2025-02-27
# 12:00 UTC+8): peak 278 nodes, a night dip stepping 278 -> 218 -> 188 -> 158 -> 128 -> 98 -> 68, average
# 226.75 nodes (deepseek_figures.md section 3.2). The chart's exact hourly values are not in the reference
# files; these are a reconstruction that keeps every stated fact: the peak, each step of the descent
# (one hour each), the minimum, and the mean (sum 5,442 node-hours = 226.75 x 24), with a faster
# recovery (98, 158, 218, 218) in the morning. Hour 0 is 12:00 UTC+8.
DAY6_NODE_COUNT_BY_HOUR: tuple[int, ...] = (
    278,
    278,
    278,
    278,
    278,
    278,
    278,
    278,
    278,
    278,
    278,
    278,  # 12:00-24:00
    218,
    188,
    158,
    128,
    98,
    68,  # 00:00-06:00 descent
    98,
    158,
    218,
    218,  # 06:00-10:00 recovery
    278,
    278,  # 10:00-12:00
)
DAY6_INPUT_TOKENS_PER_DAY = 608e9  # Day 6, deepseek_figures.md section 3.2
DAY6_OUTPUT_TOKENS_PER_DAY = 168e9
DAY6_MEAN_OUTPUT_LEN = 1211.0  # 168B / 608B x 4383 with 138.7M requests; see day6_load_curve()


def day6_load_curve() -> DailyLoadCurve:
    """Requests per hour for the Day-6 day: shape from the node-count chart, total from 168B output tokens.

    Assumes load follows the node count (DeepSeek scaled the fleet with load) and the mean output
    length of 1,211 tokens, so the day has 168e9 / 1211 = 138.7M requests.
    """
    total_requests = DAY6_OUTPUT_TOKENS_PER_DAY / DAY6_MEAN_OUTPUT_LEN
    nodes = np.asarray(DAY6_NODE_COUNT_BY_HOUR, dtype=float)
    per_hour = total_requests * nodes / nodes.sum()
    return DailyLoadCurve(
        tuple(float(v) for v in per_hour),
        source="shape: DeepSeek Day-6 node-count chart (as read here); total: 168e9 output "
        "tokens / 1,211 per request",
    )
