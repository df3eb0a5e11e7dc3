"""Accounting against published figures. Each case names its source and its tolerance."""

from __future__ import annotations

import pytest

import moe

# (catalog name, published total, published active, total tolerance, active tolerance, source)
PUBLISHED = [
    (
        "deepseek-v3",
        671e9,
        37e9,
        0.01,
        0.03,
        "DeepSeek-V3 README / README_WEIGHTS.md: 671B total, 37B activated",
    ),
    ("deepseek-v2", 236e9, 21e9, 0.01, 0.03, "DeepSeek-V2 tech report (arXiv 2405.04434) p.12: 236B / 21B"),
    (
        "mixtral-8x7b",
        46.7e9,
        12.9e9,
        0.01,
        0.03,
        "Mistral AI 'Mixtral of experts' (arXiv 2401.04088): 46.7B / 12.9B",
    ),
    (
        "mixtral-8x22b",
        141e9,
        39e9,
        0.01,
        0.03,
        "Mistral AI Mixtral-8x22B announcement (Apr 2024): 141B / 39B",
    ),
    ("qwen3-235b-a22b", 235e9, 22e9, 0.01, 0.03, "Qwen3 model card / arXiv 2505.09388 Table 2: 235B / 22B"),
    ("qwen3-30b-a3b", 30.5e9, 3.3e9, 0.01, 0.03, "Qwen3 model card: 30.5B / 3.3B"),
    (
        "deepseek-v4-pro",
        1.6e12,
        49e9,
        0.03,
        0.03,
        "DeepSeek-V4 model card via reference deepseek_figures.md sec. 7 (second-hand, rounded): 1.6T / 49B",
    ),
]


@pytest.mark.parametrize(("name", "total", "active", "tol_total", "tol_active", "source"), PUBLISHED)
def test_published_parameter_counts(name, total, active, tol_total, tol_active, source):
    m = moe.get(name)
    assert abs(m.total_params / total - 1) <= tol_total, (source, m.total_params)
    assert abs(m.active_params / active - 1) <= tol_active, (source, m.active_params)


def test_v3_kv_cache_exact():
    # ISCA'25 "Insights into DeepSeek-V3" Table 1: 70.272 KB per token in BF16 = (512 + 64) x 61 x 2 B.
    m = moe.get("deepseek-v3")
    assert m.kv_cache_bytes_per_token(dtype="bf16", context_len=4096) == 70_272


@pytest.mark.parametrize(("name", "gflop"), [("deepseek-v3", 250.0), ("deepseek-v2", 155.0)])
def test_training_flops_per_token(name, gflop):
    # ISCA'25 Table 2: V3 250 GFLOP/token, V2 155 GFLOP/token; tolerance 5% at seq 4096, causal.
    m = moe.get(name)
    value = m.training_flops_per_token(seq_len=4096, causal=True) / 1e9
    assert abs(value / gflop - 1) <= 0.05, value
