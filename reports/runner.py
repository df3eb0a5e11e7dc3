"""Batch reports: run the notebooks with papermill over a spec's grid, one offline HTML page per run.

``python -m reports.runner [SPEC]`` (also ``moe-sim report [SPEC]`` and ``make report``) reads a
spec (default ``reports/specs/default.toml``; format in ``reports/spec.py``), executes every run in
parallel worker processes with a progress bar, and writes under ``reports/output/<spec name>/``:

- ``runs/<run id>.html``: the executed notebook as one self-contained page (plotly.js inlined,
  nothing fetched from the network), and ``runs/<run id>.ipynb``, the executed notebook;
- ``index.html``: links to every page with a summary table (status, time, headline figures, error);
- ``summary.json`` and ``summary.csv``: the same table for scripts.

A run that fails is listed with its error and does not stop the others. Exit status: 0 when every
run succeeded, 1 when at least one failed, 2 when the spec itself is wrong.

Examples::

    python -m reports.runner                       # the default report set
    python -m reports.runner my_spec.toml -j 4     # your own grid, four workers
    python -m reports.runner --only training       # runs whose id contains "training"
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import html
import json
import multiprocessing
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reports.spec import (
    DEFAULT_SPEC,
    NOTEBOOKS_DIR,
    REPO_ROOT,
    ReportSpec,
    Run,
    check_runs,
    load_spec,
    notebook_path,
)

OUTPUT_ROOT = REPO_ROOT / "reports" / "output"
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
PROJECT_KERNEL = "moe-fleetcost"
_MARKER = ".moe-fleetcost-report"


@dataclass(frozen=True)
class RunResult:
    """What became of one run: status, wall time, headline figures the notebook wrote, error."""

    run: Run
    ok: bool
    seconds: float
    html_path: str | None
    notebook_path: str | None
    summary: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.run.to_dict(),
            "status": "ok" if self.ok else "failed",
            "seconds": round(self.seconds, 2),
            "html": self.html_path,
            "executed_notebook": self.notebook_path,
            "summary": dict(self.summary),
            "error": self.error,
        }


def choose_kernel() -> str:
    """The project's Jupyter kernel when installed (``make install`` does), else this Python's."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    return PROJECT_KERNEL if PROJECT_KERNEL in specs else "python3"


def export_html(executed: Path, destination: Path, title: str, show_code: bool) -> None:
    """Write an executed notebook as one self-contained HTML page with no network fetches."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(executed, as_version=4)
    notebook.metadata["title"] = title
    exporter = HTMLExporter(
        template_name="offline",
        extra_template_basedirs=[str(TEMPLATE_DIR)],
        exclude_input=not show_code,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
    destination.write_text(make_offline(body), encoding="utf-8")


# plotly's "notebook" renderer adds a MathJax <script src> from cdnjs to every figure (we use no
# LaTeX in figures), and the inlined plotly.js names a CDN as the default topojson location (used
# only by geo maps, which we do not draw). Neither may reach the network from an offline page.
_CDN_MATHJAX = re.compile(r'<script src="https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^"]*"></script>')
_PLOTLY_TOPOJSON_CDN = '"https://cdn.plot.ly/un/"'
_EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\ssrc=[\"']?(https?:)?//", re.IGNORECASE)


def make_offline(body: str) -> str:
    """Strip what would reach for the network from an exported page; ValueError if anything remains."""
    body = _CDN_MATHJAX.sub("", body)
    body = body.replace(_PLOTLY_TOPOJSON_CDN, '"topojson/"')
    if "cdn.plot.ly" in body:
        raise ValueError("the page refers to cdn.plot.ly; plotly.js must be inlined (renderer 'notebook').")
    external = _EXTERNAL_SCRIPT.search(body)
    if external:
        start = external.start()
        raise ValueError(f"the page loads a script from the network: {body[start : start + 160]!r}")
    return body


def _header_cell(run: Run, parameters: Mapping[str, Any]) -> Any:
    import nbformat

    rows = "\n".join(
        f"| `{key}` | `{value!r}` |" for key, value in parameters.items() if key != "summary_path"
    )
    text = (
        f"**Report run `{run.run_id}`**: scenario `{run.scenario}`, notebook `{run.notebook}`"
        + (f", model `{run.model}`" if run.model else "")
        + (f", GPU `{run.gpu}`" if run.gpu else "")
        + ".\n\n"
        + f"| parameter | value |\n|---|---|\n{rows}\n"
    )
    return nbformat.v4.new_markdown_cell(text)


def execute_run(
    run: Run,
    runs_dir: str,
    kernel_name: str,
    cell_timeout_s: float,
    show_code: bool,
    notebooks_dir: str = str(NOTEBOOKS_DIR),
) -> RunResult:
    """Execute one run in this process (the worker side); never raises, failures are in the result."""
    import nbformat
    import papermill

    started = time.perf_counter()
    out = Path(runs_dir)
    executed = out / f"{run.run_id}.ipynb"
    html_path = out / f"{run.run_id}.html"
    summary_path = out / f"{run.run_id}.summary.json"
    parameters: dict[str, Any] = dict(run.parameters)
    if run.model is not None:
        parameters["model"] = run.model
    if run.gpu is not None:
        parameters["gpu"] = run.gpu
    parameters["summary_path"] = str(summary_path)
    source = notebook_path(run.notebook, Path(notebooks_dir))
    error: str | None = None
    try:
        if not source.is_file():
            known = sorted(p.stem for p in Path(notebooks_dir).glob("*.ipynb"))
            raise FileNotFoundError(f"notebook {source} does not exist; known notebooks: {known}")
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters=parameters,
            kernel_name=kernel_name,
            cwd=str(source.parent),
            progress_bar=False,
            log_output=False,
            execution_timeout=cell_timeout_s,
        )
    except Exception as exc:  # one run's failure is reported, never raised into the others
        ename = getattr(exc, "ename", None)
        evalue = getattr(exc, "evalue", None)
        error = f"{ename}: {evalue}" if ename else f"{type(exc).__name__}: {exc}"
    summary: dict[str, Any] = {}
    if error is None:
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
        except (OSError, ValueError) as exc:
            error = f"the notebook's summary file is unreadable: {exc}"
    written_html: str | None = None
    if executed.is_file():
        try:
            notebook = nbformat.read(executed, as_version=4)
            notebook.cells.insert(0, _header_cell(run, parameters))
            nbformat.write(notebook, executed)
            title = f"{run.run_id} ({'failed' if error else 'ok'})"
            export_html(executed, html_path, title, show_code)
            written_html = str(html_path)
        except Exception as exc:
            message = f"HTML export failed: {type(exc).__name__}: {exc}"
            error = f"{error}; {message}" if error else message
    return RunResult(
        run=run,
        ok=error is None,
        seconds=time.perf_counter() - started,
        html_path=written_html,
        notebook_path=str(executed) if executed.is_file() else None,
        summary=summary,
        error=error,
    )


def _prepare_output(out_dir: Path) -> Path:
    """Empty a previous report of the same spec (only a folder this runner made); return the build folder.

    Runs write into ``<out>/.build/``; the pages are published into ``<out>/runs/`` once every run has
    finished (``_publish``), so a report folder never mixes pages of two report runs.
    """
    if out_dir.exists():
        if not (out_dir / _MARKER).exists() and any(out_dir.iterdir()):
            raise ValueError(
                f"output folder {out_dir} exists and was not made by the report runner; "
                "choose another --output."
            )
        shutil.rmtree(out_dir)
    build_dir = out_dir / ".build"
    build_dir.mkdir(parents=True)
    (out_dir / _MARKER).write_text("made by reports.runner\n", encoding="utf-8")
    return build_dir


def _publish(results: Sequence[RunResult], out_dir: Path) -> list[RunResult]:
    """Copy each run's page and executed notebook from the build folder into runs/; return updated results."""
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(exist_ok=True)
    published: list[RunResult] = []
    for result in results:
        paths: list[str | None] = []
        for built in (result.html_path, result.notebook_path):
            if built is None:
                paths.append(None)
                continue
            target = runs_dir / Path(built).name
            shutil.copyfile(built, target)
            paths.append(str(target))
        published.append(dataclasses.replace(result, html_path=paths[0], notebook_path=paths[1]))
    shutil.rmtree(out_dir / ".build", ignore_errors=True)
    return published


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _relative(path: str | None, base: Path) -> str | None:
    return None if path is None else os.path.relpath(path, base)


def write_summaries(spec: ReportSpec, results: Sequence[RunResult], out_dir: Path, wall_s: float) -> Path:
    """Write index.html, summary.json and summary.csv; return the index path."""
    ordered = sorted(results, key=lambda r: [run.run_id for run in spec.runs].index(r.run.run_id))
    failed = [r for r in ordered if not r.ok]
    records = []
    for result in ordered:
        record = result.to_dict()
        record["html"] = _relative(result.html_path, out_dir)
        record["executed_notebook"] = _relative(result.notebook_path, out_dir)
        records.append(record)
    document = {
        "title": spec.title,
        "spec": str(spec.path),
        "generated_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": round(wall_s, 1),
        "runs_total": len(ordered),
        "runs_failed": len(failed),
        "runs": records,
    }
    (out_dir / "summary.json").write_text(
        json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8"
    )

    metric_keys: list[str] = []
    for result in ordered:
        for key in result.summary:
            if key not in metric_keys:
                metric_keys.append(key)
    columns = ["run_id", "scenario", "notebook", "model", "gpu", "status", "seconds", "html", "error"]
    headers = [f"summary_{k}" if k in columns else k for k in metric_keys]
    with (out_dir / "summary.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns + headers)
        for record, result in zip(records, ordered, strict=True):
            row = [record[c] if record[c] is not None else "" for c in columns]
            row += [_format_value(result.summary[k]) if k in result.summary else "" for k in metric_keys]
            writer.writerow(row)

    rows = []
    for record, result in zip(records, ordered, strict=True):
        link = (
            f'<a href="{html.escape(record["html"])}">{html.escape(result.run.run_id)}</a>'
            if record["html"]
            else html.escape(result.run.run_id)
        )
        figures = "<br>".join(
            f"{html.escape(str(k))} = {html.escape(_format_value(v))}" for k, v in result.summary.items()
        )
        status = "ok" if result.ok else "failed"
        rows.append(
            f'<tr class="{status}"><td>{link}</td><td>{html.escape(result.run.scenario)}</td>'
            f"<td>{html.escape(result.run.model or '')}</td><td>{html.escape(result.run.gpu or '')}</td>"
            f'<td class="status">{status}</td><td>{result.seconds:.1f}</td><td>{figures}</td>'
            f'<td class="error">{html.escape(result.error or "")}</td></tr>'
        )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(spec.title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; }}
th {{ background: #f0f0f0; }} tr.failed td.status {{ color: #b00; font-weight: bold; }}
tr.ok td.status {{ color: #070; }} td.error {{ color: #b00; max-width: 40em; font-family: monospace; }}
</style></head>
<body>
<h1>{html.escape(spec.title)}</h1>
<p>Spec <code>{html.escape(str(spec.path))}</code>, generated {html.escape(str(document["generated_utc"]))},
{len(ordered)} runs, <strong>{len(failed)} failed</strong>, {wall_s:.0f} s wall time.
Machine-readable: <a href="summary.json">summary.json</a>, <a href="summary.csv">summary.csv</a>.</p>
<table>
<thead><tr><th>run</th><th>scenario</th><th>model</th><th>GPU</th><th>status</th><th>seconds</th>
<th>headline figures</th><th>error</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
</body></html>
"""
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def run_report(
    spec: ReportSpec,
    out_dir: Path,
    workers: int | None = None,
    only: str | None = None,
    progress: bool = True,
    before_publish: Callable[[list[RunResult]], None] | None = None,
) -> tuple[list[RunResult], Path]:
    """Execute a spec's runs in parallel worker processes, then publish the pages, index and summaries.

    ``before_publish`` sees the results once every run has finished, before anything is published
    (the command line prints its summary there, so the published files are the last thing written).
    Returns the published results and the index path.
    """
    from tqdm import tqdm

    runs = [run for run in spec.runs if only is None or only in run.run_id]
    if not runs:
        raise ValueError(f"no run id contains {only!r}; run ids are {[r.run_id for r in spec.runs]}.")
    selected = ReportSpec(
        spec.path, spec.title, spec.workers, spec.cell_timeout_s, spec.show_code, tuple(runs)
    )
    check_runs(selected)
    build_dir = _prepare_output(out_dir)
    kernel = choose_kernel()
    started = time.perf_counter()
    results: list[RunResult] = []
    worker_count = max(1, min(workers or spec.workers, len(runs)))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=worker_count, mp_context=context) as pool:
        futures = {
            pool.submit(execute_run, run, str(build_dir), kernel, spec.cell_timeout_s, spec.show_code): run
            for run in runs
        }
        with tqdm(total=len(runs), desc="report", unit="run", disable=not progress, file=sys.stderr) as bar:
            for future in as_completed(futures):
                run = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # a worker that died: still one failed run, not a crash
                    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                    result = RunResult(run, False, 0.0, None, None, {}, f"worker failed: {detail}")
                results.append(result)
                bar.set_postfix(failed=sum(not r.ok for r in results))
                bar.update()
                if not result.ok:
                    bar.write(f"FAILED {run.run_id}: {result.error}")
    wall_s = time.perf_counter() - started
    if before_publish is not None:
        before_publish(results)
    published = _publish(results, out_dir)
    index = write_summaries(selected, published, out_dir, wall_s)
    return published, index


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moe-sim report",
        description="Run the notebooks over a spec's grid and write one offline HTML page per run, "
        "an index.html with a summary table, summary.json and summary.csv.",
        epilog="examples:\n  moe-sim report\n  moe-sim report reports/specs/default.toml -j 2\n"
        "  moe-sim report my_spec.toml --output /tmp/report --only serving\n\n"
        "exit status: 0 every run succeeded, 1 some run failed, 2 the spec is wrong.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "spec", nargs="?", default=str(DEFAULT_SPEC), help="spec file (TOML); default: %(default)s"
    )
    parser.add_argument("-o", "--output", help="output folder (default: reports/output/<spec name>)")
    parser.add_argument("-j", "--workers", type=int, help="parallel worker processes (default: the spec's)")
    parser.add_argument("--only", help="run only the runs whose id contains this text")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print summary.json's contents at the end")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``moe-sim report`` and ``python -m reports.runner``; returns the exit status."""
    args = build_parser().parse_args(argv)
    failed: list[RunResult] = []

    def report_outcome(results: list[RunResult]) -> None:
        failed.extend(r for r in results if not r.ok)
        print(
            f"{len(results)} runs, {len(results) - len(failed)} ok, {len(failed)} failed; "
            f"index: {out_dir / 'index.html'}"
        )
        for result in failed:
            print(f"  failed {result.run.run_id}: {result.error}")
        sys.stdout.flush()
        sys.stderr.flush()

    try:
        spec = load_spec(args.spec)
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {args.workers}.")
        out_dir = Path(args.output) if args.output else OUTPUT_ROOT / Path(args.spec).stem
        _, index = run_report(
            spec,
            out_dir,
            args.workers,
            args.only,
            progress=not args.no_progress,
            before_publish=report_outcome,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print((index.parent / "summary.json").read_text(encoding="utf-8"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
