"""Cost helpers: rental, ranges, TCO, USD per million tokens."""

from __future__ import annotations

import math

import pytest

import gpus
from sim.cost import (
    PriceRange,
    TCOSpec,
    cost_range_usd,
    price_range,
    tco_from_mapping,
    usd_per_million_tokens,
)


def test_day6_arithmetic():
    # DeepSeek Day 6: 226.75 nodes x 8 GPUs x 24 h x $2 = $87,072
    r = cost_range_usd(226.75 * 8 * 24, PriceRange(2.0, 2.0, 2.0))
    assert r["usd"] == pytest.approx(87072.0)
    # $16 per node-hour over 14.8k output tokens/s per node -> $0.300 per million
    assert usd_per_million_tokens(8, 2.0, 14800) == pytest.approx(0.3003, rel=1e-3)


def test_price_range_from_profile_and_override():
    g = gpus.get("H800")
    p = price_range(g.price)
    assert p.usd_per_gpu_hour_low <= p.usd_per_gpu_hour <= p.usd_per_gpu_hour_high
    q = price_range(g.price, usd_per_gpu_hour=10.0)
    assert q.usd_per_gpu_hour == 10.0 and q.usd_per_gpu_hour_high == 10.0


def test_tco():
    t = TCOSpec(
        purchase_usd_per_gpu=35064.0,
        amortisation_years=4.0,
        power_w_per_gpu=1000.0,
        pue=1.25,
        usd_per_kwh=0.1,
    )
    assert t.capital_usd_per_gpu_hour == pytest.approx(1.0)
    assert t.energy_usd_per_gpu_hour == pytest.approx(0.125)
    p = price_range(
        None,
        tco={"purchase_usd_per_gpu": 35064.0, "power_w_per_gpu": 1000.0, "pue": 1.25, "usd_per_kwh": 0.1},
    )
    assert p.usd_per_gpu_hour == pytest.approx(1.125)


def test_bad_cost_inputs():
    with pytest.raises(ValueError, match="pue"):
        TCOSpec(purchase_usd_per_gpu=1.0, pue=0.5)
    with pytest.raises(ValueError, match="Unknown TCO keys"):
        tco_from_mapping({"purchase_usd_per_gpu": 1.0, "rent": 2})
    with pytest.raises(ValueError, match="usd_per_gpu_hour"):
        price_range(None, usd_per_gpu_hour=-1.0)
    assert math.isinf(usd_per_million_tokens(8, 2.0, 0.0))
