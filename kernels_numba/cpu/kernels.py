"""Numba CPU kernels (``@njit``, ``prange`` over independent tiles). Semantics: ``reference``.

All kernels write into a caller-provided output (so tests can poison it first) and work in
float32 (this CPU has no bf16 arithmetic). Tiles: GEMMs split the output into blocks of
``BLOCK_M x BLOCK_N`` handled by one thread each, with a ``BLOCK_K`` loop inside so that the
panel of ``b`` stays in cache; the innermost loop runs along contiguous columns, which LLVM
vectorises.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

BLOCK_M = 64
BLOCK_N = 256
BLOCK_K = 128
SMALL_M = 8  # decode-sized GEMMs: thin row blocks so that column blocks carry the parallelism
GATING_CHUNK = 64  # tokens per parallel task of the gating kernel


@njit(cache=True, fastmath=True, inline="always")
def _tile(a, b, c, i0, i1, j0, j1, acc):  # type: ignore[no-untyped-def]
    """``c[i0:i1, j0:j1] = a[i0:i1] @ b[:, j0:j1]`` through the local accumulator ``acc``.

    Four rows at a time share each loaded row segment of ``b``; the innermost loop is a
    contiguous axpy that LLVM vectorises.
    """
    kdim = a.shape[1]
    nj = j1 - j0
    acc[:, :] = 0.0
    for k0 in range(0, kdim, BLOCK_K):
        k1 = min(k0 + BLOCK_K, kdim)
        i = i0
        while i + 4 <= i1:
            c0 = acc[i - i0]
            c1 = acc[i - i0 + 1]
            c2 = acc[i - i0 + 2]
            c3 = acc[i - i0 + 3]
            for kk in range(k0, k1):
                a0 = a[i, kk]
                a1 = a[i + 1, kk]
                a2 = a[i + 2, kk]
                a3 = a[i + 3, kk]
                brow = b[kk, j0:j1]
                for j in range(nj):
                    bj = brow[j]
                    c0[j] += a0 * bj
                    c1[j] += a1 * bj
                    c2[j] += a2 * bj
                    c3[j] += a3 * bj
            i += 4
        while i < i1:
            c0 = acc[i - i0]
            for kk in range(k0, k1):
                a0 = a[i, kk]
                brow = b[kk, j0:j1]
                for j in range(nj):
                    c0[j] += a0 * brow[j]
            i += 1
    for i in range(i0, i1):
        crow = acc[i - i0]
        for j in range(nj):
            c[i, j0 + j] = crow[j]


@njit(parallel=True, cache=True, fastmath=True)
def gemm(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    """``c[:] = a @ b`` for float32 ``a[M, K]``, ``b[K, N]``, ``c[M, N]``."""
    m = a.shape[0]
    n = b.shape[1]
    bm = SMALL_M if m <= SMALL_M else BLOCK_M
    nbm = (m + bm - 1) // bm
    nbn = (n + BLOCK_N - 1) // BLOCK_N
    for blk in prange(nbm * nbn):
        ib = blk // nbn
        jb = blk % nbn
        i0 = ib * bm
        j0 = jb * BLOCK_N
        acc = np.empty((bm, BLOCK_N), dtype=c.dtype)
        _tile(a, b, c, i0, min(i0 + bm, m), j0, min(j0 + BLOCK_N, n), acc)


@njit(parallel=True, cache=True, fastmath=True)
def grouped_gemm(x: np.ndarray, offsets: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:
    """``out[o[g]:o[g+1]] = x[o[g]:o[g+1]] @ w[g]`` for every group ``g`` (uneven, maybe empty).

    The work list is every (group, row block, column block) triple, so a skewed group is
    split over threads like any other rows.
    """
    groups = w.shape[0]
    n = w.shape[2]
    nbn = (n + BLOCK_N - 1) // BLOCK_N
    count = 0
    for g in range(groups):
        rows = offsets[g + 1] - offsets[g]
        count += (rows + BLOCK_M - 1) // BLOCK_M
    task_group = np.empty(count, dtype=np.int64)
    task_row = np.empty(count, dtype=np.int64)
    t = 0
    for g in range(groups):
        for r0 in range(offsets[g], offsets[g + 1], BLOCK_M):
            task_group[t] = g
            task_row[t] = r0
            t += 1
    for blk in prange(count * nbn):
        task = blk // nbn
        jb = blk % nbn
        g = task_group[task]
        i0 = task_row[task]
        i1 = min(i0 + BLOCK_M, offsets[g + 1])
        j0 = jb * BLOCK_N
        acc = np.empty((BLOCK_M, BLOCK_N), dtype=out.dtype)
        _tile(x, w[g], out, i0, i1, j0, min(j0 + BLOCK_N, n), acc)


@njit(cache=True, fastmath=False, inline="always")
def _gate_token(
    logits,
    bias,
    top_k,
    use_sigmoid,
    n_group,
    topk_group,
    routed_scaling_factor,  # type: ignore[no-untyped-def]
    norm_topk_prob,
    indices,
    weights,
    t,
    per_group,
    scores,
    choice,
    group_score,
    keep,
):
    """One token of :func:`gating` with caller-provided scratch arrays."""
    e = logits.shape[1]
    if use_sigmoid:
        for j in range(e):
            scores[j] = 1.0 / (1.0 + np.exp(-logits[t, j]))
    else:
        top = logits[t, 0]
        for j in range(1, e):
            top = max(top, logits[t, j])
        total = 0.0
        for j in range(e):
            scores[j] = np.exp(logits[t, j] - top)
            total += scores[j]
        for j in range(e):
            scores[j] = scores[j] / total
    for j in range(e):
        choice[j] = scores[j] + bias[j]
    if n_group > 1:
        for g in range(n_group):
            best = -np.inf
            second = -np.inf
            for j in range(g * per_group, (g + 1) * per_group):
                v = choice[j]
                if v > best:
                    second = best
                    best = v
                elif v > second:
                    second = v
            group_score[g] = best + second if use_sigmoid else best
        keep[:] = False
        for _ in range(topk_group):
            arg = -1
            best = -np.inf
            for g in range(n_group):
                if not keep[g] and group_score[g] > best:
                    best = group_score[g]
                    arg = g
            keep[arg] = True
        for g in range(n_group):
            if not keep[g]:
                for j in range(g * per_group, (g + 1) * per_group):
                    choice[j] = -np.inf
    total = 0.0
    for s in range(top_k):
        arg = 0
        best = -np.inf
        for j in range(e):
            if choice[j] > best:
                best = choice[j]
                arg = j
        choice[arg] = -np.inf
        indices[t, s] = arg
        weights[t, s] = scores[arg]
        total += scores[arg]
    scale = routed_scaling_factor / total if norm_topk_prob else routed_scaling_factor
    for s in range(top_k):
        weights[t, s] = weights[t, s] * scale


@njit(parallel=True, cache=True, fastmath=False)
def gating(
    logits: np.ndarray,
    bias: np.ndarray,
    top_k: int,
    use_sigmoid: bool,
    n_group: int,
    topk_group: int,
    routed_scaling_factor: float,
    norm_topk_prob: bool,
    indices: np.ndarray,
    weights: np.ndarray,
) -> None:
    """DeepSeek top-k gating per token (one token per loop iteration, tokens in parallel)."""
    t_count, e = logits.shape
    per_group = e // n_group
    chunks = (t_count + GATING_CHUNK - 1) // GATING_CHUNK
    for chunk in prange(chunks):
        # scratch once per chunk of tokens, not per token
        scores = np.empty(e, dtype=np.float32)
        choice = np.empty(e, dtype=np.float32)
        group_score = np.empty(n_group, dtype=np.float32)
        keep = np.zeros(n_group, dtype=np.bool_)
        for t in range(chunk * GATING_CHUNK, min((chunk + 1) * GATING_CHUNK, t_count)):
            _gate_token(
                logits,
                bias,
                top_k,
                use_sigmoid,
                n_group,
                topk_group,
                routed_scaling_factor,
                norm_topk_prob,
                indices,
                weights,
                t,
                per_group,
                scores,
                choice,
                group_score,
                keep,
            )


@njit(cache=True)
def route_slots(
    indices: np.ndarray, num_experts: int, offsets: np.ndarray, slot: np.ndarray, source: np.ndarray
) -> None:
    """Counting sort of (token, choice) pairs by expert: offsets, slot per pair, source token."""
    t_count, k = indices.shape
    counts = np.zeros(num_experts, dtype=np.int64)
    for t in range(t_count):
        for j in range(k):
            counts[indices[t, j]] += 1
    offsets[0] = 0
    for e in range(num_experts):
        offsets[e + 1] = offsets[e] + counts[e]
    fill = offsets[:-1].copy()
    for t in range(t_count):
        for j in range(k):
            e = indices[t, j]
            slot[t, j] = fill[e]
            source[fill[e]] = t
            fill[e] += 1


@njit(parallel=True, cache=True)
def permute_rows(x: np.ndarray, source: np.ndarray, out: np.ndarray) -> None:
    """``out[r] = x[source[r]]``: rows copied in parallel."""
    h = x.shape[1]
    for r in prange(source.shape[0]):
        src = source[r]
        for c in range(h):
            out[r, c] = x[src, c]


@njit(parallel=True, cache=True, fastmath=True)
def unpermute(y_perm: np.ndarray, slot: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
    """``out[t] = sum_j weights[t, j] * y_perm[slot[t, j]]`` (tokens in parallel)."""
    t_count, k = slot.shape
    h = y_perm.shape[1]
    for t in prange(t_count):
        for c in range(h):
            out[t, c] = 0.0
        for j in range(k):
            w = weights[t, j]
            r = slot[t, j]
            for c in range(h):
                out[t, c] += w * y_perm[r, c]


@njit(parallel=True, cache=True, fastmath=True)
def attention(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool, scale: float, out: np.ndarray
) -> None:
    """Softmax attention with GQA/MQA head sharing and end-aligned causal mask.

    One (batch, query head, query) row per iteration: scores against the visible keys, max,
    exponentials, then the weighted sum of values; rows run in parallel.
    """
    b_count, hq, sq, d = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    dv = v.shape[3]
    group = hq // hkv
    for row in prange(b_count * hq * sq):
        b = row // (hq * sq)
        h = (row // sq) % hq
        i = row % sq
        kvh = h // group
        visible = skv - sq + i + 1 if causal else skv
        visible = max(0, min(visible, skv))
        s = np.empty(max(visible, 1), dtype=np.float32)
        top = -np.inf
        for j in range(visible):
            acc = 0.0
            for c in range(d):
                acc += q[b, h, i, c] * k[b, kvh, j, c]
            s[j] = acc * scale
            top = max(top, s[j])
        total = 0.0
        for j in range(visible):
            s[j] = np.exp(s[j] - top)
            total += s[j]
        for c in range(dv):
            out[b, h, i, c] = 0.0
        for j in range(visible):
            p = s[j] / total
            for c in range(dv):
                out[b, h, i, c] += p * v[b, kvh, j, c]
