"""Write the notebooks in ``notebooks/`` from their sources, ``reports/notebooks/nb*.py`` (no outputs).

``python -m reports.build_notebooks`` rewrites them; ``--check`` exits 1 when a committed
notebook differs from what this file would write (a test runs it). Each notebook opens with a
markdown title, then a cell tagged ``parameters`` holding plain literals (papermill replaces
it in batch runs), then the story.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reports import notebook_cells
from reports.spec import NOTEBOOKS_DIR

KERNEL = {"name": "moe-fleetcost", "display_name": "moe-fleetcost", "language": "python"}


def build(name: str) -> str:
    """The JSON text of one notebook."""
    import nbformat

    cells = []
    for index, (kind, text) in enumerate(notebook_cells.cells(name)):
        if kind == "md":
            cell = nbformat.v4.new_markdown_cell(text)
        elif kind in ("code", "parameters"):
            cell = nbformat.v4.new_code_cell(text)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
        else:
            raise ValueError(f"notebook {name}: cell kind {kind!r} is not md, code or parameters.")
        cell.id = f"{name[:2]}-{index:02d}"
        cells.append(cell)
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = dict(KERNEL)
    notebook.metadata["language_info"] = {"name": "python"}
    nbformat.validate(notebook)
    return nbformat.writes(notebook) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a notebook is stale")
    args = parser.parse_args(argv)
    stale = []
    for name in notebook_cells.names():
        path = NOTEBOOKS_DIR / f"{name}.ipynb"
        text = build(name)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale.append(path)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print("stale notebooks (run python -m reports.build_notebooks): " + ", ".join(map(str, stale)))
        return 1
    for path in stale:
        print(f"wrote {Path(path).relative_to(NOTEBOOKS_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
