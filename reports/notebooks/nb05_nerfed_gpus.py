# Source of notebooks/05_nerfed_gpus.ipynb (python -m reports.build_notebooks writes it from this file).
# ruff and mypy check it as code; each "# %%" line starts a cell (reports/notebook_cells.py).


# %% [markdown]
# # 5. The "nerfed GPU" question: what each export-control cut costs
#
# H800 is H100 with NVLink cut; H20 is H100 with most of its tensor throughput cut (and more,
# faster memory). Which cut costs a MoE model more, in training and in serving? This notebook
# applies each cut to H100 one at a time, then sweeps each resource (NVLink bandwidth, HBM
# bandwidth, peak FLOPs, price) around H800 and H20 to show which one the cost depends on.
#
# Run interactively (`interactive = True`), the last section offers controls (GPU, model,
# bandwidths, FLOPs, price) that redraw its figures; under papermill the parameters cell
# drives the same code once.


# %% tags=["parameters"]
model = "deepseek-v4-flash"
gpu = "H800"  # the what-if section starts from this GPU
compare_gpus = ["H800", "H20"]  # the sensitivity sweeps run on these
baseline_gpu = "H100"
factors = [0.5, 0.75, 1.0, 1.5, 2.0]  # multiples of each resource in the sweeps
measures = ["training", "serving"]
num_gpus = 2048  # training cluster
tokens = 32e12
train_plan = {"tp": 1, "pp": 8, "ep": 64, "schedule": "dualpipe"}  # fixed, so sweeps compare like with like
seq_len = 4096
global_batch_seqs = 15360
serve_nodes = 2
serve_concurrency_per_gpu = 16
input_len = 4383
output_len = 1211
cache_hit_rate = 0.563
duration_s = 60.0
nvlink_gb_per_s_per_direction = (
    450.0  # what-if values, 0 means as profiled; here H800 with the NVLink of H100
)
hbm_tb_per_s = 0.0
flops_scale = 1.0
usd_per_gpu_hour = 0.0
interactive = True  # papermill runs set this to False
summary_path = ""


# %%
import dataclasses
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from IPython.display import Markdown, display
from plotly.subplots import make_subplots

import gpus
import moe
import sim
from reports.nbtools import setup_plotly, show_table, write_summary

pio.renderers.default = "notebook"  # plotly.js inlined: figures show in JupyterLab and in offline HTML
setup_plotly()
model_name = moe.get(model).name


def modified(profile, nvlink=1.0, hbm=1.0, flops=1.0, **replace):
    """The profile with resources scaled (or replaced); its name stays, so its calibration applies."""
    return dataclasses.replace(
        profile,
        nvlink_bandwidth_bytes_per_s_per_direction=profile.nvlink_bandwidth_bytes_per_s_per_direction
        * nvlink,
        hbm_bandwidth_bytes_per_s=profile.hbm_bandwidth_bytes_per_s * hbm,
        peak_flops_per_s={k: v * flops for k, v in profile.peak_flops_per_s.items()},
        **replace,
    )


def training_cost(profile, price):
    t = sim.estimate_training(
        model=model,
        gpu=profile,
        num_gpus=num_gpus,
        seq_len=seq_len,
        global_batch_seqs=global_batch_seqs,
        tokens=tokens,
        precision="fp8",
        usd_per_gpu_hour=price,
        **train_plan,
    )
    return t.usd_per_million_tokens, t.bound_by


def serving_cost(profile, price):
    n = serve_nodes * profile.node.gpus_per_node
    s = sim.estimate_serving(
        model=model,
        gpu=profile,
        deployment={"mode": "colocated", "nodes": serve_nodes, "ep": n, "attn_dp": n},
        workload={
            "input_len": input_len,
            "output_len": output_len,
            "cache_hit_rate": cache_hit_rate,
            "concurrency": serve_concurrency_per_gpu * n,
        },
        usd_per_gpu_hour=price,
        duration_s=duration_s,
        seed=0,
    )
    return s.usd_per_million_output_tokens, getattr(s, "bound_by", "")


COST = {"training": training_cost, "serving": serving_cost}
UNITS = {"training": "USD per million training tokens", "serving": "USD per million output tokens"}


def cost(measure, profile, price):
    try:
        return COST[measure](profile, price)
    except ValueError as error:  # the plan or deployment does not fit: no number, say why
        return float("nan"), f"infeasible: {error}"


# %% [markdown]
# ## One cut at a time, starting from H100
#
# Each step applies one restricted chip's resource to H100 and keeps H100's rental price, so
# the bar shows what that cut alone does to the cost; the last bars are the real chips at
# their own prices.


# %%
base = gpus.get(baseline_gpu)
base_price = base.price.usd_per_gpu_hour
h800, h20 = gpus.get("H800"), gpus.get("H20")
steps = [
    (f"{base.name}", base, base_price),
    (
        "+ H800 NVLink",
        modified(
            base,
            nvlink=h800.nvlink_bandwidth_bytes_per_s_per_direction
            / base.nvlink_bandwidth_bytes_per_s_per_direction,
        ),
        base_price,
    ),
    (
        "+ H20 FLOPs",
        modified(base, flops=h20.peak_flops_per_s["bf16"] / base.peak_flops_per_s["bf16"]),
        base_price,
    ),
    (
        "+ H20 HBM (size, bandwidth)",
        modified(
            base, hbm=h20.hbm_bandwidth_bytes_per_s / base.hbm_bandwidth_bytes_per_s, hbm_bytes=h20.hbm_bytes
        ),
        base_price,
    ),
    ("H800 at its price", h800, h800.price.usd_per_gpu_hour),
    ("H20 at its price", h20, h20.price.usd_per_gpu_hour),
]
cut_rows: list[dict[str, Any]] = []
for label, profile, price in steps:
    row = {"case": label, "USD/GPU-hour": price}
    for measure in measures:
        value, bound = cost(measure, profile, price)
        row[UNITS[measure]] = value
        row[f"{measure} bound by"] = bound
    cut_rows.append(row)
show_table(cut_rows)
fig = make_subplots(rows=1, cols=len(measures), subplot_titles=[UNITS[m] for m in measures])
for col, measure in enumerate(measures, start=1):
    fig.add_bar(
        x=[r["case"] for r in cut_rows], y=[r[UNITS[measure]] for r in cut_rows], name=measure, row=1, col=col
    )
fig.update_layout(title=f"{model_name}: each cut applied to {base.name} alone", height=480, showlegend=False)
fig.show()
for measure in measures:
    start_cost = cut_rows[0][UNITS[measure]]
    effects = [(r["case"], r[UNITS[measure]] / start_cost) for r in cut_rows[1:4]]
    effects = [(case, ratio) for case, ratio in effects if ratio == ratio]  # drop infeasible (NaN)
    if effects and start_cost == start_cost:
        worst = max(effects, key=lambda e: e[1])
        display(
            Markdown(
                f"**{measure.capitalize()}:** "
                + "; ".join(f"{c} x{r:.2f}" for c, r in effects)
                + f" the cost on {base.name} at its price. The costliest cut is **{worst[0]}**."
            )
        )


# %% [markdown]
# ## Sensitivity: which resource does the cost depend on?
#
# Each line scales one resource of the GPU (the others as the profile says) and shows the cost
# relative to the unmodified GPU. A flat line: that resource does not bind. A line falling as
# the resource grows: it does. Price is linear by construction and serves as the yardstick.


# %%
knobs = {
    "NVLink bandwidth": lambda p, f: (modified(p, nvlink=f), p.price.usd_per_gpu_hour),
    "HBM bandwidth": lambda p, f: (modified(p, hbm=f), p.price.usd_per_gpu_hour),
    "peak FLOPs": lambda p, f: (modified(p, flops=f), p.price.usd_per_gpu_hour),
    "price": lambda p, f: (p, p.price.usd_per_gpu_hour * f),
}
sensitivity = []
fig = make_subplots(
    rows=len(measures),
    cols=len(compare_gpus),
    shared_xaxes=True,
    subplot_titles=[f"{g}: {m}" for m in measures for g in compare_gpus],
)
for subplot_row, measure in enumerate(measures, start=1):
    for col, name in enumerate(compare_gpus, start=1):
        profile = gpus.get(name)
        reference, _ = cost(measure, profile, profile.price.usd_per_gpu_hour)
        for i, (knob, make) in enumerate(knobs.items()):
            ratios = []
            for f in factors:
                value = reference if f == 1.0 else cost(measure, *make(profile, f))[0]
                ratios.append(value / reference)
                sensitivity.append(
                    {
                        "GPU": name,
                        "measure": measure,
                        "resource": knob,
                        "factor": f,
                        "relative cost": value / reference,
                    }
                )
            fig.add_scatter(
                x=factors,
                y=ratios,
                mode="lines+markers",
                name=knob,
                legendgroup=knob,
                showlegend=(subplot_row == 1 and col == 1),
                line={"color": f"hsl({90 * i},60%,45%)"},
                row=subplot_row,
                col=col,
            )
fig.update_xaxes(type="log", title_text="resource x factor")
fig.update_yaxes(type="log", title_text="cost / cost at factor 1")
fig.update_layout(title=f"{model_name}: cost sensitivity to each resource", height=380 * len(measures))
fig.show()


# %% [markdown]
# ## What if? (interactive)
#
# Pick a GPU and model, set NVLink and HBM bandwidth, scale the FLOPs and set a price; the
# figure compares the modified chip with the original. Under papermill the parameters cell
# sets these values and the same function draws once.


# %%
def what_if(gpu_name, model_choice, nvlink_gb_s, hbm_tb_s, flop_scale, price):
    global model
    model = model_choice
    original = gpus.get(gpu_name)
    nvlink_now = original.nvlink_bandwidth_bytes_per_s_per_direction
    nvlink_factor = nvlink_gb_s * 1e9 / nvlink_now if nvlink_gb_s > 0 and nvlink_now > 0 else 1.0
    hbm_factor = hbm_tb_s * 1e12 / original.hbm_bandwidth_bytes_per_s if hbm_tb_s > 0 else 1.0
    changed = modified(original, nvlink=nvlink_factor, hbm=hbm_factor, flops=flop_scale)
    new_price = price if price > 0 else original.price.usd_per_gpu_hour
    rows = []
    for measure in measures:
        before, bound_before = cost(measure, original, original.price.usd_per_gpu_hour)
        after, bound_after = cost(measure, changed, new_price)
        rows.append(
            {
                "measure": UNITS[measure],
                "original": before,
                "modified": after,
                "ratio": after / before,
                "bound (original)": bound_before,
                "bound (modified)": bound_after,
            }
        )
    fig = go.Figure()
    fig.add_bar(
        name=f"{original.name} as profiled", x=[r["measure"] for r in rows], y=[r["original"] for r in rows]
    )
    fig.add_bar(name="modified", x=[r["measure"] for r in rows], y=[r["modified"] for r in rows])
    fig.update_layout(
        barmode="group",
        height=420,
        title=f"{model_choice} on {original.name}: NVLink x{nvlink_factor:.2f}, "
        f"HBM x{hbm_factor:.2f}, FLOPs x{flop_scale:.2f}, ${new_price:.2f}/GPU-hour",
    )
    fig.show()
    show_table(rows)
    return rows


if interactive:
    import ipywidgets as widgets

    start = gpus.get(gpu)
    controls = {
        "gpu_name": widgets.Dropdown(options=gpus.names(), value=start.name, description="GPU"),
        "model_choice": widgets.Dropdown(options=moe.names(), value=model, description="model"),
        "nvlink_gb_s": widgets.FloatSlider(
            value=start.nvlink_bandwidth_bytes_per_s_per_direction / 1e9,
            min=0,
            max=1800,
            step=25,
            description="NVLink GB/s",
        ),
        "hbm_tb_s": widgets.FloatSlider(
            value=start.hbm_bandwidth_bytes_per_s / 1e12, min=0.5, max=10, step=0.1, description="HBM TB/s"
        ),
        "flop_scale": widgets.FloatLogSlider(value=1.0, base=2, min=-3, max=3, description="FLOPs x"),
        "price": widgets.FloatSlider(
            value=start.price.usd_per_gpu_hour, min=0.25, max=10, step=0.05, description="USD/GPU-h"
        ),
    }
    redraw = widgets.Button(description="Redraw", button_style="primary")
    output = widgets.Output()

    def on_redraw(_=None):
        with output:
            output.clear_output(wait=True)
            what_if(**{name: control.value for name, control in controls.items()})

    redraw.on_click(on_redraw)
    display(widgets.VBox([*controls.values(), redraw, output]))
    # The first drawing goes straight to the cell's output: capturing it through the Output
    # widget from the kernel side can leave a headless (papermill/nbclient) run waiting
    # forever for the widget's messages. "Redraw" draws into the widget.
    what_if_rows = what_if(**{name: control.value for name, control in controls.items()})
else:
    what_if_rows = what_if(
        gpu, model, nvlink_gb_per_s_per_direction, hbm_tb_per_s, flops_scale, usd_per_gpu_hour
    )


# %%
summary: dict[str, Any] = {"model": model_name}
for row in cut_rows:
    for measure in measures:
        summary[f"{measure}: {row['case']}"] = row[UNITS[measure]]
for row in what_if_rows:
    summary[f"what-if ratio, {row['measure']}"] = row["ratio"]
write_summary(summary_path, summary)
