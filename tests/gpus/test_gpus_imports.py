"""gpus imports nothing of this project and nothing heavy, and does no work on import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_is_light_and_lazy():
    code = (
        "import sys, gpus\n"
        "heavy = [m for m in ('numpy', 'scipy', 'torch', 'numba', 'simpy', 'sim', 'moe', 'kernels_numba')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert gpus.loader._builtin.cache_info().currsize == 0, 'data files read at import'\n"
        "assert gpus.get('h800').name == 'H800'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
