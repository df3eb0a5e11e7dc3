"""Published figures the notebooks and the README compare against, each with its source and tolerance.

Copied from ``reference/deepseek_figures.json`` and ``reference/measured_calibration.json`` (which
cite the papers and repositories below); the serving figures come with their configurations from
``sim/scenarios/*.toml``. These are predictions to check, never fitting targets: nothing in ``sim``
reads this module. Tolerances are the ones the project's issues set.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sim.cost import api_price
from sim.cost import api_prices as all_api_prices

V3_REPORT = "DeepSeek-V3 Technical Report (arXiv 2412.19437)"
ISCA25 = "ISCA'25 'Insights into DeepSeek-V3' (arXiv 2505.09343 v2)"
DAY6 = "deepseek-ai/open-infra-index, 202502OpenSourceWeek day 6 (V3/R1 inference system overview)"
V2_REPORT = "DeepSeek-V2 Technical Report (arXiv 2405.04434)"
PROFILE_DATA = "deepseek-ai/profile-data (H800 inference profiles)"


@dataclass(frozen=True)
class PublishedFigure:
    """One published number: value, unit, where it comes from, and how close a prediction must be.

    ``tolerance`` is relative (0.15 = within 15%) unless ``absolute`` is set, in which case it is
    in the figure's own unit (MFU: 0.05 = five percentage points). ``lower_bound`` marks a figure
    published as "over X": the system did at least X, so a prediction is within when it reaches X,
    and ``tolerance`` is 0 (a prediction under the least the system did is short of it by at least
    that much, however far above X the real figure was).
    """

    key: str
    description: str
    value: float
    unit: str
    source: str
    tolerance: float
    absolute: bool = False
    lower_bound: bool = False

    def __post_init__(self) -> None:
        if self.lower_bound and self.tolerance != 0.0:
            raise ValueError(
                f"{self.key}: a lower bound is met or not; give tolerance 0.0, not {self.tolerance}."
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "description": self.description,
            "value": self.value,
            "unit": self.unit,
            "source": self.source,
            "tolerance": self.tolerance,
            "absolute": self.absolute,
            "lower_bound": self.lower_bound,
        }


def _scenario_figures(*names: str) -> list[PublishedFigure]:
    """The published figures of the named scenarios (``sim.scenarios``), in file order."""
    from sim import scenarios

    return [
        PublishedFigure(
            f.key, f.description, f.value, f.unit, f.source, f.tolerance, f.absolute, f.lower_bound
        )
        for name in names
        for f in scenarios.get(name).figures
    ]


def _figures() -> list[PublishedFigure]:
    """Every published figure, in the README table's order."""
    return [
        # Accounting (DESIGN.md validation ladder, level 1).
        PublishedFigure(
            "v3_total_params", "DeepSeek-V3 total parameters", 671e9, "params", f"{V3_REPORT}, abstract", 0.01
        ),
        PublishedFigure(
            "v3_active_params",
            "DeepSeek-V3 active parameters per token",
            37e9,
            "params",
            f"{V3_REPORT}, abstract",
            0.03,
        ),
        PublishedFigure(
            "v3_kv_bytes_per_token",
            "DeepSeek-V3 KV cache per token (BF16)",
            70272,
            "bytes",
            f"{ISCA25}, Table 1",
            0.0,
        ),
        PublishedFigure(
            "v3_training_gflop_per_token",
            "DeepSeek-V3 training compute per token (seq 4096)",
            250,
            "GFLOP",
            f"{ISCA25}, Table 2",
            0.05,
        ),
        PublishedFigure(
            "v2_total_params", "DeepSeek-V2 total parameters", 236e9, "params", f"{V2_REPORT}, p.12", 0.01
        ),
        PublishedFigure(
            "v2_active_params",
            "DeepSeek-V2 active parameters per token",
            21e9,
            "params",
            f"{V2_REPORT}, p.12",
            0.03,
        ),
        PublishedFigure(
            "mixtral_8x7b_total_params",
            "Mixtral-8x7B total parameters",
            46.7e9,
            "params",
            "Mistral AI, 'Mixtral of experts' (arXiv 2401.04088)",
            0.01,
        ),
        PublishedFigure(
            "mixtral_8x7b_active_params",
            "Mixtral-8x7B active parameters",
            12.9e9,
            "params",
            "Mistral AI, 'Mixtral of experts' (arXiv 2401.04088)",
            0.03,
        ),
        PublishedFigure(
            "v4_flash_total_params",
            "DeepSeek-V4-Flash total parameters",
            284e9,
            "params",
            "DeepSeek-V4 release (second-hand, rounded)",
            0.03,
        ),
        PublishedFigure(
            "v4_pro_total_params",
            "DeepSeek-V4-Pro total parameters",
            1.6e12,
            "params",
            "DeepSeek-V4 release (second-hand, rounded)",
            0.03,
        ),
        # Training, end to end (level 4).
        # the figures of V3's pre-training run, with its plan (sim/scenarios/v3_pretraining.toml)
        *_scenario_figures("v3-pretraining"),
        PublishedFigure(
            "v3_total_gpu_hours",
            "DeepSeek-V3 whole run (pre-training, context extension, post-training)",
            2788e3,
            "GPU-hours",
            f"{V3_REPORT}, Table 1",
            0.15,
        ),
        PublishedFigure(
            "v3_context_extension_gpu_hours",
            "DeepSeek-V3 context extension (32K and 128K)",
            119e3,
            "GPU-hours",
            f"{V3_REPORT}, Table 1",
            0.25,
        ),
        # The trace the four trace-fitted kernel families come from (sim.calibration.published): one
        # DualPipe chunk pair of 4 MoE layers on rank 0 of 64, span of its kernels / 4. A consistency
        # check (reports.validation.FIGURE_GROUPS), not a prediction. Tolerance: the training
        # package's own test of the pair.
        PublishedFigure(
            "v3_layer_pair_span_ms",
            "DeepSeek-V3 one MoE layer's overlapped forward + backward (trace span / 4)",
            32.253,
            "ms",
            "deepseek-ai/profile-data train.json, H800 V3 training trace "
            "(reference/deepseek_v3_train_profile_h800.json.gz)",
            0.20,
        ),
        PublishedFigure(
            "v2_gpu_hours_per_trillion",
            "DeepSeek-V2 H800 GPU-hours per trillion tokens",
            172.8e3,
            "GPU-hours",
            f"{V2_REPORT}, p.16",
            0.15,
        ),
        # Serving, end to end (level 4).
        # Serving, end to end (level 4): the figures of the scenarios they were published for
        # (sim/scenarios/*.toml carries each with its configuration, source and tolerance).
        *_scenario_figures("profile-prefill", "profile-decode", "day6"),
        PublishedFigure(
            "isca_ep_step_us", "ISCA'25 decode EP step over 400G IB", 120.96, "us", f"{ISCA25}, p.5", 0.02
        ),
        PublishedFigure(
            "isca_tpot_ms",
            "ISCA'25 decode time per output token over 400G IB",
            14.76,
            "ms",
            f"{ISCA25}, p.5",
            0.02,
        ),
        *_scenario_figures("v2-generation"),
    ]


@functools.cache
def _published() -> dict[str, PublishedFigure]:
    return {figure.key: figure for figure in _figures()}


# DeepSeek-V3's training step by DualPipe phase, seconds (ISCA'25 Table 4, 2,048 H800, MPFT network);
# keys as the training simulator names them in ``phases_s``. The sum, 19.91 s, is the published step.
V3_STEP_PHASES_S: dict[str, float] = {
    "1F": 1.13,
    "bubble": 2.06,
    "1B": 1.99,
    "1W": 0.48,
    "1F1B": 13.95,
    "opt": 0.29,
}
V3_STEP_PHASES_SOURCE = f"{ISCA25}, Table 4"

# Day 6's fleet-level figures (deepseek_figures.md section 3.2), shown beside the simulation in
# notebook 6 rather than checked against a tolerance: they are 24-hour averages of a fleet sized for
# its peak, not the capacity of an instance. $0.060 is 16 USD per node-hour over 73.7k input tokens/s.
DAY6_FLEET: dict[str, float] = {
    "prefill_input_tokens_per_s_per_node": 73_700.0,  # counting cache hits
    "usd_per_million_input": 16 / 3600 / 73_700 * 1e6,
    "mean_nodes": 226.75,
    "peak_nodes": 278.0,
    "min_nodes": 68.0,
    "daily_cost_usd": 87_072.0,  # 226.75 nodes x 8 GPUs x 24 h x 2 USD
}
DAY6_FLEET_SOURCE = f"{DAY6} (deepseek_figures.md section 3.2)"


def published(key: str) -> PublishedFigure:
    """A published figure by key; unknown keys raise ValueError listing the known ones."""
    figures = _published()
    try:
        return figures[key]
    except KeyError:
        raise ValueError(f"unknown published figure {key!r}; known: {sorted(figures)}.") from None


def api_prices(model_name: str) -> dict[str, float] | None:
    """DeepSeek's API list prices for a catalog model name (``cache_hit``, ``cache_miss``, ``output``,
    USD per million tokens; sim/data/api_prices.toml), or None when it has none."""
    price = api_price(model_name)
    if price is None:
        return None
    return {
        "cache_hit": price.usd_per_million_input_cache_hit,
        "cache_miss": price.usd_per_million_input_cache_miss,
        "output": price.usd_per_million_output,
    }


def __getattr__(name: str) -> Any:
    """``PUBLISHED`` (key -> figure), ``API_PRICES_USD_PER_MILLION`` (model -> prices) and
    ``API_PRICES_SOURCE``, read from their data files when first used, not on import."""
    if name == "PUBLISHED":
        return dict(_published())
    if name == "API_PRICES_USD_PER_MILLION":
        return {p.model: api_prices(p.model) for p in all_api_prices()[0]}
    if name == "API_PRICES_SOURCE":
        return all_api_prices()[1]
    raise AttributeError(f"module 'reports.published' has no attribute {name!r}")
