# Source of notebooks/04_validation.ipynb (python -m reports.build_notebooks writes it from this file).
# ruff and mypy check it as code; each "# %%" line starts a cell (reports/notebook_cells.py).


# %% [markdown]
# # 4. Validation: how far to trust the numbers
#
# Two kinds of evidence. Kernels: the timing model's predicted time against the time measured
# on real hardware, for every kernel family and shape the harness ran (`python -m
# kernels_numba.bench` measures, `python -m kernels_numba.validate` scores held-out shapes).
# End to end: every published figure the simulators reproduce (DeepSeek's GPU-hours, step
# time, MFU, serving throughput and cost), with its error, its tolerance and its source. The
# end-to-end figures are predictions: nothing was fitted to them.


# %% tags=["parameters"]
run_training = True  # simulate the published training runs (a few seconds each)
run_serving = True  # simulate the published serving systems
summary_path = ""


# %%
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from IPython.display import Markdown, display

from reports import validation
from reports.nbtools import not_available, setup_plotly, show_table, write_summary

pio.renderers.default = "notebook"  # plotly.js inlined: figures show in JupyterLab and in offline HTML
setup_plotly()
summary: dict[str, Any] = {}


# %% [markdown]
# ## Kernels: predicted against measured
#
# Each point is one kernel at one shape on one device (this machine's measurements, and
# DeepSeek's published H800 tables: DeepGEMM, FlashMLA, DeepEP); the diagonal is a perfect
# prediction and the band is +-15%. Held-out shapes (filled; not used to fit the family's
# parameters) are the ones that count. The table below gives the median and 90th-percentile
# error on held-out shapes, from `python -m kernels_numba.validate --json`.


# %%
found = validation.kernel_points()
points, kernel_notes = found if found is not None else ([], [])
if found is None:
    not_available("predicted-vs-measured kernel times", "kernels_numba (calibration data)")
for note in kernel_notes:
    display(Markdown(f"> **Not scored:** {note}"))
if points:
    fig = go.Figure()
    low = min(min(p["measured_s"], p["predicted_s"]) for p in points)
    high = max(max(p["measured_s"], p["predicted_s"]) for p in points)
    line = [low * 0.8, high * 1.25]
    fig.add_scatter(x=line, y=line, mode="lines", line={"color": "gray"}, name="exact")
    fig.add_scatter(
        x=line + line[::-1],
        y=[v * 1.15 for v in line] + [v * 0.85 for v in line[::-1]],
        fill="toself",
        mode="none",
        fillcolor="rgba(128,128,128,0.2)",
        name="+-15%",
    )
    groups = sorted({(p["device"], p["family"], p["impl"]) for p in points})
    for device, family, impl in groups:
        chosen = [p for p in points if (p["device"], p["family"], p["impl"]) == (device, family, impl)]
        fig.add_scatter(
            x=[p["measured_s"] for p in chosen],
            y=[p["predicted_s"] for p in chosen],
            mode="markers",
            name=f"{family}/{impl} on {device}",
            marker={"symbol": ["circle" if p["held_out"] else "circle-open" for p in chosen]},
            text=[p["shape"] for p in chosen],
        )
    fig.update_xaxes(type="log", title="measured time (s)")
    fig.update_yaxes(type="log", title="predicted time (s)")
    fig.update_layout(title="Kernel times: predicted vs measured (filled: held-out shapes)", height=560)
    fig.show()
try:
    scores = validation.kernel_scores()
except RuntimeError as error:  # the validation command itself failed: say so, with its message
    scores = None
    display(Markdown(f"> **Kernel validation failed:** `{error}`"))
    summary["kernel_validation_error"] = str(error)[-300:]
if scores is None and "kernel_validation_error" not in summary:
    not_available("held-out kernel error scores", "kernels_numba.validate")
if scores is not None:
    rows = [
        {
            "device": scores.get("device"),
            "family/impl": key,
            "median error %": v["median_pct"],
            "p90 error %": v.get("p90_pct"),
            "shapes": v["n"],
        }
        for key, v in scores["held_out"].items()
    ]
    rows += [
        {
            "device": "H800 (published)",
            "family/impl": key,
            "median error %": v["median_pct"],
            "p90 error %": v.get("p90_pct"),
            "shapes": v["n"],
        }
        for key, v in scores["published"].items()
    ]
    show_table(rows)
    summary["kernel_families_scored"] = len(rows)
    summary["kernel_median_pct_worst"] = max(r["median error %"] for r in rows) if rows else None


# %% [markdown]
# ## Published figures the simulators reproduce
#
# Relative error = (simulated - published) / published; MFU is compared in percentage points.
# A check passes when the error is within its tolerance (set before the simulators were run).
# Rows "with the kernels of 2025-02" predict DeepSeek's own systems of that time (V3's training,
# the profiled configurations, Day 6) again on the H800 calibration fitted to the kernel tables
# as they stood then (GPU name `H800@2025-02`); the other rows use the newest tables.


# %%
checks = validation.published_checks(training=run_training, serving=run_serving)
show_table([c.table_row() for c in checks])
measured = [c for c in checks if c.error is not None]
if measured:
    fig = go.Figure()
    fig.add_bar(
        x=[c.description for c in measured],
        y=[c.error_pct_or_points for c in measured],
        marker_color=["seagreen" if c.within else "crimson" for c in measured],
        error_y={"type": "data", "array": [0.0] * len(measured)},
        name="error",
    )
    fig.add_scatter(
        x=[c.description for c in measured],
        y=[c.tolerance_pct_or_points for c in measured],
        mode="markers",
        marker={"symbol": "line-ew-open", "size": 18},
        name="+tolerance",
    )
    fig.add_scatter(
        x=[c.description for c in measured],
        y=[-c.tolerance_pct_or_points for c in measured],
        mode="markers",
        marker={"symbol": "line-ew-open", "size": 18},
        name="-tolerance",
    )
    fig.update_layout(
        title="Simulated vs published: error (green within tolerance, red outside)",
        yaxis_title="error (% or MFU points)",
        height=560,
        xaxis_tickangle=-30,
    )
    fig.show()
missing = [c for c in checks if c.error is None]
if missing:
    display(
        Markdown(
            "**Not checked yet** (the simulator it needs has not landed, or it failed): "
            + "; ".join(f"{c.description}: {c.note}" for c in missing)
        )
    )
summary.update(
    {
        "checks": len(checks),
        "within_tolerance": sum(bool(c.within) for c in checks),
        "not_checked": len(missing),
    }
)
write_summary(summary_path, summary)


# %% [markdown]
# ## Third-party end-to-end measurements
#
# 175 public measurements on H100, H200 and A100 (TensorRT-LLM, vLLM and SGLang serving, Megatron-Bridge
# training; `reference/measured_dev.json`), each predicted from the configuration its source states by
# `moe-sim validate --end-to-end`. Nothing was fitted to them. The figures below are the committed
# results (`reports/baselines/end-to-end-current.json`, refreshed by `python -m reports.end_to_end --write`,
# about 10 minutes) beside the dated baseline every model change is measured against.


# %%
import json as _json

from reports import end_to_end

if not end_to_end.CURRENT.exists():
    not_available("third-party end-to-end results", "reports/baselines/end-to-end-current.json")
else:
    current = _json.loads(end_to_end.CURRENT.read_text())["end_to_end"]
    baseline_files = end_to_end.baselines()
    base = _json.loads(baseline_files[0].read_text())["end_to_end"] if baseline_files else None
    rows = []
    for name in ("overall",) + end_to_end.REGIMES:
        reg = current["overall"] if name == "overall" else current["regimes"][name]
        breg = (base["overall"] if name == "overall" else base["regimes"].get(name, {})) if base else {}
        rows.append(
            {
                "regime": name,
                "median abs. error %": reg["median_abs_error_pct"],
                "records": reg["n"],
                "refused": reg.get("refused", len(current["refused"])),
                "baseline median abs. error %": breg.get("median_abs_error_pct"),
            }
        )
    show_table(rows)
    records = [r for r in current["records"] if r["kind"] == "measured"]
    fig = go.Figure()
    for name in end_to_end.REGIMES:
        chosen = [r for r in records if r["regime"] == name]
        if chosen:
            fig.add_scatter(
                x=[r["measured"] for r in chosen],
                y=[r["predicted"] for r in chosen],
                mode="markers",
                name=name,
                text=[
                    f"{r['id']} {r['call']['model']} {r['n_gpus']}x {r['call']['gpu']}: {r['reads']}"
                    for r in chosen
                ],
            )
    low = min(min(r["measured"], r["predicted"]) for r in records)
    high = max(max(r["measured"], r["predicted"]) for r in records)
    fig.add_scatter(
        x=[low, high],
        y=[low, high],
        mode="lines",
        name="predicted = measured",
        line={"dash": "dot", "color": "grey"},
    )
    fig.update_xaxes(type="log", title="measured (each record's own unit)")
    fig.update_yaxes(type="log", title="predicted")
    fig.update_layout(title="Third-party end-to-end measurements: predicted vs measured", height=560)
    fig.show()
    show_table(
        [
            {
                "record": r["id"],
                "model": r["model"],
                "hardware": r["hardware"],
                "why refused": r["message"][:160],
            }
            for r in current["refused"]
        ]
    )
    summary.update(
        {
            "end_to_end_median_abs_error_pct": current["overall"]["median_abs_error_pct"],
            "end_to_end_records": current["overall"]["n"],
            "end_to_end_refused": len(current["refused"]),
        }
    )
    write_summary(summary_path, summary)
