# Source of notebooks/07_gpu_wins.ipynb (python -m reports.build_notebooks writes it from this file).
# ruff and mypy check it as code; each "# %%" line starts a cell (reports/notebook_cells.py).


# %% [markdown]
# # 7. Where each GPU wins: a sweep, queried
#
# Which GPU serves a model most cheaply depends on the model, the context length and how fast each
# user must be served. This notebook answers it for a grid of those: it runs a sweep (`sim.sweep`,
# the engine behind `moe-sim sweep`) of every model x GPU x deployment x context length x speed
# target, stores the rows as Parquet, and asks DuckDB for the cheapest GPU per million output
# tokens in each cell (`sim.query_sweep`, as `moe-sim query` does).
#
# Each configuration is the closed-form serving capacity of a disaggregated deployment (the one
# fleet sizing uses: the largest decode batch per GPU whose step meets the time-per-output-token
# target, with the serving simulator's step-cost model), priced at each GPU profile's own rental
# price unless a flat price is given. A deployment the simulator refuses (the weights do not fit)
# is a row with its reason; a target no batch meets is a row marked infeasible. The cheapest
# deployment of each GPU stands for it.


# %% tags=["parameters"]
models = ["mixtral-8x7b", "qwen3-30b-a3b", "qwen3-235b-a22b"]
compare_gpus = ["H100", "H800", "H20", "A800"]
nodes = [1, 2]  # deployments: one instance shape of this many nodes for prefill and for decode
input_lens = [1024, 4096, 16384]  # mean prompt tokens
output_len = 1024  # mean output tokens
tokens_per_s_per_user = [10.0, 20.0, 50.0, 100.0]  # speed targets (1 / time per output token)
usd_per_gpu_hour = 0.0  # 0: each GPU profile's own rental price; else one price for every GPU
results_dir = ""  # "": a temporary folder; else a folder that keeps the results (reruns resume)
jobs = 1  # local worker processes for the sweep (1: this kernel)
summary_path = ""  # the batch runner sets this to collect headline figures


# %%
import tempfile
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from IPython.display import Markdown, display

import sim
from reports.nbtools import setup_plotly, show_table, write_summary
from sim.grid.query import connect

pio.renderers.default = "notebook"  # plotly.js inlined: figures show in JupyterLab and in offline HTML
setup_plotly()
scratch = None if results_dir else tempfile.TemporaryDirectory(prefix="gpu_wins_")
folder = results_dir if scratch is None else scratch.name
spec = {
    "title": "where each GPU wins",
    "kind": "serving",
    "chunk_size": 100,
    "grid": {
        "model": list(models),
        "gpu": list(compare_gpus),
        "deployment": [{"nodes": n} for n in nodes],
        "input_len": list(input_lens),
        "output_len": [output_len],
        "tpot_target_s": [1.0 / target for target in tokens_per_s_per_user],
        "usd_per_gpu_hour": [usd_per_gpu_hour if usd_per_gpu_hour > 0 else "profile"],
    },
}
done = sim.sweep(spec, folder, jobs=jobs)
display(
    Markdown(
        f"{done.configurations:,} configurations in {done.chunks} chunks on {done.engine}: "
        f"{done.configurations_evaluated:,} evaluated now in {done.seconds:.1f} s, "
        f"{done.refused_configurations} refused by the simulator."
    )
)


# %% [markdown]
# ## The query
#
# One SQL statement over the `results` view: per model, context length and speed target, the GPU
# (and its deployment) with the lowest cost per million output tokens among the feasible rows.


# %%
WINNERS = """
SELECT model, input_len, tpot_target_s,
       arg_min(gpu, usd_per_million_output_tokens) AS winner,
       arg_min(deployment, usd_per_million_output_tokens) AS deployment,
       min(usd_per_million_output_tokens) AS usd_per_million_output_tokens,
       count(DISTINCT gpu) AS feasible_gpus
FROM results
WHERE ok AND decode_feasible
GROUP BY ALL
ORDER BY model, input_len, tpot_target_s DESC
"""
winners = sim.query_sweep(folder, WINNERS).to_pylist()
for row in winners:
    row["tokens_per_s_per_user"] = round(1.0 / row.pop("tpot_target_s"), 3)
show_table(
    winners,
    [
        "model",
        "input_len",
        "tokens_per_s_per_user",
        "winner",
        "deployment",
        "usd_per_million_output_tokens",
        "feasible_gpus",
    ],
)
refusals = sim.query_sweep(
    folder,
    "SELECT model, gpu, any_value(error) AS reason, count(*) AS rows "
    "FROM results WHERE NOT ok GROUP BY ALL ORDER BY ALL",
).to_pylist()
if refusals:
    display(Markdown("Refused by the simulator (one reason per model and GPU):"))
    show_table(refusals)


# %% [markdown]
# ## The map
#
# Rows: model and context length; columns: speed per user. Each cell is coloured by the GPU that
# serves it most cheaply and shows that cost; "none" is a target no GPU of the grid meets.


# %%
palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
gpu_order = list(dict.fromkeys(compare_gpus))
targets = sorted(tokens_per_s_per_user)
lines = [(m, n) for m in models for n in input_lens]
best = {(r["model"], r["input_len"], round(r["tokens_per_s_per_user"], 3)): r for r in winners}
z, text = [], []
for m, n in lines:
    z_row: list[Any] = []
    text_row: list[str] = []
    for t in targets:
        hit = best.get((m, n, round(t, 3)))
        if hit is None:
            z_row.append(None)
            text_row.append("none")
        else:
            z_row.append(gpu_order.index(hit["winner"]) if hit["winner"] in gpu_order else None)
            text_row.append(f"{hit['winner']}<br>${hit['usd_per_million_output_tokens']:.2f}/M")
    z.append(z_row)
    text.append(text_row)
steps = len(gpu_order)
colorscale = []
for i in range(steps):
    colour = palette[i % len(palette)]
    colorscale += [[i / steps, colour], [(i + 1) / steps, colour]]
fig = go.Figure(
    go.Heatmap(
        z=z,
        x=[f"{t:g} tok/s/user" for t in targets],
        y=[f"{m}, {n:,} in" for m, n in lines],
        text=text,
        texttemplate="%{text}",
        zmin=-0.5,
        zmax=steps - 0.5,
        colorscale=colorscale,
        colorbar={"tickvals": list(range(steps)), "ticktext": gpu_order, "title": "cheapest"},
        hovertemplate="%{y}, %{x}: %{text}<extra></extra>",
        xgap=2,
        ygap=2,
    )
)
fig.update_layout(
    title="Where each GPU wins: cheapest per million output tokens",
    height=160 + 42 * len(lines),
    yaxis_autorange="reversed",
)
fig.show()


# %% [markdown]
# ## Each GPU against the speed target
#
# For the first model and context length: each GPU's cheapest deployment, cost per million output
# tokens against speed per user. Where a line stops, faster service is out of that GPU's reach.


# %%
CURVES = """
SELECT gpu, tpot_target_s, min(usd_per_million_output_tokens) AS usd
FROM results
WHERE ok AND decode_feasible AND model = $model AND input_len = $input_len
GROUP BY ALL ORDER BY gpu, tpot_target_s DESC
"""
connection = connect(folder)  # the DuckDB connection itself, for a query with parameters
curves = connection.execute(CURVES, {"model": models[0], "input_len": input_lens[0]}).fetchall()
connection.close()
fig = go.Figure()
for name in gpu_order:
    points = [(1.0 / tpot, usd) for gpu, tpot, usd in curves if gpu == name]
    if points:
        fig.add_scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers", name=name)
fig.update_xaxes(title="tokens/s per user (target)", type="log")
fig.update_yaxes(title="USD per million output tokens", type="log")
fig.update_layout(title=f"{models[0]}, {input_lens[0]:,} tokens in, {output_len:,} out", height=420)
fig.show()


# %%
wins = {name: sum(r["winner"] == name for r in winners) for name in gpu_order}
summary = {
    "configurations": done.configurations,
    "refused": sim.query_sweep(folder, "SELECT count(*) AS n FROM results WHERE NOT ok").to_pylist()[0]["n"],
    "cells": len(lines) * len(targets),
    "cells_without_a_gpu": len(lines) * len(targets) - len(winners),
    "most_wins": max(wins, key=lambda gpu: wins[gpu]) if winners else "none",
    **{f"wins_{name}": count for name, count in wins.items()},
}
display(
    Markdown(
        ", ".join(f"{name} wins {count}" for name, count in wins.items()) + f" of {summary['cells']} cells."
    )
)
write_summary(summary_path, summary)
if scratch is not None:
    scratch.cleanup()
