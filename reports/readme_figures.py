"""The README's figures: PNGs drawn by the project (plotly, rendered by headless Chromium).

``python -m reports.readme_figures`` writes ``docs/img/rooflines.png`` and
``docs/img/v4_flash_cost.png``. Static export through kaleido needs a browser too, so the
figures are written as self-contained HTML (plotly.js inlined) and screenshotted by the same
offline Chromium that checks the reports (``reports.htmlcheck``).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from reports.htmlcheck import find_chromium
from reports.spec import REPO_ROOT

IMAGE_DIR = REPO_ROOT / "docs" / "img"
WIDTH, HEIGHT = 1000, 560


def rooflines_figure(names: tuple[str, ...] = ("H100", "H800", "H20", "A800")) -> Any:
    """BF16 rooflines with ridge points (FLOP per byte of HBM traffic against attainable TFLOPS)."""
    import plotly.graph_objects as go

    import gpus

    intensity = np.logspace(0, 3.5, 200)
    fig = go.Figure()
    for name in names:
        profile = gpus.get(name)
        fmt = "bf16" if profile.supports("bf16") else profile.nearest_dtype("bf16")
        peak = profile.peak_flops_per_s[fmt]
        bandwidth = profile.hbm_bandwidth_bytes_per_s
        attainable = np.minimum(peak, intensity * bandwidth) / 1e12
        dash = "dash" if name == "H800" else "solid"  # H800 has H100's roofline: the cut is in NVLink
        fig.add_scatter(x=intensity, y=attainable, mode="lines", name=name, line={"dash": dash, "width": 3})
        fig.add_scatter(
            x=[peak / bandwidth], y=[peak / 1e12], mode="markers+text", text=[f"{peak / bandwidth:.0f}"],
            textposition="top center", marker={"size": 9, "symbol": "diamond"}, showlegend=False,
        )  # fmt: skip
    fig.update_xaxes(type="log", title="arithmetic intensity (FLOP per byte of HBM traffic)")
    fig.update_yaxes(type="log", title="attainable BF16 TFLOPS (dense)")
    fig.update_layout(
        title="Rooflines from the GPU profiles, ridge points (FLOP/byte) marked; H800 = H100 here",
        template="plotly_white", width=WIDTH, height=HEIGHT,
    )  # fmt: skip
    return fig


def v4_flash_cost_figure(names: tuple[str, ...] = ("H100", "H800", "H20", "A800")) -> Any:
    """Simulated cost of training DeepSeek-V4-Flash (32T tokens, 2,048 GPUs, one fixed plan) per GPU."""
    import plotly.graph_objects as go

    import sim

    results = {
        name: sim.estimate_training(
            model="deepseek-v4-flash", gpu=name, num_gpus=2048, tp=1, pp=8, ep=64, schedule="dualpipe",
            seq_len=4096, global_batch_seqs=15360, tokens=32e12, precision="fp8",
        )  # fmt: skip
        for name in names
    }
    fig = go.Figure()
    fig.add_bar(
        x=list(results),
        y=[t.cost_usd / 1e6 for t in results.values()],
        error_y={
            "type": "data", "symmetric": False,
            "array": [(t.cost_usd_range[1] - t.cost_usd) / 1e6 for t in results.values()],
            "arrayminus": [(t.cost_usd - t.cost_usd_range[0]) / 1e6 for t in results.values()],
        },  # fmt: skip
        text=[f"{t.days:.0f} days, bound by {t.bound_by}" for t in results.values()],
        textposition="inside",
    )
    fig.update_layout(
        title="DeepSeek-V4-Flash, 32T tokens on 2,048 GPUs (PP8 DualPipe, EP64, FP8 where supported)",
        yaxis_title="million USD (typical rental; whiskers: price range)",
        template="plotly_white", width=WIDTH, height=HEIGHT,
    )  # fmt: skip
    return fig


def screenshot(fig: Any, destination: Path) -> Path:
    """Render a plotly figure to PNG with headless Chromium (offline, plotly.js inlined)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="readme-figure-") as folder:
        page = Path(folder) / "figure.html"
        fig.write_html(page, include_plotlyjs=True, full_html=True, config={"displayModeBar": False})
        command = [
            find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={folder}/profile",
            "--virtual-time-budget=10000", f"--window-size={WIDTH + 20},{HEIGHT + 20}",
            f"--screenshot={destination}", page.as_uri(),
        ]  # fmt: skip
        completed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if completed.returncode != 0 or not destination.is_file():
        raise RuntimeError(f"chromium could not screenshot {destination}: {completed.stderr.strip()[-1000:]}")
    return destination


def main(argv: list[str] | None = None) -> int:
    written = [
        screenshot(rooflines_figure(), IMAGE_DIR / "rooflines.png"),
        screenshot(v4_flash_cost_figure(), IMAGE_DIR / "v4_flash_cost.png"),
    ]
    for path in written:
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
