"""Every notebook runs top to bottom under papermill with small parameters, and is well formed."""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import nbformat
import papermill
import pytest

from reports import build_notebooks
from reports.runner import PROJECT_KERNEL
from reports.spec import NOTEBOOKS_DIR

NOTEBOOKS = [
    "01_gpus",
    "02_training_cost",
    "03_serving_cost",
    "04_validation",
    "05_nerfed_gpus",
    "06_deepseek_serving",
    "07_gpu_wins",
    "08_plan_search",
]
LIMIT_S = 120.0  # the budget per notebook in the test suite

# Small parameters: few GPUs, short simulated windows, coarse sweeps.
SMALL = {
    "01_gpus": {"gpu": "H20", "compare_gpus": ["H100", "H800", "H20"]},
    "02_training_cost": {"gpu": "H800", "compare_gpus": ["H20"], "reproduce_v3": True},
    "03_serving_cost": {
        "gpu": "H800",
        "compare_gpus": ["H20"],
        "concurrency_per_gpu": [2, 16],
        "cache_hit_rates": [0.0, 0.9],
        "duration_s": 10.0,
    },
    "04_validation": {},
    "05_nerfed_gpus": {
        "compare_gpus": ["H20"],
        "factors": [0.5, 1.0],
        "duration_s": 10.0,
        "interactive": False,
    },
    "06_deepseek_serving": {
        "calibrations": ["H800"],
        "duration_s": 20.0,
        "projection_models": ["deepseek-v4-flash"],
        "projection_gpus": ["H800", "A800"],
        "tokens_per_s_per_user": [20.0, 100.0],
    },
    "08_plan_search": {
        "models": ["deepseek-v4-flash"],
        "gpu_names": ["H800", "A800"],
        "tokens_per_s_per_user": [20.0, 100.0],
        "refine_top": 0,
        "training_space": {"tp": [1, 2], "pp": [8], "virtual_stages": [2], "ep_choices": 1, "moe_tp": [1],
                           "cp": [1], "micro_batch_seqs": [1], "schedules": ["dualpipe", "1f1b"]},
        "long_context_inputs": [131072],
        "long_context_ttft_s": [60.0],
    },
    "07_gpu_wins": {
        "models": ["mixtral-8x7b"],
        "compare_gpus": ["H100", "H20", "A800"],
        "input_lens": [1024, 8192],
        "tokens_per_s_per_user": [20.0, 100.0],
    },
}
# Headline figures each notebook must report to the batch runner.
SUMMARY_KEYS = {
    "01_gpus": {"ridge_flop_per_byte", "bf16_tflops"},
    "02_training_cost": {"model", "gpu"},
    "03_serving_cost": {"model", "gpu"},
    "04_validation": {"checks", "within_tolerance"},
    "05_nerfed_gpus": {"model"},
    "06_deepseek_serving": {"model", "fleet_daily_cost_usd_H800", "prefill_implied_utilisation_H800"},
    "07_gpu_wins": {"configurations", "cells", "most_wins", "wins_H100"},
    "08_plan_search": {
        "models",
        "serving_configurations",
        "day6_plan_usd_m_output",
        "day6_deepseek_usd_m_output",
    },
}


def test_project_kernel_is_installed_and_imports_the_packages_without_path_tricks(tmp_path):
    import subprocess

    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(PROJECT_KERNEL)
    python = spec.argv[0]
    code = "import gpus, moe, sim, reports; print(gpus.get('H800').name, moe.get('deepseek-v3').name)"
    done = subprocess.run([python, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["H800", "deepseek-v3"]


def test_committed_notebooks_match_their_generator():
    assert build_notebooks.main(["--check"]) == 0, "run: python -m reports.build_notebooks"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_well_formed(name):
    notebook = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "moe-fleetcost"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "the first code cell must be the parameters cell"
    names = set()
    for statement in ast.parse(code[0].source).body:  # plain literals only, as papermill expects
        assert isinstance(statement, ast.Assign), ast.dump(statement)
        ast.literal_eval(statement.value)
        names |= {target.id for target in statement.targets if isinstance(target, ast.Name)}
    assert set(SMALL[name]) | {"summary_path"} <= names, "test parameters must exist in the parameters cell"
    inspected = papermill.inspect_notebook(str(NOTEBOOKS_DIR / f"{name}.ipynb"))
    assert set(inspected) == names, f"papermill cannot parse the parameters {names - set(inspected)}"
    assert all(not cell.outputs and cell.execution_count is None for cell in code), "commit without outputs"
    text = "\n".join(cell.source for cell in code)
    assert 'pio.renderers.default = "notebook"' in text
    assert "sys.path" not in text, "notebooks import the installed packages, no path tricks"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_under_papermill(name, tmp_path: Path):
    summary_path = tmp_path / "summary.json"
    output = tmp_path / f"{name}.ipynb"
    started = time.perf_counter()
    papermill.execute_notebook(
        str(NOTEBOOKS_DIR / f"{name}.ipynb"),
        str(output),
        parameters={**SMALL[name], "summary_path": str(summary_path)},
        kernel_name=PROJECT_KERNEL,  # the kernel `make lab` offers (installed by make install)
        cwd=str(NOTEBOOKS_DIR),
        progress_bar=False,
        execution_timeout=int(LIMIT_S),  # a stalled cell fails the test instead of hanging CI
    )
    elapsed = time.perf_counter() - started
    assert elapsed <= LIMIT_S, f"{name} took {elapsed:.0f} s under papermill (limit {LIMIT_S:.0f} s)"
    summary = json.loads(summary_path.read_text())
    assert SUMMARY_KEYS[name] <= set(summary), summary
    executed = nbformat.read(output, as_version=4)
    html_outputs = [
        out.get("data", {}).get("text/html", "")
        for cell in executed.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    ]
    figures = sum(text.count('class="plotly-graph-div"') for text in html_outputs)
    assert figures >= 1, f"{name} drew no plotly figure"
    errors = [out for cell in executed.cells for out in cell.get("outputs", []) if out.output_type == "error"]
    assert not errors


def test_nerfed_gpus_notebook_offers_widgets_when_interactive(tmp_path: Path):
    output = tmp_path / "interactive.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS_DIR / "05_nerfed_gpus.ipynb"),
        str(output),
        parameters={"interactive": True, "measures": ["training"], "factors": [1.0], "compare_gpus": ["H20"]},
        kernel_name=PROJECT_KERNEL,
        cwd=str(NOTEBOOKS_DIR),
        progress_bar=False,
        execution_timeout=int(LIMIT_S),  # a stalled cell fails the test instead of hanging CI
    )
    executed = nbformat.read(output, as_version=4)
    bundles = [out.get("data", {}) for cell in executed.cells for out in cell.get("outputs", [])]
    assert any("application/vnd.jupyter.widget-view+json" in data for data in bundles), "no widget shown"
