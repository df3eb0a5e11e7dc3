"""Routing load models: loads, nodes per token, EPLB-style placement."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moe import routing


def test_uniform_loads_are_exact_and_need_no_rng():
    loads = routing.expert_loads(4096, 256, 8)
    assert loads.sum() == 4096 * 8 and loads.max() - loads.min() == 0
    odd = routing.expert_loads(10, 4, 3, skew=routing.uniform)
    assert odd.tolist() == [8, 8, 7, 7]


@settings(deadline=None, max_examples=20)
@given(
    tokens=st.integers(1, 5000),
    experts=st.integers(2, 300),
    top_k=st.integers(1, 8),
    skew=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**31),
)
def test_skewed_loads_are_valid(tokens, experts, top_k, skew, seed):
    top_k = min(top_k, experts)
    loads = routing.expert_loads(tokens, experts, top_k, skew=skew, rng=np.random.default_rng(seed))
    assert loads.sum() == tokens * top_k
    assert loads.min() >= 0 and loads.max() <= tokens


def test_skew_is_seeded_and_skews():
    a = routing.expert_loads(100_000, 256, 8, skew=1.2, rng=np.random.default_rng(7))
    b = routing.expert_loads(100_000, 256, 8, skew=1.2, rng=np.random.default_rng(7))
    assert np.array_equal(a, b)
    assert routing.imbalance(a) > 5 > routing.imbalance(routing.expert_loads(100_000, 256, 8))
    with pytest.raises(ValueError, match="needs rng"):
        routing.expert_loads(100, 16, 2, skew=1.0)
    with pytest.raises(ValueError, match="skew must be a finite number >= 0"):
        routing.zipf(-1)


def test_distinct_nodes():
    # V3: 256 experts on 8 nodes (EP64), top-8. Unlimited, E[nodes] = 8 (1 - C(224,8)/C(256,8)).
    free = routing.expected_distinct_nodes(256, 8, 8)
    assert free == pytest.approx(8 * (1 - np.prod([(224 - i) / (256 - i) for i in range(8)])))
    limited = routing.expected_distinct_nodes(256, 8, 8, max_nodes=4)
    assert limited < 4 < free
    rng = np.random.default_rng(0)
    sample = routing.sample_distinct_nodes(20_000, 256, 8, 8, rng)
    assert sample.mean() == pytest.approx(free, rel=0.02)
    capped = routing.sample_distinct_nodes(5_000, 256, 8, 8, rng, max_nodes=4)
    assert capped.max() <= 4


def test_redundant_placement_balances():
    rng = np.random.default_rng(3)
    loads = routing.expert_loads(65_536, 256, 8, skew=1.0, rng=rng)
    plain = routing.redundant_placement(loads, 0, 32)
    eplb = routing.redundant_placement(loads, 32, 32)
    assert sum(eplb.replicas) == 288 and all(len(r) == 9 for r in eplb.rank_experts)
    assert sum(eplb.rank_loads) == loads.sum() == sum(plain.rank_loads)
    assert eplb.imbalance < plain.imbalance
    assert eplb.imbalance < 1.2
    with pytest.raises(ValueError, match="must divide by ep=7"):
        routing.redundant_placement(loads, 32, 7)


@pytest.mark.parametrize(
    ("loads", "match"),
    [
        (np.array([]), r"loads must be a non-empty 1-D array .*shape \(0,\)"),
        ([-1, 2], r"loads must be .* >= 0; got 1 negative or non-finite value\(s\), e.g. -1.0"),
        ([np.nan, 2], "loads must be .* finite token counts"),
        ([np.inf, 2], "loads must be .* finite token counts"),
        ([[1, 2], [3, 4]], r"loads must be a non-empty 1-D array .*shape \(2, 2\)"),
        (["a", "b"], "loads must be a non-empty 1-D array"),
    ],
)
def test_imbalance_rejects_bad_loads(loads, match):
    with pytest.raises(ValueError, match=match):
        routing.imbalance(loads)


def test_imbalance_valid_loads():
    assert routing.imbalance([1, 3]) == 1.5
    assert routing.imbalance([0, 0]) == 1.0  # no tokens: balanced


@pytest.mark.parametrize("model", [routing.uniform, routing.zipf(1.0)])
@pytest.mark.parametrize("experts", [0, -3, 2.5, True, None])
def test_load_model_probabilities_need_experts(model, experts):
    with pytest.raises(ValueError, match="num_experts must be an integer >= 1"):
        model.probabilities(experts, np.random.default_rng(0))
