"""Torch implementations of every kernel (semantics: ``kernels_numba.reference``).

These are what a PyTorch MoE layer would call: ``torch.matmul``, a loop of matmuls over expert
groups, ``topk`` gating, ``argsort``-based permutation, ``scaled_dot_product_attention``.
They take and return torch tensors on any device; the timing harness keeps data resident. How many
operator calls each issues, and when :func:`attention` materialises its scores, is stated for the
timing model in :mod:`sim.calibration.devices` (``launch_count``, ``materializes_scores``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sim.calibration.devices import materializes_scores


def gemm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return torch.matmul(a, b, out=out)


def grouped_gemm(x: torch.Tensor, offsets: list[int], w: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """One matmul per non-empty group (``offsets`` as a host list to avoid device syncs)."""
    for g in range(w.shape[0]):
        lo, hi = offsets[g], offsets[g + 1]
        if hi > lo:
            torch.matmul(x[lo:hi], w[g], out=out[lo:hi])
    return out


def gating(
    logits: torch.Tensor,
    top_k: int,
    scoring: str,
    n_group: int,
    topk_group: int,
    bias: torch.Tensor,
    routed_scaling_factor: float,
    norm_topk_prob: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek MoEGate (HF ``modeling_deepseek.py``): scores, group-limited top-k, weights."""
    if scoring == "sigmoid":
        scores = logits.sigmoid()
    elif scoring == "softmax":
        scores = logits.softmax(dim=-1)
    else:
        raise ValueError(f"scoring must be 'softmax' or 'sigmoid', got {scoring!r}")
    choice = scores + bias
    t, e = logits.shape
    if n_group > 1:
        grouped = choice.view(t, n_group, e // n_group)
        if scoring == "sigmoid":
            group_score = grouped.topk(2, dim=-1).values.sum(dim=-1)
        else:
            group_score = grouped.amax(dim=-1)
        keep = group_score.topk(topk_group, dim=-1).indices
        mask = torch.zeros_like(group_score, dtype=torch.bool).scatter_(1, keep, True)
        choice = choice.masked_fill(~mask.repeat_interleave(e // n_group, dim=1), float("-inf"))
    idx = choice.topk(top_k, dim=-1, sorted=True).indices
    weights = scores.gather(1, idx)
    if norm_topk_prob:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return idx, weights * routed_scaling_factor


def permute(
    x: torch.Tensor, indices: torch.Tensor, num_experts: int, out: torch.Tensor | None = None
) -> tuple[torch.Tensor, ...]:
    """Stable sort of (token, choice) pairs by expert, then a row gather (into ``out`` if given:
    a preallocated buffer, as a serving engine keeps one)."""
    t, k = indices.shape
    flat = indices.reshape(-1)
    order = torch.argsort(flat, stable=True)
    source = torch.div(order, k, rounding_mode="floor")
    slot = torch.empty_like(order)
    slot[order] = torch.arange(t * k, device=indices.device)
    counts = torch.bincount(flat, minlength=num_experts)
    offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    rows = torch.index_select(x, 0, source, out=out) if out is not None else x.index_select(0, source)
    return rows, source, offsets, slot.view(t, k)


def unpermute(
    y_perm: torch.Tensor,
    slot: torch.Tensor,
    weights: torch.Tensor,
    out: torch.Tensor | None = None,
    workspace: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gather each token's k rows (into ``workspace`` if given) and combine them with its
    routing weights (a batched matvec, into ``out`` if given)."""
    t, k = slot.shape
    flat = slot.reshape(-1)
    if workspace is not None:
        rows = torch.index_select(y_perm, 0, flat, out=workspace.view(t * k, -1)).view(t, k, -1)
    else:
        rows = y_perm.index_select(0, flat).view(t, k, -1)
    w = weights.unsqueeze(1).to(rows.dtype)
    if out is not None:
        torch.bmm(w, rows, out=out.view(t, 1, -1))
        return out
    return torch.bmm(w, rows).squeeze(1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float) -> torch.Tensor:
    """Attention with GQA sharing and an end-aligned causal mask.

    When several query heads share a KV head, they are folded into the query rows of that
    head (``[B, Hkv, group * Sq, D]``), as FlashMLA does for MLA decode: one product per KV head
    instead of re-reading K and V per query head (``enable_gqa`` on the CPU expands K and V
    and is ~70x slower for MLA decode shapes). Equal query and value head dims go through
    ``scaled_dot_product_attention`` (fused on the CPU); unequal ones (MLA: 192/128, 576/512),
    which the fused CPU kernel does not take, through explicit matmul, softmax, matmul, as
    DeepSeek's reference inference code does (``einsum`` over the absorbed latent).
    """
    b, hq, sq, d = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    group = hq // hkv
    rows = q.reshape(b, hkv, group * sq, d)
    mask = None
    if causal and not (group == 1 and sq == skv):
        mask = _end_aligned_mask(sq, skv, group, q.device) if sq > 1 else None
    if materializes_scores(d, v.shape[3]):
        scores = torch.matmul(rows, k.transpose(-1, -2)).mul_(scale)
        if causal and sq > 1:
            scores.masked_fill_(~_end_aligned_mask(sq, skv, group, q.device), float("-inf"))
        out = torch.matmul(scores.softmax(dim=-1), v)
    elif causal and group == 1 and sq == skv:
        out = F.scaled_dot_product_attention(rows, k, v, is_causal=True, scale=scale)
    else:
        out = F.scaled_dot_product_attention(rows, k, v, attn_mask=mask, scale=scale)
    return out.reshape(b, hq, sq, v.shape[3])


def _end_aligned_mask(sq: int, skv: int, group: int, device: torch.device) -> torch.Tensor:
    """Boolean mask for rows ``(head in group, query)``: query ``i`` sees keys ``<= skv - sq + i``."""
    pos = (torch.arange(group * sq, device=device) % sq)[:, None] + (skv - sq)
    return torch.arange(skv, device=device)[None, :] <= pos
