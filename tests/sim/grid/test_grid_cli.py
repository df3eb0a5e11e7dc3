"""moe-sim sweep and moe-sim query: summaries, a progress bar on stderr, exit codes 0, 1 and 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sim.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, main
from sim.grid import runner

SPEC = """
title = "cli test"
kind = "serving"
chunk_size = 4
retries = 0

[grid]
model = ["mixtral-8x7b"]
gpu = ["H100", "H20"]
deployment = [{ nodes = 1 }]
input_len = [1024, 4096]
output_len = [256]
tpot_target_s = [0.02, 0.05]
"""


@pytest.fixture()
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(SPEC)
    return path


def test_sweep_prints_a_summary_and_a_progress_bar_then_query_reads_the_rows(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    assert main(["sweep", str(spec_file), "--out", str(out), "-j", "1"]) == EXIT_OK
    captured = capsys.readouterr()
    assert "configurations" in captured.out and "chunks written now" in captured.out
    assert "8/8" in captured.err  # tqdm's bar, on stderr
    assert main(["sweep", str(spec_file), "--out", str(out), "--json", "--no-progress"]) == EXIT_OK
    again = json.loads(capsys.readouterr().out)
    assert again["chunks_skipped"] == 2 and again["configurations_evaluated"] == 0 and again["ok"]
    sql = "SELECT gpu, count(*) AS n FROM results GROUP BY gpu ORDER BY gpu"
    assert main(["query", str(out), sql, "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == [{"gpu": "H100", "n": 4}, {"gpu": "H20", "n": 4}]
    assert main(["query", str(out), sql]) == EXIT_OK
    table = capsys.readouterr().out
    assert "H100" in table and "(2 rows)" in table
    assert main(["query", str(out), sql, "--csv"]) == EXIT_OK
    assert capsys.readouterr().out.splitlines() == ["gpu,n", "H100,4", "H20,4"]


def test_bad_input_is_exit_2_with_a_message(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SPEC.replace('gpu = ["H100", "H20"]', 'gpu = ["H100", "H30"]'))
    assert main(["sweep", str(bad), "--out", str(tmp_path / "r")]) == EXIT_BAD_INPUT
    assert "grid.gpu" in capsys.readouterr().err
    assert main(["query", str(tmp_path / "nothing"), "SELECT 1"]) == EXIT_BAD_INPUT
    assert "not a folder of sweep results" in capsys.readouterr().err
    out = tmp_path / "results"
    assert main(["sweep", str(spec_file), "--out", str(out), "-j", "1", "--no-progress"]) == EXIT_OK
    capsys.readouterr()
    assert main(["query", str(out), "SELECT nonsense FROM results"]) == EXIT_BAD_INPUT
    assert "DuckDB refused the query" in capsys.readouterr().err


def test_a_chunk_that_keeps_failing_is_exit_1_and_named(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = runner.evaluate_range

    def failing(spec: Any, start: int, end: int) -> list[dict[str, Any]]:
        if start == 4:
            raise RuntimeError("worker out of memory")
        return real(spec, start, end)

    monkeypatch.setattr(runner, "evaluate_range", failing)
    code = main(["sweep", str(spec_file), "--out", str(tmp_path / "r"), "-j", "1", "--no-progress"])
    assert code == EXIT_FAILED
    assert "chunk 1 failed: RuntimeError: worker out of memory" in capsys.readouterr().out
