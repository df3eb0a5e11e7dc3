"""How the README counts the published figures: groups, basis, lower bounds (reports.validation)."""

from __future__ import annotations

import pytest

from reports import validation
from reports.published import PUBLISHED, PublishedFigure, published


def test_every_published_figure_is_in_exactly_one_group() -> None:
    for key in PUBLISHED:
        assert key in validation.group_of(key).keys
    grouped = [k for g in validation.FIGURE_GROUPS for k in g.keys]
    assert sorted(grouped) == sorted(PUBLISHED)  # no group names a figure that does not exist
    assert {g.basis for g in validation.FIGURE_GROUPS} == {validation.INDEPENDENT, validation.CONSISTENCY}
    assert all(g.why for g in validation.FIGURE_GROUPS if g.basis == validation.CONSISTENCY)


def test_checks_against_the_trace_the_calibration_was_fitted_to_are_consistency_checks() -> None:
    for key in ("v3_layer_pair_span_ms", "v3_step_time_s", "v3_mfu_causal", "v3_gpu_hours_per_trillion"):
        assert validation.group_of(key).basis == validation.CONSISTENCY
    # dependent figures share one group: one degree of freedom each
    assert validation.group_of("v3_step_time_s") == validation.group_of("v3_tokens_per_s_per_gpu")
    day6 = validation.group_of("day6_decode_tokens_per_s_per_node")
    assert day6 == validation.group_of("day6_tokens_per_s_per_user")
    assert day6 == validation.group_of("day6_usd_per_million_output")
    assert day6.basis == validation.INDEPENDENT


def test_a_group_is_within_only_when_every_figure_is() -> None:
    group = validation.group_of("day6_decode_tokens_per_s_per_node")
    inside = validation.Check("serving", published("day6_decode_tokens_per_s_per_node"), 14_800 * 1.1)
    outside = validation.Check("serving", published("day6_tokens_per_s_per_user"), 21 * 1.3)
    (verdict,) = validation.group_verdicts([inside, outside])
    assert verdict.group == group and verdict.within is False
    (verdict,) = validation.group_verdicts([inside])
    assert verdict.within is True


def test_a_lower_bound_is_met_only_by_reaching_it() -> None:
    bound = published("v2_generation_tokens_per_s_per_node")  # V2-TR p.16: "over 50K"
    assert bound.lower_bound and bound.tolerance == 0.0
    assert validation.Check("serving", bound, 42_700).within is False
    assert validation.Check("serving", bound, 50_000).within is True
    assert validation.Check("serving", bound, 90_000).within is True
    with pytest.raises(ValueError, match="lower bound"):
        PublishedFigure("x", "x", 1.0, "u", "s", 0.3, lower_bound=True)


def test_layer_pair_figure_is_the_trace_as_shipped() -> None:
    from sim.calibration.published import TRACE_PATH
    from sim.training.trace import trace_per_layer

    span_ms = trace_per_layer(TRACE_PATH)["span_per_layer_s"] * 1e3
    assert published("v3_layer_pair_span_ms").value == pytest.approx(span_ms, abs=0.001)
