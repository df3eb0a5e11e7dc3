"""What a sweep row was computed with: the model's and GPU's data, the calibration files and the
software stack. Each is computed once per process (a worker computes its own, so a row says what
the machine that computed it ran)."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

_SOURCE_ROOT = Path(__file__).resolve().parents[2]
_STACK_PACKAGES = ("moe-fleetcost", "numpy", "scipy", "simpy")


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@cache
def model_sha256(name: str) -> str:
    """First 16 hex digits of the SHA-256 of the model's configuration and accounting (``to_dict``)."""
    import moe

    return _digest(moe.get(name).to_dict())


@cache
def gpu_sha256(name: str) -> str:
    """First 16 hex digits of the SHA-256 of the GPU profile as loaded (``to_dict``, less the data file's
    path, which differs between machines)."""
    import gpus

    data = gpus.get(name).to_dict()
    data.pop("data_file", None)
    return _digest(data)


def git_state() -> tuple[str, bool]:
    """(commit of the source tree, whether tracked files differ from it); ("unknown", True) outside a
    git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=_SOURCE_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=_SOURCE_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", True
    return commit, bool(status.strip())


def _git_commit() -> str:
    """The source tree's commit, with "+changes" when tracked files differ from it; "unknown" outside
    a git checkout."""
    commit, dirty = git_state()
    if commit == "unknown":
        return commit
    return commit + ("+changes" if dirty else "")


def stack_versions() -> dict[str, str]:
    """Python, the project and its numerical dependencies, with their versions, and the commit."""
    versions = {"python": platform.python_version()}
    for package in _STACK_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions["commit"] = _git_commit()
    return versions


@cache
def run_provenance() -> dict[str, str]:
    """This process's stack and calibration digests, as JSON texts (one per process, cached)."""
    from sim.calibration import calibration_sha256

    return {
        "stack_json": json.dumps(stack_versions(), sort_keys=True, separators=(",", ":")),
        "calibration_sha256_json": json.dumps(calibration_sha256(), sort_keys=True, separators=(",", ":")),
    }
