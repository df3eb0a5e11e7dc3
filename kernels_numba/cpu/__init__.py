"""Numba CPU implementations with a common calling convention (see ``kernels_numba.api``)."""

from __future__ import annotations

import numpy as np

from kernels_numba.cpu import kernels as _k


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    _k.gemm(a, b, out)
    return out


def grouped_gemm(x: np.ndarray, offsets: np.ndarray, w: np.ndarray, out: np.ndarray) -> np.ndarray:
    _k.grouped_gemm(x, offsets, w, out)
    return out


def gating(
    logits: np.ndarray,
    top_k: int,
    scoring: str,
    n_group: int,
    topk_group: int,
    bias: np.ndarray,
    routed_scaling_factor: float,
    norm_topk_prob: bool,
    indices: np.ndarray,
    weights: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    _k.gating(
        logits,
        bias,
        top_k,
        scoring == "sigmoid",
        n_group,
        topk_group,
        routed_scaling_factor,
        norm_topk_prob,
        indices,
        weights,
    )
    return indices, weights


def permute(
    x: np.ndarray, indices: np.ndarray, num_experts: int, out: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t, k = indices.shape
    offsets = np.empty(num_experts + 1, dtype=np.int64)
    slot = np.empty((t, k), dtype=np.int64)
    source = np.empty(t * k, dtype=np.int64)
    _k.route_slots(indices, num_experts, offsets, slot, source)
    _k.permute_rows(x, source, out)
    return out, source, offsets, slot


def unpermute(y_perm: np.ndarray, slot: np.ndarray, weights: np.ndarray, out: np.ndarray) -> np.ndarray:
    _k.unpermute(y_perm, slot, weights, out)
    return out


def attention(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool, scale: float, out: np.ndarray
) -> np.ndarray:
    _k.attention(q, k, v, causal, float(scale), out)
    return out
