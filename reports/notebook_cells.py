"""Notebook cell sources as linted code: ``reports/notebooks/nb<NN>_<name>.py`` in the percent format.

Each file is a Python script that ruff and mypy check like the rest of ``reports`` (``E402`` aside:
a notebook imports in its cells). Cells start with a ``# %%`` line: ``# %% [markdown]`` (each line
of text behind ``# ``), ``# %% tags=["parameters"]`` (the papermill cell of plain literals) or a bare
``# %%`` (code). Lines before the first cell are the file's own header. ``python -m
reports.build_notebooks`` writes ``notebooks/<NN>_<name>.ipynb`` from them; the files are read
when asked for, never imported (importing one would run the notebook).
"""

from __future__ import annotations

from pathlib import Path

SOURCES_DIR = Path(__file__).resolve().parent / "notebooks"
MARKDOWN = "# %% [markdown]"
PARAMETERS = '# %% tags=["parameters"]'
CODE = "# %%"


def source_file(name: str) -> Path:
    """The percent-format source of notebook ``name`` ("01_gpus" -> reports/notebooks/nb01_gpus.py)."""
    return SOURCES_DIR / f"nb{name}.py"


def names() -> list[str]:
    """The notebooks, in order ("01_gpus", ...)."""
    return sorted(path.stem[2:] for path in SOURCES_DIR.glob("nb*.py"))


def _markdown(lines: list[str], path: Path) -> str:
    text = []
    for line in lines:
        if line == "#":
            text.append("")
        elif line.startswith("# "):
            text.append(line[2:])
        elif line.strip():
            raise ValueError(f"{path.name}: a markdown cell's lines start with '# ', got {line!r}.")
        else:
            text.append("")
    return "\n".join(text).strip("\n")


def cells(name: str) -> list[tuple[str, str]]:
    """``(kind, text)`` of every cell of notebook ``name``; kind is "md", "parameters" or "code"."""
    path = source_file(name)
    if not path.exists():
        raise ValueError(f"no notebook {name!r}; known: {', '.join(names())}.")
    out: list[tuple[str, str]] = []
    kind = ""
    body: list[str] = []

    def close() -> None:
        if kind == "md":
            out.append((kind, _markdown(body, path)))
        elif kind:
            out.append((kind, "\n".join(body).strip("\n")))

    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.startswith(CODE):
            close()
            body = []
            marker = line.rstrip()
            kinds = {MARKDOWN: "md", PARAMETERS: "parameters", CODE: "code"}
            if marker not in kinds:
                raise ValueError(f"{path.name}: unknown cell marker {line!r}; use {sorted(kinds)}.")
            kind = kinds[marker]
        elif kind:
            body.append(line)
    close()
    return out


def render(name: str, cell_list: list[tuple[str, str]], header: str) -> str:
    """The percent-format text of a notebook's cells (the inverse of :func:`cells`)."""
    parts = [header.rstrip("\n")]
    for kind, text in cell_list:
        if kind == "md":
            lines = ["# " + line if line else "#" for line in text.split("\n")]
            parts.append(MARKDOWN + "\n" + "\n".join(lines))
        elif kind == "parameters":
            parts.append(PARAMETERS + "\n" + text)
        elif kind == "code":
            parts.append(CODE + "\n" + text)
        else:
            raise ValueError(f"notebook {name}: cell kind {kind!r} is not md, code or parameters.")
    return "\n\n\n".join(parts) + "\n"
