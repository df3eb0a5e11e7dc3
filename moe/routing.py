"""Routing load models: tokens per expert, nodes per token, EPLB-style redundant experts.

Randomness always comes from an explicit ``numpy.random.Generator``; uniform loads need none.

* :func:`expert_loads` - tokens per routed expert for a batch (uniform, or skewed by a load model
  such as :func:`zipf`).
* :func:`expected_distinct_nodes` / :func:`sample_distinct_nodes` - how many nodes a token's experts
  span, with and without DeepSeek-V3's node-limited routing (each token reaches at most M nodes,
  V3-TR Sec. 2.1.2 and p.13: M = 4 of 8).
* :func:`redundant_placement` - DeepSeek EPLB's idea (github deepseek-ai/EPLB): replicate the
  heaviest experts, then pack replicas onto EP ranks so that per-rank load is balanced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = [
    "LoadModel",
    "Placement",
    "Uniform",
    "Zipf",
    "expected_distinct_nodes",
    "expert_loads",
    "imbalance",
    "redundant_placement",
    "sample_distinct_nodes",
    "uniform",
    "zipf",
]


class LoadModel(Protocol):
    """A policy giving each expert's share of routed tokens."""

    @property
    def name(self) -> str: ...

    def probabilities(self, num_experts: int, rng: np.random.Generator | None) -> np.ndarray: ...


@dataclass(frozen=True)
class Uniform:
    """Every expert equally likely (what auxiliary-loss-free balancing aims for)."""

    name: str = "uniform"

    def probabilities(self, num_experts: int, rng: np.random.Generator | None) -> np.ndarray:
        experts = _check_int(num_experts, "num_experts")
        return np.full(experts, 1.0 / experts)


@dataclass(frozen=True)
class Zipf:
    """Expert popularity falling as 1 / rank**skew; which expert gets which rank is drawn from ``rng``.

    skew = 0 is uniform; skew around 1 gives a few hot experts.
    """

    skew: float
    name: str = "zipf"

    def probabilities(self, num_experts: int, rng: np.random.Generator | None) -> np.ndarray:
        experts = _check_int(num_experts, "num_experts")
        weights = 1.0 / np.arange(1, experts + 1, dtype=float) ** self.skew
        if self.skew > 0:
            if rng is None:
                raise ValueError(
                    "a skewed load needs rng, a numpy.random.Generator (e.g. np.random.default_rng(0))."
                )
            weights = weights[rng.permutation(experts)]
        return weights / weights.sum()


uniform = Uniform()


def zipf(skew: float) -> Zipf:
    """A Zipf-like load model with exponent ``skew`` >= 0."""
    if isinstance(skew, bool) or not isinstance(skew, int | float) or not math.isfinite(skew) or skew < 0:
        raise ValueError(f"skew must be a finite number >= 0; got {skew!r}.")
    return Zipf(float(skew))


def _as_model(skew: float | LoadModel) -> LoadModel:
    """A load model from a Zipf exponent or a LoadModel object."""
    if isinstance(skew, int | float) and not isinstance(skew, bool):
        return zipf(skew)
    if hasattr(skew, "probabilities"):
        return skew  # type: ignore[return-value]
    raise ValueError(
        f"skew must be a Zipf exponent >= 0 or a load model (routing.uniform, routing.zipf(s)); got {skew!r}."
    )


def _check_int(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def _cap_probabilities(p: np.ndarray, cap: float) -> np.ndarray:
    """Water-fill ``p`` so that no entry exceeds ``cap`` (a token picks an expert at most once)."""
    p = p.copy()
    for _ in range(len(p)):
        over = p > cap
        if not over.any():
            break
        excess = float((p[over] - cap).sum())
        p[over] = cap
        under = ~over & (p < cap)
        if not under.any():
            break
        p[under] += excess * p[under] / p[under].sum()
    return p / p.sum()


def expert_loads(
    num_tokens: int,
    num_experts: int,
    top_k: int,
    skew: float | LoadModel = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Tokens routed to each of ``num_experts`` experts when ``num_tokens`` tokens pick ``top_k`` each.

    ``skew`` is a Zipf exponent (0: exactly uniform, no randomness) or a :class:`LoadModel`. The loads
    sum to ``num_tokens * top_k`` and none exceeds ``num_tokens``. Returns an int64 array.
    """
    tokens = _check_int(num_tokens, "num_tokens", 0)
    experts = _check_int(num_experts, "num_experts")
    k = _check_int(top_k, "top_k")
    if k > experts:
        raise ValueError(f"top_k ({k}) must not exceed num_experts ({experts}).")
    model = _as_model(skew)
    total = tokens * k
    if isinstance(model, Uniform) or (isinstance(model, Zipf) and model.skew == 0):
        base, extra = divmod(total, experts)
        loads = np.full(experts, base, dtype=np.int64)
        loads[:extra] += 1
        return loads
    if rng is None or not isinstance(rng, np.random.Generator):
        raise ValueError("a skewed load needs rng, a numpy.random.Generator (e.g. np.random.default_rng(0)).")
    p = _cap_probabilities(np.asarray(model.probabilities(experts, rng), dtype=float), 1.0 / k)
    loads = rng.multinomial(total, p).astype(np.int64)
    # A token reaches an expert at most once: move any overflow to the least-loaded experts.
    overflow = int(np.clip(loads - tokens, 0, None).sum())
    if overflow:
        loads = np.minimum(loads, tokens)
        while overflow:
            room = tokens - loads
            order = np.argsort(loads, kind="stable")
            for idx in order:
                if overflow == 0:
                    break
                give = min(int(room[idx]), overflow)
                loads[idx] += give
                overflow -= give
    return loads


def imbalance(loads: np.ndarray) -> float:
    """Max over mean of a load vector (1.0 = perfectly balanced; also for all-zero loads).

    ``loads``: a non-empty 1-D array of finite token counts >= 0.
    """
    try:
        arr = np.asarray(loads, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(
            f"loads must be a non-empty 1-D array of finite token counts >= 0; got {loads!r}."
        ) from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"loads must be a non-empty 1-D array of finite token counts >= 0; got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        bad = arr[~np.isfinite(arr) | (arr < 0)]
        raise ValueError(
            "loads must be a non-empty 1-D array of finite token counts >= 0; got "
            f"{bad.size} negative or non-finite value(s), e.g. {float(bad[0])!r}."
        )
    mean = arr.mean()
    return float(arr.max() / mean) if mean > 0 else 1.0


# ---------------------------------------------------------------------------------------------
# Nodes per token
# ---------------------------------------------------------------------------------------------


def _log_comb(n: int, k: int) -> float:
    if k < 0 or k > n:
        return -math.inf
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def expected_distinct_nodes(
    num_experts: int, top_k: int, num_nodes: int, max_nodes: int | None = None
) -> float:
    """Expected number of distinct nodes a token's ``top_k`` experts sit on.

    Experts are spread evenly, ``num_experts / num_nodes`` per node. Without a limit the token picks
    ``top_k`` distinct experts uniformly; with ``max_nodes`` = M (node-limited routing) it first keeps
    M nodes, then picks its experts among theirs. Each node is hit unless all picks avoid it:
    E[nodes] = M (1 - C(E_M - E/N, k) / C(E_M, k)), E_M the experts on the kept nodes.
    """
    experts = _check_int(num_experts, "num_experts")
    k = _check_int(top_k, "top_k")
    nodes = _check_int(num_nodes, "num_nodes")
    if experts % nodes:
        raise ValueError(f"num_experts ({experts}) must divide by num_nodes ({nodes}).")
    kept = nodes if max_nodes is None else min(nodes, _check_int(max_nodes, "max_nodes"))
    per_node = experts // nodes
    pool = kept * per_node
    if k > pool:
        raise ValueError(f"top_k ({k}) exceeds the {pool} experts on the {kept} reachable nodes.")
    miss = math.exp(_log_comb(pool - per_node, k) - _log_comb(pool, k)) if pool - per_node >= k else 0.0
    return kept * (1.0 - miss)


def sample_distinct_nodes(
    num_tokens: int,
    num_experts: int,
    top_k: int,
    num_nodes: int,
    rng: np.random.Generator,
    max_nodes: int | None = None,
    skew: float | LoadModel = 0.0,
) -> np.ndarray:
    """Distinct nodes per token for ``num_tokens`` sampled tokens (int array), by Monte Carlo.

    Each token draws expert scores (Gumbel noise on log-popularity, so a skewed load model shows up);
    with ``max_nodes`` it keeps the nodes with the best top-(k/M) score sums, as V3's node-limited
    router does (V3-TR Sec. 2.1.2: groups ranked by the sum of their highest affinities), then takes
    its top_k experts among them.
    """
    tokens = _check_int(num_tokens, "num_tokens")
    experts = _check_int(num_experts, "num_experts")
    k = _check_int(top_k, "top_k")
    nodes = _check_int(num_nodes, "num_nodes")
    if experts % nodes:
        raise ValueError(f"num_experts ({experts}) must divide by num_nodes ({nodes}).")
    if not isinstance(rng, np.random.Generator):
        raise ValueError("rng must be a numpy.random.Generator (e.g. np.random.default_rng(0)).")
    model = _as_model(skew)
    log_p = np.log(np.asarray(model.probabilities(experts, rng), dtype=float))
    per_node = experts // nodes
    scores = log_p[None, :] + rng.gumbel(size=(tokens, experts))
    if max_nodes is not None and max_nodes < nodes:
        m = _check_int(max_nodes, "max_nodes")
        grouped = scores.reshape(tokens, nodes, per_node)
        per_group = max(1, k // m)
        top = -np.sort(-grouped, axis=2)[:, :, :per_group].sum(axis=2)
        keep = np.argsort(-top, axis=1)[:, :m]
        mask = np.full((tokens, nodes), -np.inf)
        np.put_along_axis(mask, keep, 0.0, axis=1)
        scores = (grouped + mask[:, :, None]).reshape(tokens, experts)
    chosen = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    node_of = chosen // per_node
    node_sorted = np.sort(node_of, axis=1)
    return 1 + (np.diff(node_sorted, axis=1) != 0).sum(axis=1)


# ---------------------------------------------------------------------------------------------
# EPLB-style redundant experts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where each expert replica lives and what each EP rank carries.

    ``replicas[e]``: copies of expert e; ``rank_experts[r]``: expert ids hosted on rank r (a replicated
    expert appears on several ranks); ``rank_group_sizes[r]``: tokens per hosted replica on rank r
    (an expert's load is split evenly over its replicas); ``rank_loads[r]``: their sum.
    """

    replicas: tuple[int, ...]
    rank_experts: tuple[tuple[int, ...], ...]
    rank_group_sizes: tuple[tuple[int, ...], ...]
    rank_loads: tuple[int, ...]

    @property
    def imbalance(self) -> float:
        """Max over mean rank load (1.0 = balanced)."""
        return imbalance(np.asarray(self.rank_loads))

    def to_dict(self) -> dict[str, Any]:
        return {
            "replicas": list(self.replicas),
            "rank_experts": [list(r) for r in self.rank_experts],
            "rank_group_sizes": [list(r) for r in self.rank_group_sizes],
            "rank_loads": list(self.rank_loads),
            "imbalance": self.imbalance,
        }


def redundant_placement(loads: Any, num_redundant: int, ep: int) -> Placement:
    """Replicate the heaviest experts ``num_redundant`` times and pack replicas onto ``ep`` ranks.

    Replication: repeatedly give one more copy to the expert with the highest load per copy.
    Packing: replicas sorted by load, each to the least-loaded rank that still has a free slot,
    every rank hosting (num_experts + num_redundant) / ep replicas, as DeepSeek's decode and prefill
    deployments do (Day-6 note: 32 redundant experts; V3-TR p.19).
    """
    arr = np.asarray(loads)
    if arr.ndim != 1 or arr.size == 0 or np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise ValueError("loads must be a non-empty 1-D array of non-negative token counts.")
    experts = arr.size
    redundant = _check_int(num_redundant, "num_redundant", 0)
    ep = _check_int(ep, "ep")
    slots_total = experts + redundant
    if slots_total % ep:
        raise ValueError(
            f"(experts + redundant) = {experts} + {redundant} = {slots_total} must divide by ep={ep} so that "
            "every rank hosts the same number of replicas."
        )
    slots = slots_total // ep
    replicas = np.ones(experts, dtype=np.int64)
    for _ in range(redundant):
        replicas[int(np.argmax(arr / replicas))] += 1
    items: list[tuple[float, int, int]] = []  # (load per replica, expert, replica share in tokens)
    for e in range(experts):
        base, extra = divmod(int(arr[e]), int(replicas[e]))
        for r in range(int(replicas[e])):
            share = base + (1 if r < extra else 0)
            items.append((float(share), e, share))
    items.sort(key=lambda t: (-t[0], t[1]))
    rank_load = np.zeros(ep, dtype=np.int64)
    rank_items: list[list[tuple[int, int]]] = [[] for _ in range(ep)]
    for _share_f, e, share in items:
        candidates = [
            r for r in range(ep) if len(rank_items[r]) < slots and all(x[0] != e for x in rank_items[r])
        ]
        if not candidates:
            candidates = [r for r in range(ep) if len(rank_items[r]) < slots]
        r = min(candidates, key=lambda i: (rank_load[i], i))
        rank_items[r].append((e, share))
        rank_load[r] += share
    return Placement(
        replicas=tuple(int(x) for x in replicas),
        rank_experts=tuple(tuple(e for e, _ in items_r) for items_r in rank_items),
        rank_group_sizes=tuple(tuple(s for _, s in items_r) for items_r in rank_items),
        rank_loads=tuple(int(x) for x in rank_load),
    )
