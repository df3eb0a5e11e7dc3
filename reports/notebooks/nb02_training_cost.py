# Source of notebooks/02_training_cost.ipynb (python -m reports.build_notebooks writes it from this file).
# ruff and mypy check it as code; each "# %%" line starts a cell (reports/notebook_cells.py).


# %% [markdown]
# # 2. Training cost: DeepSeek-V3 reproduced, V4 projected
#
# `sim.estimate_training` simulates one optimizer step (pipeline schedule, expert all-to-all
# over NVLink and InfiniBand, data-parallel gradient traffic, memory check) with SimPy and
# scales it to a token budget. First the check: DeepSeek-V3's published pre-training
# configuration against the figures DeepSeek published (predictions, never fitted to). Then the
# projection: the chosen model on each GPU, and where each step's time goes.


# %% tags=["parameters"]
model = "deepseek-v4-flash"
gpu = "H800"  # the GPU this run focuses on (always included)
compare_gpus = ["H100", "H800", "H20", "A800"]
num_gpus = 2048
tokens = 32e12  # training tokens (V4-Flash: 32T, V4-Pro: 33T)
seq_len = 4096
global_batch_seqs = 15360
precision = "fp8"  # a GPU without FP8 runs the nearest format and says so in its notes
# "auto": search the plans that fit and take the fastest; or e.g.
# {"tp": 1, "pp": 8, "ep": 64, "schedule": "dualpipe"}
plan = "auto"
reproduce_v3 = True  # simulate DeepSeek-V3's published run first
summary_path = ""


# %%
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from IPython.display import Markdown, display

import gpus
import moe
import sim
from reports.nbtools import pct_error, setup_plotly, show_table, write_summary
from reports.published import V3_STEP_PHASES_S, V3_STEP_PHASES_SOURCE, published
from sim import scenarios

pio.renderers.default = "notebook"  # plotly.js inlined: figures show in JupyterLab and in offline HTML
setup_plotly()
focus = gpus.get(gpu)
names = list(dict.fromkeys([*compare_gpus, focus.name]))
summary: dict[str, Any] = {"model": moe.get(model).name, "gpu": focus.name}


# %% [markdown]
# ## DeepSeek-V3, as published
#
# 2,048 H800, PP16 with DualPipe, EP64 over 8 nodes, ZeRO-1 data parallelism, no tensor
# parallelism, FP8 GEMMs, sequences of 4,096 tokens, 15,360 sequences per step (DeepSeek-V3
# report; ISCA'25 Table 4). The bars show predicted / published, with each check's tolerance.


# %%
if reproduce_v3:
    # DeepSeek's own plan and its published figures: sim/scenarios/v3_pretraining.toml
    v3_scenario = scenarios.get("v3-pretraining")
    v3 = v3_scenario.run()
    predicted = {figure.key: figure.of(v3) for figure in v3_scenario.figures}
    rows: list[dict[str, Any]] = []
    for key, value in predicted.items():
        ref = published(key)
        error = (value - ref.value) if ref.absolute else pct_error(value, ref.value)
        within = abs(error) <= (ref.tolerance if ref.absolute else 100 * ref.tolerance)
        rows.append(
            {
                "figure": ref.description,
                "published": ref.value,
                "simulated": value,
                "error": f"{error:+.3f}" if ref.absolute else f"{error:+.1f}%",
                "tolerance": f"{ref.tolerance}" if ref.absolute else f"{100 * ref.tolerance:.0f}%",
                "within": "yes" if within else "NO",
                "source": ref.source,
            }
        )
    show_table(rows)
    fig = go.Figure()
    fig.add_bar(
        x=[published(k).description for k in predicted],
        y=[v / published(k).value for k, v in predicted.items()],
        error_y={
            "type": "data",
            "symmetric": True,
            "array": [
                published(k).tolerance / (published(k).value if published(k).absolute else 1.0)
                for k in predicted
            ],
        },
        text=[f"{v / published(k).value:.2f}" for k, v in predicted.items()],
    )
    fig.add_hline(y=1.0, line_dash="dash")
    fig.update_layout(
        title="DeepSeek-V3 pre-training: simulated / published (error bar = tolerance)",
        yaxis_title="ratio",
        height=450,
    )
    fig.show()
    phases = list(V3_STEP_PHASES_S)
    fig = go.Figure()
    fig.add_bar(name="ISCA'25 Table 4 (published)", x=phases, y=[V3_STEP_PHASES_S[p] for p in phases])
    fig.add_bar(name="simulated", x=phases, y=[v3.phases_s.get(p, 0.0) for p in phases])
    fig.update_layout(
        barmode="group",
        height=420,
        yaxis_title="seconds per step",
        title=f"V3's step by DualPipe phase: published {sum(V3_STEP_PHASES_S.values()):.1f} s, "
        f"simulated {v3.step_time_s:.1f} s (bound by {v3.bound_by})",
    )
    fig.show()
    display(
        Markdown(
            f"Phases: {V3_STEP_PHASES_SOURCE}. 1F / 1B / 1W: the warm-up forward, backward-for-inputs "
            "and backward-for-weights chunks outside the steady state; 1F1B: the overlapped steady "
            "state; opt: the optimizer step."
        )
    )
    fig = go.Figure(go.Bar(x=list(v3.breakdown_s), y=list(v3.breakdown_s.values())))
    fig.update_layout(
        title=f"Where V3's simulated {v3.step_time_s:.1f} s step goes, by resource",
        yaxis_title="seconds per step",
        height=420,
    )
    fig.show()
    summary["v3_step_time_s"] = v3.step_time_s
    summary["v3_gpu_hours_per_trillion"] = predicted["v3_gpu_hours_per_trillion"]
    summary["v3_gpu_hours_error_pct"] = pct_error(
        predicted["v3_gpu_hours_per_trillion"], published("v3_gpu_hours_per_trillion").value
    )
else:
    display(Markdown("_V3 reproduction skipped (`reproduce_v3 = False`)._"))


# %% [markdown]
# ## The chosen model on each GPU
#
# The same token budget on the same number of GPUs of each kind, each with the fastest parallel
# plan that fits its memory (`plan = "auto"` searches TP/PP/EP/schedule; a fixed plan can be
# given instead), costed at each GPU's typical rental price; the error bars span the profile's
# low-high price range. A GPU on which no plan fits is listed with the reason.


# %%
results, failures = {}, []
for name in names:
    kwargs = dict(
        model=model,
        gpu=name,
        num_gpus=num_gpus,
        seq_len=seq_len,
        global_batch_seqs=global_batch_seqs,
        tokens=tokens,
        precision=precision,
    )
    if isinstance(plan, dict):
        kwargs.update(plan)
    else:
        kwargs["plan"] = plan
    try:
        results[name] = sim.estimate_training(**kwargs)
    except ValueError as error:  # e.g. no plan fits in this GPU's memory
        failures.append({"GPU": name, "why not": str(error)})

rows = []
for name, t in results.items():
    low, high = t.cost_usd_range
    rows.append(
        {
            "GPU": name,
            "days": t.days,
            "GPU-hours": t.gpu_hours,
            "USD": t.cost_usd,
            "USD low": low,
            "USD high": high,
            "USD/GPU-hour": t.usd_per_gpu_hour,
            "tokens/s/GPU": t.tokens_per_s_per_gpu,
            "MFU": t.mfu,
            "bound by": t.bound_by,
            "plan": (
                f"TP{t.plan['tp']} PP{t.plan['pp']} EP{t.plan['ep']} DP{t.plan['dp']} {t.plan['schedule']}"
            ),
            "notes": "; ".join(n for n in t.notes if not n.startswith(("price ", "plan search"))),
        }
    )
show_table(rows)
if failures:
    show_table(failures)
fig = go.Figure()
fig.add_bar(
    x=[r["GPU"] for r in rows],
    y=[r["USD"] / 1e6 for r in rows],
    name="USD (typical price)",
    error_y={
        "type": "data",
        "symmetric": False,
        "array": [(r["USD high"] - r["USD"]) / 1e6 for r in rows],
        "arrayminus": [(r["USD"] - r["USD low"]) / 1e6 for r in rows],
    },
    text=[f"{r['days']:.0f} days" for r in rows],
)
fig.update_layout(
    title=f"{summary['model']}: {tokens / 1e12:.0f}T tokens on {num_gpus} GPUs",
    yaxis_title="million USD (bar: typical rental; whiskers: price range)",
    height=450,
)
fig.show()


# %% [markdown]
# ## Where the step time goes
#
# Each bar is one simulated optimizer step, split the way the simulator accounts for it
# (compute, exposed communication, pipeline bubble, optimizer...). The parts sum to the step.


# %%
fig = go.Figure()
parts = list(dict.fromkeys(k for t in results.values() for k in t.breakdown_s))
for part in parts:
    fig.add_bar(name=part, x=list(results), y=[t.breakdown_s.get(part, 0.0) for t in results.values()])
fig.update_layout(barmode="stack", title="Step time by component", yaxis_title="seconds per step", height=450)
fig.show()
if focus.name in results:
    t = results[focus.name]
    summary.update(
        {
            "step_time_s": t.step_time_s,
            "gpu_hours": t.gpu_hours,
            "cost_usd": t.cost_usd,
            "days": t.days,
            "bound_by": t.bound_by,
        }
    )
else:
    summary["infeasible"] = next((f["why not"] for f in failures if f["GPU"] == focus.name), "")
write_summary(summary_path, summary)
