# Source of notebooks/01_gpus.ipynb (python -m reports.build_notebooks writes it from this file).
# ruff and mypy check it as code; each "# %%" line starts a cell (reports/notebook_cells.py).


# %% [markdown]
# # 1. GPU profiles: what each chip can do, and what export control took away
#
# Every simulation in this project starts from a GPU profile: dense peak FLOP/s per number
# format, HBM capacity and bandwidth, NVLink (scale-up) and InfiniBand (scale-out) bandwidth
# per GPU, and a rental price, each with its source in `gpus/data/*.toml`. This notebook puts
# the profiles side by side: their rooflines with ridge points, and what the export-control
# variants (H800, H20, A800) lost against the chip they were cut from.


# %% tags=["parameters"]
gpu = "H800"  # the GPU this run focuses on
compare_gpus = ["H100", "H800", "H20", "A800", "A100", "H200", "B200"]
dtype = "bf16"  # number format of the rooflines
summary_path = ""  # the batch runner sets this to collect headline figures


# %%
import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from IPython.display import Markdown, display

import gpus
from reports.nbtools import setup_plotly, show_table, write_summary

pio.renderers.default = "notebook"  # plotly.js inlined: figures show in JupyterLab and in offline HTML
setup_plotly()
focus = gpus.get(gpu)
profiles = [gpus.get(name) for name in compare_gpus]
if focus.name not in [p.name for p in profiles]:
    profiles.append(focus)


# %% [markdown]
# ## The profiles
#
# Dense peaks (2:4-sparsity datasheet figures halved); NVLink and InfiniBand per GPU and per
# direction. A format the chip lacks (FP8 on Ampere) is shown as n/a, not zero.


# %%
def tflops(profile, fmt):
    value = profile.peak_flops_per_s.get(fmt)
    return value / 1e12 if value else float("nan")


rows = [
    {
        "GPU": p.name,
        "BF16 TFLOPS": tflops(p, "bf16"),
        "FP8 TFLOPS": tflops(p, "fp8"),
        "FP64 TFLOPS": tflops(p, "fp64"),
        "HBM GB": p.hbm_bytes / 1e9,
        "HBM TB/s": p.hbm_bandwidth_bytes_per_s / 1e12,
        "NVLink GB/s/dir": p.nvlink_bandwidth_bytes_per_s_per_direction / 1e9,
        "IB GB/s/GPU/dir": p.node.scale_out_bandwidth_bytes_per_s_per_gpu / 1e9,
        "TDP W": p.tdp_w,
        "USD/GPU-hour": p.price.usd_per_gpu_hour,
    }
    for p in profiles
]
show_table(rows)


# %% [markdown]
# ## Rooflines
#
# Attainable throughput is the lesser of the peak and (arithmetic intensity x HBM bandwidth).
# The ridge point (peak / bandwidth, in FLOP per byte) is where a kernel stops being limited by
# memory. The dotted lines mark two MoE expert GEMMs (hidden 7168 to 2048, FP8 weights): a
# decode-sized one with 32 tokens per expert and a prefill-sized one with 4,096. A chip with a
# low ridge point (H20) runs decode near its peak; H100/H800 leave most of their FLOPs idle there.


# %%
def expert_gemm_intensity(tokens, hidden=7168, intermediate=2048, weight_bytes=1, act_bytes=2):
    flops = 2 * tokens * hidden * intermediate
    moved = hidden * intermediate * weight_bytes + tokens * (hidden + intermediate) * act_bytes
    return flops / moved


intensity = np.logspace(-1, 4, 300)  # FLOP per byte of HBM traffic
fig = go.Figure()
ridges = {}
for p in profiles:
    fmt = dtype if dtype in p.peak_flops_per_s else p.nearest_dtype(dtype)
    peak = p.peak_flops_per_s[fmt]
    bandwidth = p.hbm_bandwidth_bytes_per_s
    ridges[p.name] = peak / bandwidth
    width = 4 if p.name == focus.name else 2
    fig.add_scatter(
        x=intensity,
        y=np.minimum(peak, intensity * bandwidth) / 1e12,
        mode="lines",
        name=f"{p.name} ({fmt})",
        line={"width": width},
        legendgroup=p.name,
    )
    fig.add_scatter(
        x=[ridges[p.name]],
        y=[peak / 1e12],
        mode="markers",
        legendgroup=p.name,
        marker={"size": 10, "symbol": "diamond"},
        showlegend=False,
        hovertemplate=f"{p.name} ridge: %{{x:.0f}} FLOP/B, %{{y:.0f}} TFLOPS<extra></extra>",
    )
top = max(p.peak_flops_per_s.get(dtype, 0.0) for p in profiles) / 1e12
for label, tokens in (("decode expert GEMM, 32 tokens", 32), ("prefill expert GEMM, 4096 tokens", 4096)):
    x = expert_gemm_intensity(tokens)  # a vertical trace: add_vline's annotation misplaces on log axes
    fig.add_scatter(
        x=[x, x],
        y=[intensity[0] * 1e-1, top * 1.5],
        mode="lines",
        name=label,
        line={"dash": "dot", "color": "gray"},
    )
fig.update_xaxes(type="log", title="arithmetic intensity (FLOP per byte)")
fig.update_yaxes(type="log", title=f"attainable TFLOPS ({dtype})")
fig.update_layout(title=f"Rooflines ({dtype}, dense), ridge points marked", height=520)
fig.show()
display(
    Markdown(
        f"{focus.name}: ridge point at **{ridges[focus.name]:.0f} FLOP/byte**; a decode expert GEMM "
        f"with 32 tokens sits at {expert_gemm_intensity(32):.0f} FLOP/byte."
    )
)


# %% [markdown]
# ## What export control cut
#
# Each restricted chip against the chip it was derived from (1.0 = unchanged). H800 kept H100's
# tensor throughput and lost NVLink (900 to 400 GB/s, both directions together) and FP64; H20
# kept NVLink and gained memory but lost most of its tensor throughput; A800 is A100 with
# NVLink cut to 400 GB/s.


# %%
parents = {"H800": "H100", "H20": "H100", "A800": "A100", "H800-PCIe": "H100-PCIe"}
known = set(gpus.names())
metrics = {
    "BF16 FLOPs": lambda p: p.peak_flops_per_s.get("bf16"),
    "FP8 FLOPs": lambda p: p.peak_flops_per_s.get("fp8"),
    "FP64 FLOPs": lambda p: p.peak_flops_per_s.get("fp64"),
    "HBM bandwidth": lambda p: p.hbm_bandwidth_bytes_per_s,
    "HBM capacity": lambda p: p.hbm_bytes,
    "NVLink": lambda p: p.nvlink_bandwidth_bytes_per_s_per_direction,
    "InfiniBand per GPU": lambda p: p.node.scale_out_bandwidth_bytes_per_s_per_gpu,
}
fig = go.Figure()
cut_rows = []
for restricted, parent in parents.items():
    if restricted not in known or parent not in known:
        continue
    r, p = gpus.get(restricted), gpus.get(parent)
    ratios = []
    for get in metrics.values():
        ours, theirs = get(r), get(p)
        ratios.append(ours / theirs if ours and theirs else None)
    cut_rows.append(
        {
            "GPU": f"{restricted} / {parent}",
            **{k: (v if v is not None else float("nan")) for k, v in zip(metrics, ratios, strict=True)},
        }
    )
    fig.add_bar(
        name=f"{restricted} vs {parent}",
        x=list(metrics),
        y=ratios,
        text=[f"{v:.2f}" if v is not None else "n/a" for v in ratios],
    )
fig.add_hline(y=1.0, line_dash="dash")
fig.update_layout(
    barmode="group",
    title="Restricted chip / original chip, per resource",
    yaxis_title="ratio (1 = unchanged)",
    height=480,
)
fig.show()
show_table(cut_rows)


# %%
h100 = gpus.get("H100") if "H100" in known else None
write_summary(
    summary_path,
    {
        "gpu": focus.name,
        "bf16_tflops": tflops(focus, "bf16"),
        "hbm_tb_per_s": focus.hbm_bandwidth_bytes_per_s / 1e12,
        "nvlink_gb_per_s_per_direction": focus.nvlink_bandwidth_bytes_per_s_per_direction / 1e9,
        "ridge_flop_per_byte": ridges[focus.name],
        "bf16_vs_h100": tflops(focus, "bf16") / tflops(h100, "bf16") if h100 else float("nan"),
    },
)
