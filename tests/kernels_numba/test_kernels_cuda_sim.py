"""Numba-CUDA kernels on the CUDA simulator, each check in its own subprocess.

The subprocess (``python -m kernels_numba.simcheck``) sets NUMBA_ENABLE_CUDASIM=1 before numba
loads and exits non-zero if the simulator is not active; sizes and head dims are reduced.
Issue 3's target, each check within 10 s, is measured by ``benchmarks/bench_simcheck.py`` (median
of repeated runs); here the timeout only stops a hung simulator, generous enough that a loaded
machine does not fail a correct kernel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernels_numba import checks

ROOT = Path(__file__).resolve().parents[2]
NAMES = [name for name, _ in checks.suite(small=True)]


def _run(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "kernels_numba.simcheck", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("name", NAMES)
def test_cuda_kernel_on_simulator(name: str) -> None:
    result = _run(name)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ok {name} simulator" in result.stdout


def test_simcheck_refuses_unknown_names() -> None:
    result = _run("no_such_check")
    assert result.returncode == 4


def test_gpu_harness_runners_on_simulator() -> None:
    """The bench's Numba-CUDA runners (device arrays, launch wrappers) run on the simulator."""
    result = _run("bench_runners")
    assert result.returncode == 0, result.stderr[-3000:]
