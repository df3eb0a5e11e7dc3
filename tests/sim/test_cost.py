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
    rental_cost_usd,
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


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"purchase_usd_per_gpu": 30000.0, "pue": math.inf}, "pue .* finite number >= 1.0, got inf"),
        ({"purchase_usd_per_gpu": 30000.0, "pue": math.nan}, "pue .* finite number >= 1.0, got nan"),
        ({"purchase_usd_per_gpu": 30000.0, "pue": True}, "pue .* finite number >= 1.0, got True"),
        (
            {"purchase_usd_per_gpu": True},
            "TCO field purchase_usd_per_gpu must be a finite number >= 0, got True",
        ),
        ({"purchase_usd_per_gpu": math.inf}, "TCO field purchase_usd_per_gpu must be a finite number"),
        ({"purchase_usd_per_gpu": -1.0}, "TCO field purchase_usd_per_gpu must be a finite number >= 0"),
        ({"purchase_usd_per_gpu": 1.0, "usd_per_kwh": math.nan}, "TCO field usd_per_kwh"),
        ({"purchase_usd_per_gpu": 1.0, "power_w_per_gpu": "700"}, "TCO field power_w_per_gpu"),
        ({"purchase_usd_per_gpu": 1.0, "amortisation_years": 0.0}, "amortisation_years must be > 0"),
    ],
)
def test_bad_tco_spec(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TCOSpec(**kwargs)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (
            {"purchase_usd_per_gpu": "abc"},
            "TCO field purchase_usd_per_gpu must be a finite number, got 'abc'",
        ),
        ({"purchase_usd_per_gpu": None}, "TCO field purchase_usd_per_gpu must be a finite number, got None"),
        ({"purchase_usd_per_gpu": True}, "TCO field purchase_usd_per_gpu must be a finite number, got True"),
        ({"purchase_usd_per_gpu": 1.0, "pue": [1.2]}, r"TCO field pue must be a finite number, got \[1.2\]"),
        ({"purchase_usd_per_gpu": "nan"}, "TCO field purchase_usd_per_gpu must be a finite number >= 0"),
        ("30000", "A TCO must be a mapping"),
    ],
)
def test_bad_tco_mapping(spec, match):
    with pytest.raises(ValueError, match=match):
        tco_from_mapping(spec)


def test_tco_mapping_takes_numeric_strings():
    assert tco_from_mapping({"purchase_usd_per_gpu": "35064"}) == TCOSpec(35064.0)


@pytest.mark.parametrize("tco", ["30000", 30000.0, ["purchase_usd_per_gpu"]])
def test_price_range_tco_must_be_a_mapping_or_spec(tco):
    with pytest.raises(ValueError, match="tco must be a TCOSpec or a mapping"):
        price_range(None, tco=tco)


@pytest.mark.parametrize("price", [True, math.nan, math.inf, 0.0, "2"])
def test_bad_usd_per_gpu_hour(price):
    with pytest.raises(ValueError, match="usd_per_gpu_hour must be a positive number"):
        price_range(None, usd_per_gpu_hour=price)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((math.nan, 2.0), "gpu_hours must be a finite number >= 0"),
        ((-1.0, 2.0), "gpu_hours must be a finite number >= 0"),
        ((math.inf, 2.0), "gpu_hours must be a finite number >= 0"),
        (("10", 2.0), "gpu_hours must be a finite number >= 0"),
        ((10.0, -2.0), "usd_per_gpu_hour must be a finite number >= 0"),
        ((10.0, math.nan), "usd_per_gpu_hour must be a finite number >= 0"),
        ((10.0, True), "usd_per_gpu_hour must be a finite number >= 0"),
    ],
)
def test_bad_rental_cost(args, match):
    with pytest.raises(ValueError, match=match):
        rental_cost_usd(*args)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((-8, 2.0, 100.0), "num_gpus must be a finite number >= 0"),
        ((math.nan, 2.0, 100.0), "num_gpus must be a finite number >= 0"),
        ((8, -2.0, 100.0), "usd_per_gpu_hour must be a finite number >= 0"),
        ((8, math.inf, 100.0), "usd_per_gpu_hour must be a finite number >= 0"),
        ((8, 2.0, math.nan), "tokens_per_s must be a finite number >= 0"),
        ((8, 2.0, -1.0), "tokens_per_s must be a finite number >= 0"),
        ((8, 2.0, math.inf), "tokens_per_s must be a finite number >= 0"),
        ((8, 2.0, None), "tokens_per_s must be a finite number >= 0"),
    ],
)
def test_bad_usd_per_million_tokens(args, match):
    with pytest.raises(ValueError, match=match):
        usd_per_million_tokens(*args)


def test_zero_cases_keep_their_meaning():
    assert math.isinf(usd_per_million_tokens(8, 2.0, 0))  # no tokens produced
    assert usd_per_million_tokens(0.0, 2.0, 100.0) == 0.0  # no GPU share
    assert rental_cost_usd(0.0, 2.0) == 0.0
