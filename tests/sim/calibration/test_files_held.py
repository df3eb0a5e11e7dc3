"""files_held: within the block a calibration file's modification time is read once, so a search's
hundreds of thousands of lookups cost no stat each; a file rewritten inside is seen after the block."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sim.calibration import files_held, load_file, mtime_ns


def _write(path: Path, value: int, stamp_ns: int) -> None:
    path.write_text(json.dumps({"value": value}))
    os.utime(path, ns=(stamp_ns, stamp_ns))


def test_a_rewritten_file_is_seen_after_the_block_not_inside(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    _write(path, 1, 1_000_000_000)
    assert load_file(path)["value"] == 1
    with files_held():
        assert load_file(path)["value"] == 1
        _write(path, 2, 2_000_000_000)
        with files_held():  # nested: the outer block's reading holds
            assert mtime_ns(path) == 1_000_000_000
        assert load_file(path)["value"] == 1
    assert mtime_ns(path) == 2_000_000_000
    assert load_file(path)["value"] == 2


def test_a_missing_file_stays_missing_inside_and_is_found_after(tmp_path: Path) -> None:
    path = tmp_path / "later.json"
    with files_held():
        with pytest.raises(FileNotFoundError, match="later.json"):
            mtime_ns(path)
        _write(path, 3, 3_000_000_000)
        with pytest.raises(FileNotFoundError):
            mtime_ns(path)
    assert mtime_ns(path) == 3_000_000_000
    with pytest.raises(FileNotFoundError):
        mtime_ns(tmp_path / "never.json")
