"""The benchmark grid: MoE-relevant shapes per kernel family, scaled to fit a small CPU.

Each case is a :class:`Case`: the family, the ``shape`` dict exactly as ``sim.timing`` keys its
measurements (so a measured time can be looked up for that exact shape), and ``config`` for
what the timing signature does not carry (scoring function, KV heads, experts). Shapes mirror
DeepSeek-V3 roles at reduced width: decode-sized M (1-16 rows), prefill-sized M (256-1024),
expert counts 8-64 with uniform and Zipf-skewed loads, V3 (sigmoid, 8 groups, top-4 groups,
top-8) / V2 (softmax, 8 groups, top-3, top-6) / Mixtral (softmax, top-2) gating, prefill
attention with head dims 64, 128, 256 and MLA's 192/128 (plus one chunk over a cached prefix),
and decode including MLA-shaped decode (one latent KV head, d_qk 576, d_v 512).

``validate`` holds out every other shape in sorted order (``sim.calibration.split_fit_holdout``).
A factor crossed innermost with an even number of levels would then fall on one side whole (the
fit never sees it), so the grouped (n, k) pairs and the prefill head dims come in odd counts per
implementation's family; ``tests/kernels_numba`` checks that every level lies on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Case:
    family: str
    shape: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        import json

        return json.dumps({"family": self.family, "shape": self.shape, "config": self.config}, sort_keys=True)


def group_sizes(total_rows: int, num_groups: int, skew: float, seed: int) -> list[int]:
    """Rows per expert: a multinomial draw over Zipf(``skew``) popularity (0 = uniform), seeded."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, num_groups + 1, dtype=float) ** skew
    draw = rng.multinomial(total_rows, popularity / popularity.sum())
    return [int(x) for x in draw]


def grid(quick: bool = False) -> list[Case]:
    """All benchmark cases; ``quick`` is a tiny grid for tests of the harness itself."""
    cases: list[Case] = []
    gemm_m: tuple[int, ...]
    gemm_nk: tuple[tuple[int, int], ...]
    grouped: tuple[tuple[int, int, float], ...]
    grouped_nk: tuple[tuple[int, int], ...]
    gating_cfg: tuple[tuple[str, int, int, int, int], ...]
    gating_tokens: tuple[int, ...]
    permute_tokens: tuple[int, ...]
    permute_hidden: tuple[int, ...]
    prefill: tuple[tuple[int, int, int, int], ...]
    decode: tuple[tuple[int, int, int, int, int, int], ...]
    if quick:
        gemm_m, gemm_nk = (1, 64), ((256, 128),)
        grouped = ((64, 4, 0.0), (64, 4, 1.2))
        grouped_nk = ((128, 64),)
        gating_cfg = (("sigmoid", 64, 8, 8, 4),)
        gating_tokens = (16,)
        permute_tokens = (16,)
        permute_hidden = (64,)
        prefill = ((64, 64, 32, 32),)
        decode = ((2, 64, 8, 2, 32, 32),)
    else:
        gemm_m = (1, 4, 16, 64, 256, 1024)
        gemm_nk = ((1024, 1024), (2048, 512), (512, 2048))
        grouped = (
            (64, 8, 0.0),
            (64, 8, 1.2),
            (512, 16, 0.0),
            (512, 16, 1.2),
            (2048, 32, 0.0),
            (2048, 32, 1.2),
            (2048, 64, 1.2),
        )
        grouped_nk = ((512, 1024), (1024, 512), (1024, 1024))
        gating_cfg = (
            ("sigmoid", 256, 8, 8, 4),
            ("sigmoid", 64, 8, 8, 4),
            ("softmax", 160, 6, 8, 3),
            ("softmax", 8, 2, 1, 1),
        )
        gating_tokens = (64, 1024, 8192)
        permute_tokens = (64, 512, 4096)
        permute_hidden = (1024, 2048)
        prefill = tuple(
            (seq, seq, qk, v)
            for seq in (128, 256, 512, 1024)
            for qk, v in ((64, 64), (128, 128), (192, 128), (256, 256))
        ) + ((512, 1024, 192, 128),)  # a 512-token chunk over a cached 512-token prefix, MLA prefill dims
        decode = (
            (4, 512, 16, 1, 576, 512),
            (4, 2048, 16, 1, 576, 512),
            (16, 1024, 16, 1, 576, 512),
            (16, 4096, 16, 1, 576, 512),
            (4, 1024, 32, 8, 128, 128),
            (16, 4096, 32, 8, 128, 128),
            (32, 2048, 32, 8, 128, 128),
            (8, 8192, 32, 8, 128, 128),
        )
    for m in gemm_m:
        for n, k in gemm_nk:
            cases.append(Case("gemm", {"m": m, "n": n, "k": k, "dtype": "fp32"}))
    for i, (rows, groups, skew) in enumerate(grouped):
        for n, k in grouped_nk:
            sizes = group_sizes(rows, groups, skew, seed=1000 + i)
            cases.append(
                Case("grouped_gemm", {"group_sizes": sizes, "n": n, "k": k, "dtype": "fp32"}, {"skew": skew})
            )
    for scoring, experts, top_k, n_group, topk_group in gating_cfg:
        for tokens in gating_tokens:
            cases.append(
                Case(
                    "gating",
                    {"num_tokens": tokens, "num_experts": experts, "top_k": top_k},
                    {"scoring": scoring, "n_group": n_group, "topk_group": topk_group},
                )
            )
    for tokens in permute_tokens:
        for hidden in permute_hidden:
            for combine in (False, True):
                cases.append(
                    Case(
                        "permute",
                        {
                            "num_tokens": tokens,
                            "hidden": hidden,
                            "top_k": 8,
                            "dtype": "fp32",
                            "combine": combine,
                        },
                        {"num_experts": 64, "skew": 1.2},
                    )
                )
    for q_len, kv_len, qk_dim, v_dim in prefill:
        cases.append(
            Case(
                "attention_prefill",
                {
                    "batch": 1,
                    "q_len": q_len,
                    "kv_len": kv_len,
                    "num_heads": 8,
                    "qk_head_dim": qk_dim,
                    "v_head_dim": v_dim,
                    "causal": True,
                    "dtype": "fp32",
                },
                {"kv_heads": 8},
            )
        )
    for batch, kv_len, heads, kv_heads, dqk, dv in decode:
        cases.append(
            Case(
                "attention_decode",
                {
                    "batch": batch,
                    "q_len": 1,
                    "kv_len": kv_len,
                    "num_heads": heads,
                    "qk_head_dim": dqk,
                    "v_head_dim": dv,
                    "causal": True,
                    "dtype": "fp32",
                },
                {"kv_heads": kv_heads},
            )
        )
    return cases
