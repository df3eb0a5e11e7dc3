"""Batch reports end to end: pages draw their figures offline in Chromium; a broken run is isolated."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from reports.htmlcheck import check_page, figure_states, find_chromium, render_dom
from reports.runner import main


def _write_spec(path: Path, scenarios: str) -> Path:
    path.write_text('title = "test report"\nworkers = 2\ncell_timeout_s = 300\n' + scenarios)
    return path


def test_two_run_report_draws_every_figure_in_offline_chromium(tmp_path):
    find_chromium()  # no Chromium is a failure here, not a skip (CI installs Debian's package)
    spec = _write_spec(
        tmp_path / "two.toml",
        'gpus = ["H800", "H20"]\n[[scenarios]]\nname = "gpus"\nnotebook = "01_gpus"\naxes = ["gpu"]\n'
        'parameters = { compare_gpus = ["H100", "H800", "H20"] }\n',
    )
    out = tmp_path / "out"
    assert main([str(spec), "-o", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs_total"] == 2 and summary["runs_failed"] == 0
    index = (out / "index.html").read_text()
    pages = []
    for run in summary["runs"]:
        assert run["status"] == "ok" and run["html"] in index
        page = out / run["html"]
        text = page.read_text()
        assert "cdn.plot.ly" not in text
        assert 'src="http' not in text and "src='http" not in text
        states = check_page(page)  # raises when a figure did not draw
        assert len(states) >= 2 and all(s.drawn for s in states)
        pages.append(page)
    # The check can fail: the same page without a working plotly.js leaves its figures undrawn.
    broken = tmp_path / "broken.html"
    broken.write_text(pages[0].read_text().replace("window.Plotly = Plotly", "window.NotPlotly = Plotly"))
    states = figure_states(render_dom(broken))
    assert states and not any(s.drawn for s in states)
    with pytest.raises(ValueError, match="did not draw"):
        check_page(broken)


def test_a_broken_scenario_is_listed_with_its_error_and_the_others_complete(tmp_path, capsys):
    spec = _write_spec(
        tmp_path / "broken.toml",
        '[[scenarios]]\nname = "good"\nnotebook = "01_gpus"\naxes = ["gpu"]\ngpus = ["H800"]\n'
        'parameters = { compare_gpus = ["H100", "H800"] }\n'
        # a value of the right kind that fails only when the notebook runs (a typo the spec check
        # catches, such as an unknown GPU or notebook, is exit 2 before any run: test_report_spec)
        '[[scenarios]]\nname = "broken"\nnotebook = "01_gpus"\naxes = ["gpu"]\ngpus = ["H800"]\n'
        'parameters = { dtype = "fp7" }\n',
    )
    out = tmp_path / "out"
    assert main([str(spec), "-o", str(out), "--no-progress"]) == 1
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    runs = {run["run_id"]: run for run in summary["runs"]}
    assert summary["runs_failed"] == 1
    assert runs["good__H800"]["status"] == "ok" and (out / runs["good__H800"]["html"]).is_file()
    assert runs["good__H800"]["summary"]["ridge_flop_per_byte"] > 0
    broken = runs["broken__H800"]
    assert broken["status"] == "failed" and "ValueError" in broken["error"] and "fp7" in broken["error"]
    assert (out / broken["html"]).is_file()  # the failed notebook is still there to read
    assert "failed broken__H800" in printed
    index = (out / "index.html").read_text()
    assert "fp7" in index and "1 failed" in index
    with (out / "summary.csv").open() as handle:
        rows = {row["run_id"]: row for row in csv.DictReader(handle)}
    assert rows["broken__H800"]["status"] == "failed" and rows["good__H800"]["status"] == "ok"
