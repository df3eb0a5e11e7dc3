"""Float64 numpy references for every kernel: the ground truth of the correctness tests.

Semantics shared by all implementations:

* ``gemm(a, b)``: ``a[M, K] @ b[K, N]``.
* ``grouped_gemm(x, offsets, w)``: rows ``offsets[g]:offsets[g+1]`` of ``x[T, K]`` times
  ``w[g][K, N]`` (rows already in expert-contiguous order; groups may be empty or uneven).
* ``gating(logits, top_k, scoring, n_group, topk_group, bias, routed_scaling_factor,
  norm_topk_prob)``: DeepSeek routing. Scores: ``softmax`` over experts (V2) or ``sigmoid``
  (V3). Selection uses ``scores + bias`` (V3's auxiliary-loss-free bias; zero if None). With
  groups: a group's score is its best expert (softmax, V2 "group_limited_greedy") or the sum of
  its two best (sigmoid, V3 "noaux_tc"); only the ``topk_group`` best groups are eligible; then
  top-k experts among them. Weights are the un-biased scores of the chosen experts, divided by
  their sum when ``norm_topk_prob``, times ``routed_scaling_factor``. Output: indices sorted by
  descending selection score, and weights. (DeepSeek-V3 HF ``modeling_deepseek.py``, MoEGate.)
* ``permute(x, indices, num_experts)``: rows of ``x`` copied to expert-contiguous order
  (expert-major, token order inside an expert); returns ``(x_perm, source_token, offsets,
  slot)``, ``slot[t, j]`` being the row of ``(t, indices[t, j])`` in ``x_perm``.
* ``unpermute(y_perm, slot, weights)``: ``out[t] = sum_j weights[t, j] * y_perm[slot[t, j]]``.
* ``attention(q, k, v, causal, scale)``: ``q[B, Hq, Sq, D]``, ``k[B, Hkv, Skv, D]``,
  ``v[B, Hkv, Skv, Dv]``, ``Hq`` a multiple of ``Hkv`` (GQA / MQA; MLA decode in absorbed form
  is MQA with ``Hkv = 1``, ``D = 576``, ``Dv = 512``). Query ``i`` sits at position
  ``Skv - Sq + i`` and, when causal, sees keys ``0 .. Skv - Sq + i``.
"""

from __future__ import annotations

import numpy as np


def gemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) @ b.astype(np.float64)


def grouped_gemm(x: np.ndarray, offsets: np.ndarray, w: np.ndarray) -> np.ndarray:
    out = np.zeros((x.shape[0], w.shape[2]), dtype=np.float64)
    for g in range(w.shape[0]):
        lo, hi = int(offsets[g]), int(offsets[g + 1])
        out[lo:hi] = x[lo:hi].astype(np.float64) @ w[g].astype(np.float64)
    return out


def gating(
    logits: np.ndarray,
    top_k: int,
    scoring: str = "sigmoid",
    n_group: int = 1,
    topk_group: int = 1,
    bias: np.ndarray | None = None,
    routed_scaling_factor: float = 1.0,
    norm_topk_prob: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    x = logits.astype(np.float64)
    t, e = x.shape
    if scoring == "softmax":
        z = np.exp(x - x.max(axis=1, keepdims=True))
        scores = z / z.sum(axis=1, keepdims=True)
    elif scoring == "sigmoid":
        scores = 1.0 / (1.0 + np.exp(-x))
    else:
        raise ValueError(f"scoring must be 'softmax' or 'sigmoid', got {scoring!r}")
    choice = scores + (0.0 if bias is None else bias.astype(np.float64)[None, :])
    if n_group > 1:
        grouped = choice.reshape(t, n_group, e // n_group)
        if scoring == "sigmoid":
            group_score = np.sort(grouped, axis=2)[:, :, -2:].sum(axis=2)
        else:
            group_score = grouped.max(axis=2)
        keep = np.argsort(-group_score, axis=1, kind="stable")[:, :topk_group]
        mask = np.zeros((t, n_group), dtype=bool)
        np.put_along_axis(mask, keep, True, axis=1)
        choice = np.where(np.repeat(mask, e // n_group, axis=1), choice, -np.inf)
    idx = np.argsort(-choice, axis=1, kind="stable")[:, :top_k]
    weights = np.take_along_axis(scores, idx, axis=1)
    if norm_topk_prob:
        weights = weights / weights.sum(axis=1, keepdims=True)
    return idx.astype(np.int64), weights * routed_scaling_factor


def permute(x: np.ndarray, indices: np.ndarray, num_experts: int) -> tuple[np.ndarray, ...]:
    t, k = indices.shape
    flat_expert = indices.reshape(-1)
    order = np.argsort(flat_expert, kind="stable")  # expert-major, token order inside
    source_token = order // k
    slot = np.empty(t * k, dtype=np.int64)
    slot[order] = np.arange(t * k)
    counts = np.bincount(flat_expert, minlength=num_experts)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return x.astype(np.float64)[source_token], source_token.astype(np.int64), offsets, slot.reshape(t, k)


def unpermute(y_perm: np.ndarray, slot: np.ndarray, weights: np.ndarray) -> np.ndarray:
    rows = y_perm.astype(np.float64)[slot]  # [T, k, H]
    return np.einsum("tk,tkh->th", weights.astype(np.float64), rows)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool, scale: float) -> np.ndarray:
    b, hq, sq, _ = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    group = hq // hkv
    kk = np.repeat(k.astype(np.float64), group, axis=1)
    vv = np.repeat(v.astype(np.float64), group, axis=1)
    s = np.einsum("bhqd,bhkd->bhqk", q.astype(np.float64), kk) * scale
    if causal:
        pos_q = np.arange(sq)[:, None] + (skv - sq)
        s = np.where(np.arange(skv)[None, :] <= pos_q, s, -np.inf)
    s = s - s.max(axis=3, keepdims=True)
    p = np.exp(s)
    p = p / p.sum(axis=3, keepdims=True)
    return np.einsum("bhqk,bhkd->bhqd", p, vv)
