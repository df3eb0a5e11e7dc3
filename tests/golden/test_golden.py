"""The golden figures (tests/golden/figures.json) recomputed: every simulated figure of the reference
tests, the README validation table and the benchmarks within 1e-9 relative of the saved value.

A refactor that means to change no figure must pass this unchanged; one that changes a figure on
purpose regenerates the file (``python -m tests.golden.golden --write``) and names each change.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# tests/ is not a package: load the module beside this file by its path
_spec = importlib.util.spec_from_file_location("tests_golden_golden", Path(__file__).with_name("golden.py"))
assert _spec is not None and _spec.loader is not None
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)

SAVED = golden.load()

# The whole set takes about two minutes on one core (measured 2026-12-03 beside a CI run); these
# three groups are nearly all of it (the training group reuses the README table's cached costs).
SLOW = {"readme_table", "serving_reference", "end_to_end_sample"}


def test_file_says_when_from_what_and_how_to_regenerate():
    assert set(SAVED) == {"date", "commit", "regenerate", "rel_tol", "groups"}
    assert SAVED["rel_tol"] == golden.REL_TOL
    assert len(SAVED["commit"]) == 40 and "--write" in SAVED["regenerate"]
    assert set(SAVED["groups"]) == set(golden.GROUPS)
    # every README check has a simulated value (a failing check would be saved as None)
    assert all(value is not None for value in SAVED["groups"]["readme_table"].values())


@pytest.mark.parametrize(
    "group", [pytest.param(g, marks=pytest.mark.slow) if g in SLOW else g for g in golden.GROUPS]
)
def test_figures_unchanged(group):
    moved = golden.differences(SAVED["groups"][group], golden.GROUPS[group]())
    assert not moved, f"{len(moved)} golden figure(s) of {group} moved:\n" + "\n".join(moved[:40])


def test_differences_reports_a_moved_missing_new_or_retyped_figure():
    saved = {"a": 1.0, "b": 2, "c": "x", "d": float("nan"), "e": 5.0}
    assert golden.differences(saved, dict(saved)) == []
    assert golden.differences(saved, {**saved, "a": 1.0 + 1e-12}) == []  # within 1e-9 relative
    moved = golden.differences({**saved}, {**saved, "a": 1.0 + 1e-8, "b": 2.0, "c": "y", "z": 0})
    assert [line.split(":")[0] for line in moved] == ["z", "a", "b", "c"]
    assert golden.differences(saved, {k: v for k, v in saved.items() if k != "e"}) == ["e: missing (was 5.0)"]
    assert golden.differences({"n": 0.0}, {"n": 1e-300})  # no absolute tolerance hides a figure at zero


def test_flatten_keeps_numbers_by_path_and_drops_timings_and_text():
    flat = golden.flatten({"x": {"y": [1, 2.5]}, "wall_time_s": 3.0, "notes": ["n"], "bound_by": "ib"})
    assert flat == {"x.y.0": 1, "x.y.1": 2.5, "bound_by": "ib"}
