"""gpus.units: the one place human units become SI."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpus import units


def test_named_helpers():
    # H100/H800 dense BF16, NVIDIA H100 datasheet (sparse 1979 halved): 989.5 TFLOPS.
    assert units.tflops(989.5) == pytest.approx(9.895e14, rel=1e-15)
    assert units.tb_per_s(3.35) == pytest.approx(3.35e12, rel=1e-15)
    assert units.gb_per_s(200) == 200e9
    assert units.gb(80) == 80e9
    assert units.gib(1) == 2**30
    assert units.mib(81559) == 81559 * 2**20
    assert units.mb(50) == 50e6
    # ConnectX-7 NDR: 400 Gbit/s = 50 GB/s (DeepEP docs/legacy.md: '~50 GB/s maximum bandwidth').
    assert units.gbit_per_s(400) == 50e9
    assert units.mhz(1830) == 1.83e9


def test_to_si_and_from_si():
    assert units.to_si(228, "KiB") == 228 * 1024
    assert units.from_si(9.895e14, "TFLOPS") == pytest.approx(989.5)
    assert units.from_si(50e9, "Gbit/s") == pytest.approx(400)


@pytest.mark.parametrize("bad_unit", ["TFlops", "GBps", "", "furlongs", None])
def test_unknown_unit_names_known_units(bad_unit):
    with pytest.raises(ValueError, match="unknown unit .*known units: FLOP/s"):
        units.to_si(1.0, bad_unit)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), "3", True, None])
def test_bad_values_are_refused(bad_value):
    with pytest.raises(ValueError, match="value must be"):
        units.to_si(bad_value, "GB")  # type: ignore[arg-type]


def test_units_of_dimension():
    assert "Gbit/s" in units.units_of("bytes_per_s")
    assert units.dimension_of("TOPS") == "flop_per_s"
    with pytest.raises(ValueError, match="unknown dimension"):
        units.units_of("volts")


@settings(deadline=None, max_examples=60)
@given(value=st.floats(min_value=-1e30, max_value=1e30, allow_nan=False),
       unit=st.sampled_from(sorted(units.UNITS)))
def test_conversion_round_trips(value, unit):
    back = units.from_si(units.to_si(value, unit), unit)
    assert math.isclose(back, value, rel_tol=1e-12, abs_tol=1e-300)


@settings(deadline=None, max_examples=30)
@given(value=st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_prefixes_are_consistent(value):
    # 1 TB/s = 1000 GB/s; 1 GiB = 1024 MiB; 8 Gbit/s = 1 GB/s.
    assert math.isclose(units.to_si(value, "TB/s"), units.to_si(value * 1000, "GB/s"), rel_tol=1e-12)
    assert math.isclose(units.to_si(value, "GiB"), units.to_si(value * 1024, "MiB"), rel_tol=1e-12)
    assert math.isclose(units.to_si(value * 8, "Gbit/s"), units.to_si(value, "GB/s"), rel_tol=1e-12)
