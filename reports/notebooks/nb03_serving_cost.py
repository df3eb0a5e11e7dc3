# Source of notebooks/03_serving_cost.ipynb (python -m reports.build_notebooks writes it from this file).
# ruff and mypy check it as code; each "# %%" line starts a cell (reports/notebook_cells.py).


# %% [markdown]
# # 3. Serving cost: dollars per million tokens against speed per user
#
# `sim.estimate_serving` runs a SimPy simulation of a deployment (batch steps whose time is
# what their batch and KV lengths cost; KV capacity bounds the batch) under a workload, and
# charges the GPU-hours to the tokens. Raising concurrency raises throughput per GPU (cheaper
# tokens) and lowers tokens/s per user: the curve below is that trade-off, per GPU, with
# DeepSeek's API prices marked. Then input against output tokens, and what prefix-cache hits
# and multi-token prediction (MTP) change.


# %% tags=["parameters"]
model = "deepseek-v4-flash"
gpu = "H800"  # the GPU this run focuses on (always included)
compare_gpus = ["H100", "H800", "H20", "A800"]
nodes = 2  # nodes per co-located instance; experts and attention spread over all its GPUs
input_len = 4383  # DeepSeek Day-6 mean prompt length
output_len = 1211
cache_hit_rate = 0.563  # Day-6 share of input tokens served from the prefix cache
concurrency_per_gpu = [1, 4, 16, 64]  # requests in flight per GPU, the sweep's x
cache_hit_rates = [0.0, 0.563, 0.9]
mtp_draft_tokens = 1
mtp_acceptance = 0.85  # DeepSeek-V3 report: 85-90% second-token acceptance
target_tokens_per_s_per_user = 20.0
duration_s = 120.0  # simulated seconds per point
seed = 0
summary_path = ""


# %%
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from IPython.display import Markdown, display

import gpus
import moe
import sim
from reports.nbtools import setup_plotly, show_table, write_summary
from reports.published import API_PRICES_SOURCE, api_prices

pio.renderers.default = "notebook"  # plotly.js inlined: figures show in JupyterLab and in offline HTML
setup_plotly()
focus = gpus.get(gpu)
model_name = moe.get(model).name
names = list(dict.fromkeys([*compare_gpus, focus.name]))
prices = api_prices(model_name)


def serve(name, per_gpu, hit_rate=cache_hit_rate, mtp=True):
    profile = gpus.get(name)
    num_gpus = nodes * profile.node.gpus_per_node
    deployment = {"mode": "colocated", "nodes": nodes, "ep": num_gpus, "attn_dp": num_gpus}
    workload = {
        "input_len": input_len,
        "output_len": output_len,
        "cache_hit_rate": hit_rate,
        "concurrency": per_gpu * num_gpus,
    }
    if mtp and mtp_draft_tokens:
        workload.update({"mtp_draft_tokens": mtp_draft_tokens, "mtp_acceptance": mtp_acceptance})
    else:
        workload["mtp_draft_tokens"] = 0  # the simulator turns MTP on by default for models that have it
    return sim.estimate_serving(
        model=model, gpu=name, deployment=deployment, workload=workload, duration_s=duration_s, seed=seed
    )


def record(name, per_gpu, s):
    return {
        "GPU": name,
        "concurrency/GPU": per_gpu,
        "tokens/s/user": s.tokens_per_s_per_user,
        "output tok/s/GPU": s.output_tokens_per_s_per_gpu,
        "TTFT p50 s": s.ttft_p50_s,
        "TPOT p50 ms": 1e3 * s.tpot_p50_s,
        "USD/M output": s.usd_per_million_output_tokens,
        "USD/M input": s.usd_per_million_input_tokens,
        "USD/M input hit": s.usd_per_million_input_tokens_cache_hit,
        "USD/M input miss": s.usd_per_million_input_tokens_cache_miss,
    }


# %% [markdown]
# ## Cost against speed per user


# %%
sweep: dict[Any, Any] = {}
failures: list[dict[str, Any]] = []
for name in names:
    for per_gpu in concurrency_per_gpu:
        try:
            sweep.setdefault(name, []).append(record(name, per_gpu, serve(name, per_gpu)))
        except ValueError as error:  # e.g. the weights do not fit on this many GPUs
            failures.append({"GPU": name, "concurrency/GPU": per_gpu, "why not": str(error)})
            break
fig = go.Figure()
for name, points in sweep.items():
    fig.add_scatter(
        x=[p["tokens/s/user"] for p in points],
        y=[p["USD/M output"] for p in points],
        mode="lines+markers",
        name=name,
        text=[f"{p['concurrency/GPU']}/GPU" for p in points],
    )
if prices:
    fig.add_hline(
        y=prices["output"],
        line_dash="dash",
        annotation_text=f"DeepSeek API, {model_name} output: ${prices['output']}/M",
    )
fig.update_xaxes(title="tokens/s per user (mean 1/TPOT)")
fig.update_yaxes(type="log", title="USD per million output tokens (rental)")
fig.update_layout(title=f"{model_name}, {nodes}-node co-located instances: cost vs interactivity", height=500)
fig.show()
show_table([p for points in sweep.values() for p in points])
if failures:
    show_table(failures)
if prices:
    display(Markdown(f"API prices: {API_PRICES_SOURCE}."))


# %% [markdown]
# ## Input against output
#
# At the cheapest point of each GPU that still gives at least the target speed per user:
# the cost of a million cache-hit input tokens, cache-miss input tokens and output tokens,
# next to DeepSeek's list prices (black). A cache hit is not recomputed: it costs only the
# attention the new tokens pay over it, small next to a miss (smaller still with sparse attention).


# %%
chosen = {}
for name, points in sweep.items():
    fast = [p for p in points if p["tokens/s/user"] >= target_tokens_per_s_per_user]
    if fast:
        chosen[name] = min(fast, key=lambda p: p["USD/M output"])
kinds = [
    ("USD/M input hit", "cache_hit", "input, cache hit"),
    ("USD/M input miss", "cache_miss", "input, cache miss"),
    ("USD/M output", "output", "output"),
]
fig = go.Figure()
for name, point in chosen.items():
    fig.add_bar(
        name=f"{name} ({point['concurrency/GPU']} req/GPU)",
        x=[label for _, _, label in kinds],
        y=[point[column] for column, _, _ in kinds],
        text=[f"{point[column]:.3g}" for column, _, _ in kinds],
    )
if prices:
    fig.add_bar(
        name=f"DeepSeek API list price ({model_name})",
        x=[label for _, _, label in kinds],
        y=[prices[key] for _, key, _ in kinds],
        marker_color="black",
        text=[f"{prices[key]:.3g}" for _, key, _ in kinds],
    )
fig.update_layout(
    barmode="group",
    title=f"Cost per token kind at >= {target_tokens_per_s_per_user:.0f} tokens/s per user",
    yaxis_title="USD per million tokens (rental)",
    height=480,
)
fig.show()
missing = [n for n in sweep if n not in chosen]
if missing:
    display(
        Markdown(
            f"No swept point reaches {target_tokens_per_s_per_user} tokens/s per user on: "
            + ", ".join(missing)
            + "."
        )
    )


# %% [markdown]
# ## Cache hits and multi-token prediction
#
# A prefix-cache hit skips the prefill compute for that token, so input tokens get cheaper as
# the hit rate grows. MTP drafts extra tokens per decode step; with the acceptance rate above,
# each step yields more than one token, so output tokens get cheaper and faster.


# %%
middle = concurrency_per_gpu[len(concurrency_per_gpu) // 2]
hits = [record(focus.name, middle, serve(focus.name, middle, hit_rate=h)) for h in cache_hit_rates]
no_mtp = [record(focus.name, c, serve(focus.name, c, mtp=False)) for c in concurrency_per_gpu]
fig = go.Figure()
fig.add_scatter(
    x=cache_hit_rates, y=[r["USD/M input"] for r in hits], mode="lines+markers", name="USD/M input (blended)"
)
fig.update_layout(
    title=f"{focus.name}: input cost vs prefix-cache hit rate ({middle} requests/GPU)",
    xaxis_title="cache hit rate (fraction of input tokens)",
    yaxis_title="USD per million",
    height=420,
)
fig.show()
fig = go.Figure()
with_mtp = sweep.get(focus.name, [])
fig.add_scatter(
    x=[p["tokens/s/user"] for p in with_mtp],
    y=[p["USD/M output"] for p in with_mtp],
    mode="lines+markers",
    name=f"MTP {mtp_draft_tokens} draft, {mtp_acceptance:.0%} accepted",
)
fig.add_scatter(
    x=[p["tokens/s/user"] for p in no_mtp],
    y=[p["USD/M output"] for p in no_mtp],
    mode="lines+markers",
    name="no MTP",
)
fig.update_layout(
    title=f"{focus.name}: what multi-token prediction buys",
    xaxis_title="tokens/s per user",
    yaxis_title="USD per million output tokens",
    yaxis_type="log",
    height=420,
)
fig.show()


# %%
summary: dict[str, Any] = {"model": model_name, "gpu": focus.name}
if focus.name in chosen:
    best = chosen[focus.name]
    summary.update(
        {
            "usd_per_million_output": best["USD/M output"],
            "usd_per_million_input": best["USD/M input"],
            "tokens_per_s_per_user": best["tokens/s/user"],
            "output_tokens_per_s_per_gpu": best["output tok/s/GPU"],
        }
    )
else:
    summary["note"] = f"no point reaches {target_tokens_per_s_per_user} tokens/s per user"
write_summary(summary_path, summary)
