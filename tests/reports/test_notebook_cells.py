"""Notebook sources as percent-format scripts (reports/notebooks/nb*.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports import notebook_cells


def test_every_source_parses_and_renders_back():
    names = notebook_cells.names()
    assert names[0] == "01_gpus" and len(names) >= 7
    for name in names:
        cells = notebook_cells.cells(name)
        assert cells[0][0] == "md" and cells[1][0] == "parameters"
        assert {kind for kind, _ in cells} <= {"md", "parameters", "code"}
        header = notebook_cells.source_file(name).read_text(encoding="utf-8").split("# %%", 1)[0]
        assert notebook_cells.cells(name) == cells
        rendered = notebook_cells.render(name, cells, header)
        assert rendered.count("# %%") == len(cells)


def test_unknown_cell_markers_and_notebooks_are_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "nb99_bad.py").write_text("# %% [raw]\nx = 1\n", encoding="utf-8")
    monkeypatch.setattr(notebook_cells, "SOURCES_DIR", tmp_path)
    with pytest.raises(ValueError, match="unknown cell marker"):
        notebook_cells.cells("99_bad")
    with pytest.raises(ValueError, match="no notebook '98_missing'"):
        notebook_cells.cells("98_missing")
