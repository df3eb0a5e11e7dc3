# Source of notebooks/06_deepseek_serving.ipynb (python -m reports.build_notebooks writes it from this file).
# ruff and mypy check it as code; each "# %%" line starts a cell (reports/notebook_cells.py).


# %% [markdown]
# # 6. DeepSeek's serving system, reproduced, and V4 projected
#
# On day 6 of its open-infra week (24 hours of 2025-02-27/28) DeepSeek described how it serves
# V3/R1 on H800: prefill instances of 4 nodes (EP32), decode instances of 18 nodes (EP144 with 32
# redundant experts), FP8 GEMMs and dispatch, BF16 attention and combine; 608B input tokens a day
# (56.3% prefix-cache hits) and 168B output tokens on 226.75 nodes on average. This notebook runs
# that system through the simulator: one decode instance at DeepSeek's concurrency, the prefill
# capacity against the fleet's daily average, the cost of each kind of token at 2 USD per GPU-hour,
# a fleet sized hour by hour to the day's load, and then the same cost question for V4-Flash and
# V4-Pro on H100, H800, H20 and A800. All of it is predicted from kernel-level calibration;
# nothing was fitted to these figures.


# %% tags=["parameters"]
calibrations = ["H800", "H800@2025-02"]  # the newest H800 kernel tables, and those of Day 6's month
duration_s = 600.0  # simulated seconds of each Day-6 run (every client starts at once: long is steadier)
mtp_draft_tokens = 1  # V3's one MTP module drafts one token (85% accepted); 0 turns MTP off
tpot_target_s = 0.05  # the fleet's latency target: 20 tokens/s per user (Day 6: 20-22)
ttft_target_s = 5.0
projection_models = ["deepseek-v4-flash", "deepseek-v4-pro"]
projection_gpus = ["H100", "H800", "H20", "A800"]
tokens_per_s_per_user = [20.0, 50.0, 100.0]
seed = 0
summary_path = ""


# %%
import copy
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from IPython.display import Markdown, display

import gpus
import moe
import sim
from reports.nbtools import setup_plotly, show_table, write_summary
from reports.published import API_PRICES_SOURCE, DAY6_FLEET, DAY6_FLEET_SOURCE, api_prices
from sim import scenarios
from sim.serving.fleet import size_fleet
from sim.serving.plan import DEEPSEEK_SPACE
from sim.serving.workloads import DAY6_NODE_COUNT_BY_HOUR, day6_load_curve

pio.renderers.default = "notebook"  # plotly.js inlined: figures show in JupyterLab and in offline HTML
setup_plotly()
v3 = moe.get("deepseek-v3")
day6 = scenarios.get("day6")  # sim/scenarios/day6.toml: deployment, workload, figures, sources
DAY6_DEPLOYMENT = day6.deployment
workload = {**day6.workload, "mtp_draft_tokens": mtp_draft_tokens}
prefill_nodes = DAY6_DEPLOYMENT["prefill"]["nodes"]
# fleets sized hour by hour to the day's load (shown below); their prefill capacity, at full
# batches of the Day-6 mean request, is the prefill section's
plans = {
    name: size_fleet(
        v3,
        name,
        copy.deepcopy(DAY6_DEPLOYMENT),
        {k: v for k, v in workload.items() if k != "concurrency"},
        day6_load_curve(),
        tpot_target_s=tpot_target_s,
        ttft_target_s=ttft_target_s,
        usd_per_gpu_hour=day6.usd_per_gpu_hour,
    )
    for name in calibrations
}
# DeepSeek's own assumption: 2 USD per GPU-hour (day6.toml), 8 GPUs per H800 node
h800 = gpus.get(day6.gpu)
usd_per_gpu_hour = day6.usd_per_gpu_hour if day6.usd_per_gpu_hour is not None else h800.price.usd_per_gpu_hour
NODE_USD_PER_HOUR = usd_per_gpu_hour * h800.node.gpus_per_node
summary: dict[str, Any] = {"model": "deepseek-v3", "calibrations": calibrations}


def error(simulated, published_value):
    return f"{100 * (simulated / published_value - 1):+.1f}%"


# %% [markdown]
# ## The decode instance at DeepSeek's concurrency
#
# 12,686 requests in flight on one decode instance (18 x 14,800 / 21, by Little's law), fed by
# four prefill instances so that prefill is not the bottleneck. "H800@2025-02" is the same GPU
# timed with DeepSeek's kernel tables as they stood in February 2025 (DeepGEMM v1, FlashMLA at
# 580 TFLOPS, DeepEP at launch), the kernels of Day 6's own month; "H800" uses the newest tables.


# %%
runs = {}
for name in calibrations:
    runs[name] = sim.estimate_serving(
        model=v3,
        gpu=name,
        deployment=copy.deepcopy(DAY6_DEPLOYMENT),
        workload=workload,
        usd_per_gpu_hour=day6.usd_per_gpu_hour,
        duration_s=duration_s,
        seed=seed,
    )
rows: list[dict[str, Any]] = []
for figure in day6.figures:  # each with the result attribute it is compared with (day6.toml)
    row: dict[str, Any] = {"figure": figure.description, "published": figure.value}
    for name, run in runs.items():
        value = figure.of(run)
        row[name] = value
        row[f"error ({name})"] = error(value, figure.value)
    row["tolerance"] = f"{100 * figure.tolerance:.0f}%"
    rows.append(row)
show_table(rows)
fig = go.Figure()
for name, run in runs.items():
    fig.add_bar(
        name=name,
        x=[figure.description for figure in day6.figures],
        y=[100 * (figure.of(run) / figure.value - 1) for figure in day6.figures],
    )
fig.add_hrect(y0=-20, y1=20, fillcolor="seagreen", opacity=0.12, line_width=0)
fig.update_layout(
    barmode="group",
    title="Day 6, decode: simulated against published (band: +-20%)",
    yaxis_title="error, %",
    height=420,
)
fig.show()
for name, run in runs.items():
    display(
        Markdown(
            f"**{name}**: bound by {run.bound_by}; {run.mean_batch_per_gpu['decode']:.0f} "
            f"requests per decode GPU, TPOT p50 {1e3 * run.tpot_p50_s:.1f} ms, "
            f"p99 {1e3 * run.tpot_p99_s:.1f} ms."
        )
    )
summary.update(
    {
        f"day6_{k}_{n}": getattr(r, a)
        for n, r in runs.items()
        for k, a in [
            ("decode_tok_s_node", "decode_output_tokens_per_s_per_node"),
            ("tok_s_user", "tokens_per_s_per_user"),
            ("usd_m_output", "usd_per_million_output_tokens"),
        ]
    }
)


# %% [markdown]
# ## Prefill: capacity against the fleet's daily average
#
# Day 6's 73.7k input tokens/s per prefill node (cache hits counted) is a 24-hour average over a
# fleet sized for its peak, not what a busy prefill instance can do. Below: the instance's
# capacity at the Day-6 workload (full batches of the mean request, 56.3% of it a cache hit), the
# load it carried in the run above, and the utilisation that the published average implies.


# %%
rows = []
for name, run in runs.items():
    capacity = plans[name].prefill
    per_node = capacity.input_tokens_per_s_per_instance / prefill_nodes
    implied = DAY6_FLEET["prefill_input_tokens_per_s_per_node"] / per_node
    rows.append(
        {
            "calibration": name,
            "capacity, input tok/s per node": per_node,
            "in the run, input tok/s per node": run.prefill_input_tokens_per_s_per_node,
            "busy in the run": run.utilisation["prefill"],
            "Day 6 average, tok/s per node": DAY6_FLEET["prefill_input_tokens_per_s_per_node"],
            "implied utilisation": implied,
            "USD/M input at capacity": NODE_USD_PER_HOUR / 3600 / per_node * 1e6,
            "USD/M input at Day 6's average": DAY6_FLEET["usd_per_million_input"],
            "USD/M input hit (run)": run.usd_per_million_input_tokens_cache_hit,
            "USD/M input miss (run)": run.usd_per_million_input_tokens_cache_miss,
            "bound by": capacity.bound_by,
        }
    )
    summary[f"prefill_capacity_tok_s_node_{name}"] = per_node
    summary[f"prefill_implied_utilisation_{name}"] = implied
show_table(rows)
first = rows[0]
display(
    Markdown(
        f"A prefill node can take {first['capacity, input tok/s per node']:,.0f} input tokens/s at this "
        f"workload ({first['calibration']}); DeepSeek's day averaged 73,700, so its prefill nodes worked at "
        f"about {first['implied utilisation']:.0%} of capacity over the day. That gap, not a slower "
        "kernel, is why the published input cost (0.060 USD per million at 16 USD per node-hour) is "
        f"{DAY6_FLEET['usd_per_million_input'] / first['USD/M input at capacity']:.1f}x what a saturated "
        "node would charge. The published figure averages 24 hours of a fleet sized for its peak that "
        "follows the load in whole instances, and prefill instances must keep headroom for the time to "
        "first token (the fleet sizing below runs them at most about half full for a 5 s TTFT). "
        f"Source: {DAY6_FLEET_SOURCE}."
    )
)


# %% [markdown]
# ## A fleet sized hour by hour to Day 6's load
#
# The day's 138.7M requests (168B output tokens / 1,211), spread over the hours as DeepSeek's
# node-count chart suggests (the load assumed to follow the nodes), served at TPOT <= the target
# and a TTFT target: the prefill and decode instances each hour needs, their nodes against the
# chart, and the daily cost against DeepSeek's $87,072 (226.75 nodes x 8 GPUs x 24 h x $2).


# %%
hours = list(range(24))
fig = go.Figure()
for name, plan in plans.items():
    fig.add_bar(name=f"simulated ({name})", x=hours, y=list(plan.nodes_by_hour))
fig.add_scatter(
    name="DeepSeek's chart (as read)",
    x=hours,
    y=list(DAY6_NODE_COUNT_BY_HOUR),
    mode="lines+markers",
    line={"color": "black"},
)
fig.update_layout(
    barmode="group",
    title="Nodes in service by hour (hour 0 = 12:00 UTC+8)",
    xaxis_title="hour",
    yaxis_title="H800 nodes",
    height=440,
)
fig.show()
rows = [
    {
        "": "DeepSeek, Day 6",
        "daily cost USD": DAY6_FLEET["daily_cost_usd"],
        "mean nodes": DAY6_FLEET["mean_nodes"],
        "peak nodes": DAY6_FLEET["peak_nodes"],
        "fewest nodes": DAY6_FLEET["min_nodes"],
        "error, daily cost": "",
    }
]
for name, plan in plans.items():
    rows.append(
        {
            "": f"simulated ({name})",
            "daily cost USD": plan.daily_cost_usd,
            "mean nodes": plan.mean_nodes,
            "peak nodes": max(plan.nodes_by_hour),
            "fewest nodes": min(plan.nodes_by_hour),
            "error, daily cost": error(plan.daily_cost_usd, DAY6_FLEET["daily_cost_usd"]),
        }
    )
    summary[f"fleet_daily_cost_usd_{name}"] = plan.daily_cost_usd
show_table(rows)
for name, plan in plans.items():
    display(Markdown(f"**{name}**: " + "; ".join(plan.notes) + "."))


# %% [markdown]
# ## V4-Flash and V4-Pro: cost per million output tokens at a speed per user
#
# For each GPU and each target speed, the cheapest deployment that `sim.plan_serving` finds (1 to
# 32 nodes per instance, attention tensor-parallel over 1 to 8 GPUs of a node and data-parallel
# over the rest, EP over all the instance's GPUs, the model's own MTP, FP8 weights and KV cache,
# colocated or disaggregated with its prefill instances counted), charged at the profile's rental
# price; "infeasible" names what stops even one request from reaching the speed. Notebook 8
# searches the whole space. DeepSeek's API list prices are the dashed lines (they carry margin).


# %%
projection_workload = {k: v for k, v in day6.workload.items() if k != "concurrency"}
table: list[dict[str, Any]] = []
for model_name in projection_models:
    for gpu_name in projection_gpus:
        for target in tokens_per_s_per_user:
            search = sim.plan_serving(
                model_name,
                gpu_name,
                projection_workload,
                {"tokens_per_s_per_user": target, "ttft_p99_s": ttft_target_s},
                space=DEEPSEEK_SPACE,
                refine_top=0,
                seed=seed,
            )
            projection_row: dict[str, Any] = {
                "model": model_name,
                "gpu": gpu_name,
                "tokens_per_s_per_user": target,
                "api": (api_prices(model_name) or {}).get("output"),
            }
            if search.plans:
                p = search.plans[0]
                projection_row.update(
                    {
                        "usd": p.usd_per_million_output_tokens,
                        "range": p.usd_per_million_output_tokens_range,
                        "gpus": p.total_gpus,
                        "deployment": p.summary(),
                        "bound_by": f"{p.bound_by} ({p.limit})",
                    }
                )
            else:
                why = (search.rejected_examples or ("",))[-1][:160]
                projection_row.update({"usd": None, "bound_by": why})
            table.append(projection_row)
rows = []
for r in table:
    cost = r["usd"]
    rows.append(
        {
            "model": r["model"],
            "GPU": r["gpu"],
            "tok/s/user": r["tokens_per_s_per_user"],
            "USD/M output": cost if cost is not None else "infeasible",
            "range (price low-high)": f"{r['range'][0]:.3g}-{r['range'][1]:.3g}" if cost is not None else "",
            "GPUs": r.get("gpus", ""),
            "deployment": r.get("deployment", ""),
            "bound by": r["bound_by"],
            "API price": r["api"],
        }
    )
show_table(rows)
for model_name in projection_models:
    fig = go.Figure()
    for target in tokens_per_s_per_user:
        picked = [r for r in table if r["model"] == model_name and r["tokens_per_s_per_user"] == target]
        fig.add_bar(
            name=f"{target:.0f} tok/s/user",
            x=[r["gpu"] for r in picked],
            y=[r["usd"] if r["usd"] is not None else np.nan for r in picked],
            text=["" if r["usd"] is not None else "infeasible" for r in picked],
        )
    prices = api_prices(model_name)
    if prices:
        fig.add_hline(
            y=prices["output"],
            line_dash="dash",
            annotation_text=f"DeepSeek API output price ${prices['output']}/M",
        )
    fig.update_layout(
        barmode="group",
        title=f"{model_name}: cost per million output tokens (all GPUs)",
        yaxis_type="log",
        yaxis_title="USD per million output tokens (rental)",
        height=440,
    )
    fig.show()
display(Markdown(f"API prices: {API_PRICES_SOURCE}."))
summary["projections_infeasible"] = sum(r["usd"] is None for r in table)
write_summary(summary_path, summary)
