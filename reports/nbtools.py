"""Small helpers the notebooks share: plotly set-up, summaries for the batch runner, availability.

Plots stay in the notebooks; this module only holds the plumbing that every notebook would
otherwise repeat. Importing it has no side effects; ``setup_plotly()`` changes plotly's renderer
when a notebook calls it.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def setup_plotly() -> None:
    """Render figures as HTML with plotly.js inlined (renderer "notebook").

    JupyterLab shows them, and papermill-built HTML keeps them and draws them offline; the
    default renderer would leave only a mime bundle that nbconvert drops.
    """
    import plotly.io as pio

    pio.renderers.default = "notebook"
    pio.templates.default = "plotly_white"


def landed(module: str) -> bool:
    """Whether a module of the project exists yet (other packages are built side by side)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def not_available(what: str, module: str) -> None:
    """Say in the notebook, plainly, that a section's simulator has not landed yet."""
    from IPython.display import Markdown, display

    display(
        Markdown(
            f"> **Not available yet:** {what} needs `{module}`, which is not in this checkout. "
            "This section shows no figures rather than made-up ones; rerun once it has landed."
        )
    )


def show_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Display a list of records as a markdown table (numbers to four significant digits)."""
    from IPython.display import Markdown, display

    if not rows:
        display(Markdown("_(no rows)_"))
        return
    columns = columns or list(rows[0])

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "n/a"
            return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
        if value is None:
            return ""
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    display(Markdown("\n".join(lines)))


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; "no figure" is null
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)


def write_summary(summary_path: str, summary: Mapping[str, Any]) -> None:
    """Write a run's headline figures as JSON for the batch runner (no-op when no path is given)."""
    if not summary_path:
        return
    clean = {str(key): _plain(value) for key, value in summary.items()}
    Path(summary_path).write_text(json.dumps(clean, indent=2) + "\n", encoding="utf-8")


def pct_error(predicted: float, published: float) -> float:
    """Signed error of a prediction in percent of the published figure (12.5 means 12.5%)."""
    if published == 0:
        raise ValueError("a published figure of zero has no relative error; compare absolutely.")
    return 100.0 * (predicted - published) / published
