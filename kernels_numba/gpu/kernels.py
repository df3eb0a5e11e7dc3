# mypy: ignore-errors
# (kernel bodies are the Numba-CUDA dialect: cuda.threadIdx and friends are typed for the host API)
"""Numba-CUDA kernels: shared-memory tiled GEMMs, gating, permute/combine, flash-style attention.

Semantics follow ``kernels_numba.reference``. Each ``launch_*`` function takes device arrays
(``cuda.to_device``) and launches asynchronously, so the harness can time it with CUDA
events; the ``kernels_numba.gpu`` package wraps them for numpy in, numpy out. All kernels run
unchanged under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which the tests use.

Design:

* GEMM / grouped GEMM: a 32 x 32 output tile per block of 16 x 16 threads, each thread
  accumulating a 2 x 2 register sub-tile; A and B panels of depth 16 staged through shared
  memory. Grouped GEMM walks a host-built table of (group, first row) tiles, so uneven and
  empty groups cost exactly their padded tiles (the contiguous layout of DeepGEMM). A dense
  GEMM is the same kernel over a single group.
* Gating: one thread per token, scores in a per-thread local array (E is a compile-time
  constant of the specialised kernel).
* Permute: a histogram kernel (atomics), an exclusive scan of the E counts, a scatter kernel
  that claims slots with atomics, then one block per row copying the hidden vector; combine:
  one block per token, threads across the hidden dimension.
* Attention: one block per (batch, KV head, tile of 16 query rows), where the rows are the
  query heads sharing that KV head times the query positions (so MLA decode, 128 heads on one
  latent KV head, fills a block). K and V tiles of 16 keys pass through one shared buffer; the
  softmax is computed online (running max and sum per row, FlashAttention-2 style).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from numba import cuda, float32, int64

TILE = 32  # output tile edge (GEMMs)
TILE_K = 16  # depth of the shared panels
THREADS = 16  # threads per tile edge; each thread owns a 2 x 2 sub-tile
ATT_ROWS = 16  # query rows per attention block
ATT_COLS = 8  # threads across keys / value columns per row
ATT_KEYS = 16  # keys per shared K/V tile
COPY_THREADS = 128


@cuda.jit
def _grouped_tiles(x, w, out, task_group, task_row, task_end, m_tiles):  # type: ignore[no-untyped-def]
    """Grouped GEMM: block (task, column tile) computes rows task_row..task_end of group g."""
    sa = cuda.shared.array((TILE, TILE_K), dtype=float32)
    sb = cuda.shared.array((TILE_K, TILE), dtype=float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    task = cuda.blockIdx.x
    if task >= m_tiles:
        return
    g = task_group[task]
    row0 = task_row[task]
    row_end = task_end[task]
    col0 = cuda.blockIdx.y * TILE
    kdim = x.shape[1]
    n = w.shape[2]
    acc00 = float32(0.0)
    acc01 = float32(0.0)
    acc10 = float32(0.0)
    acc11 = float32(0.0)
    lin = ty * THREADS + tx
    for k0 in range(0, kdim, TILE_K):
        for rep in range(2):
            idx = lin + rep * THREADS * THREADS
            ar = idx // TILE_K
            ac = idx % TILE_K
            gr = row0 + ar
            gc = k0 + ac
            sa[ar, ac] = x[gr, gc] if (gr < row_end and gc < kdim) else float32(0.0)
            br = idx // TILE
            bc = idx % TILE
            gr = k0 + br
            gc = col0 + bc
            sb[br, bc] = w[g, gr, gc] if (gr < kdim and gc < n) else float32(0.0)
        cuda.syncthreads()
        for kk in range(TILE_K):
            a0 = sa[ty, kk]
            a1 = sa[ty + THREADS, kk]
            b0 = sb[kk, tx]
            b1 = sb[kk, tx + THREADS]
            acc00 += a0 * b0
            acc01 += a0 * b1
            acc10 += a1 * b0
            acc11 += a1 * b1
        cuda.syncthreads()
    r0 = row0 + ty
    r1 = row0 + ty + THREADS
    c0 = col0 + tx
    c1 = col0 + tx + THREADS
    if r0 < row_end:
        if c0 < n:
            out[r0, c0] = acc00
        if c1 < n:
            out[r0, c1] = acc01
    if r1 < row_end:
        if c0 < n:
            out[r1, c0] = acc10
        if c1 < n:
            out[r1, c1] = acc11


def gemm_tasks(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group, first row, end row) of every 32-row tile: a dense GEMM is one group."""
    return grouped_tasks(np.array([0, m], dtype=np.int64))


def grouped_tasks(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group, first row, end row) of every 32-row tile of every non-empty group."""
    groups, rows, ends = [], [], []
    for g in range(len(offsets) - 1):
        lo, hi = int(offsets[g]), int(offsets[g + 1])
        for r in range(lo, hi, TILE):
            groups.append(g)
            rows.append(r)
            ends.append(min(r + TILE, hi))
    return (
        np.asarray(groups, dtype=np.int64),
        np.asarray(rows, dtype=np.int64),
        np.asarray(ends, dtype=np.int64),
    )


def launch_gemm(a: Any, b: Any, c: Any, tasks: tuple[Any, Any, Any], stream: Any = 0) -> None:
    """C = A @ B with the grouped kernel over a single group (B viewed as one expert's weights)."""
    launch_grouped_gemm(a, b.reshape(1, b.shape[0], b.shape[1]), c, tasks, stream)


def launch_grouped_gemm(x: Any, w: Any, out: Any, tasks: tuple[Any, Any, Any], stream: Any = 0) -> None:
    m_tiles = tasks[0].shape[0]
    grid = (max(1, m_tiles), math.ceil(w.shape[2] / TILE))
    _grouped_tiles[grid, (THREADS, THREADS), stream](x, w, out, tasks[0], tasks[1], tasks[2], m_tiles)


@lru_cache(maxsize=16)
def _gating_kernel(num_experts: int, n_group: int) -> Any:
    experts = num_experts
    groups = n_group
    per_group = num_experts // n_group

    @cuda.jit
    def kernel(logits, bias, top_k, use_sigmoid, topk_group, scaling, norm, indices, weights):  # type: ignore[no-untyped-def]
        t = cuda.grid(1)
        if t >= logits.shape[0]:
            return
        scores = cuda.local.array(experts, dtype=float32)
        choice = cuda.local.array(experts, dtype=float32)
        gscore = cuda.local.array(groups, dtype=float32)
        if use_sigmoid:
            for j in range(experts):
                scores[j] = float32(1.0) / (float32(1.0) + math.exp(-logits[t, j]))
        else:
            top = logits[t, 0]
            for j in range(1, experts):
                top = max(top, logits[t, j])
            total = float32(0.0)
            for j in range(experts):
                scores[j] = math.exp(logits[t, j] - top)
                total += scores[j]
            for j in range(experts):
                scores[j] = scores[j] / total
        for j in range(experts):
            choice[j] = scores[j] + bias[j]
        if groups > 1:
            for g in range(groups):
                best = -math.inf
                second = -math.inf
                for j in range(g * per_group, (g + 1) * per_group):
                    v = choice[j]
                    if v > best:
                        second = best
                        best = v
                    elif v > second:
                        second = v
                gscore[g] = best + second if use_sigmoid else best
            for _ in range(groups - topk_group):  # drop the weakest groups
                arg = 0
                worst = math.inf
                for g in range(groups):
                    if gscore[g] < worst:
                        worst = gscore[g]
                        arg = g
                gscore[arg] = math.inf  # removed from later passes
                for j in range(arg * per_group, (arg + 1) * per_group):
                    choice[j] = -math.inf
        total = float32(0.0)
        for s in range(top_k):
            arg = 0
            best = -math.inf
            for j in range(experts):
                if choice[j] > best:
                    best = choice[j]
                    arg = j
            choice[arg] = -math.inf
            indices[t, s] = arg
            weights[t, s] = scores[arg]
            total += scores[arg]
        scale = scaling / total if norm else scaling
        for s in range(top_k):
            weights[t, s] = weights[t, s] * scale

    return kernel


def launch_gating(
    logits: Any,
    bias: Any,
    top_k: int,
    scoring: str,
    n_group: int,
    topk_group: int,
    scaling: float,
    norm: bool,
    indices: Any,
    weights: Any,
    stream: Any = 0,
) -> None:
    kernel = _gating_kernel(int(logits.shape[1]), int(n_group))
    threads = 128
    blocks = math.ceil(logits.shape[0] / threads)
    kernel[blocks, threads, stream](
        logits, bias, top_k, scoring == "sigmoid", topk_group, np.float32(scaling), norm, indices, weights
    )


@cuda.jit
def _histogram(indices, counts):  # type: ignore[no-untyped-def]
    p = cuda.grid(1)
    k = indices.shape[1]
    if p < indices.shape[0] * k:
        cuda.atomic.add(counts, indices[p // k, p % k], 1)


@cuda.jit
def _scatter_slots(indices, fill, slot, source):  # type: ignore[no-untyped-def]
    p = cuda.grid(1)
    k = indices.shape[1]
    if p < indices.shape[0] * k:
        t = p // k
        j = p % k
        pos = cuda.atomic.add(fill, indices[t, j], 1)
        slot[t, j] = pos
        source[pos] = t


@cuda.jit
def _copy_rows(x, source, out):  # type: ignore[no-untyped-def]
    r = cuda.blockIdx.x
    src = source[r]
    for c in range(cuda.threadIdx.x, x.shape[1], cuda.blockDim.x):
        out[r, c] = x[src, c]


@cuda.jit
def _combine_rows(y_perm, slot, weights, out):  # type: ignore[no-untyped-def]
    t = cuda.blockIdx.x
    k = slot.shape[1]
    for c in range(cuda.threadIdx.x, y_perm.shape[1], cuda.blockDim.x):
        acc = float32(0.0)
        for j in range(k):
            acc += weights[t, j] * y_perm[slot[t, j], c]
        out[t, c] = acc


def launch_route(indices: Any, num_experts: int, stream: Any = 0) -> tuple[Any, Any, Any, np.ndarray]:
    """Histogram, host scan of the E counts, atomic slot scatter. Returns (slot, source, fill, offsets)."""
    t, k = indices.shape
    pairs = t * k
    threads = 256
    blocks = max(1, math.ceil(pairs / threads))
    counts = cuda.to_device(np.zeros(num_experts, dtype=np.int64), stream=stream)
    _histogram[blocks, threads, stream](indices, counts)
    host_counts = counts.copy_to_host(stream=stream)
    if stream != 0:
        stream.synchronize()
    offsets = np.concatenate([[0], np.cumsum(host_counts)]).astype(np.int64)
    fill = cuda.to_device(offsets[:-1].copy(), stream=stream)
    slot = cuda.device_array((t, k), dtype=np.int64, stream=stream)
    source = cuda.device_array(pairs, dtype=np.int64, stream=stream)
    _scatter_slots[blocks, threads, stream](indices, fill, slot, source)
    return slot, source, fill, offsets


def launch_copy_rows(x: Any, source: Any, out: Any, stream: Any = 0) -> None:
    _copy_rows[max(1, source.shape[0]), COPY_THREADS, stream](x, source, out)


def launch_combine(y_perm: Any, slot: Any, weights: Any, out: Any, stream: Any = 0) -> None:
    _combine_rows[max(1, slot.shape[0]), COPY_THREADS, stream](y_perm, slot, weights, out)


@lru_cache(maxsize=16)
def _attention_kernel(head_dim: int, v_head_dim: int) -> Any:
    d = head_dim
    dv = v_head_dim
    width = max(d, dv)
    per_thread = (dv + ATT_COLS - 1) // ATT_COLS

    @cuda.jit
    def kernel(q, k, v, causal, scale, out):  # type: ignore[no-untyped-def]
        buf = cuda.shared.array((ATT_KEYS, width), dtype=float32)
        probs = cuda.shared.array((ATT_ROWS, ATT_KEYS), dtype=float32)
        row_max = cuda.shared.array(ATT_ROWS, dtype=float32)
        row_sum = cuda.shared.array(ATT_ROWS, dtype=float32)
        row_alpha = cuda.shared.array(ATT_ROWS, dtype=float32)
        acc = cuda.local.array(per_thread, dtype=float32)
        tr = cuda.threadIdx.y
        tc = cuda.threadIdx.x
        lin = tr * ATT_COLS + tc
        nthreads = ATT_ROWS * ATT_COLS
        b = cuda.blockIdx.z
        kvh = cuda.blockIdx.y
        hq = q.shape[1]
        sq = q.shape[2]
        hkv = k.shape[1]
        skv = k.shape[2]
        group = hq // hkv
        rows = group * sq
        r = cuda.blockIdx.x * ATT_ROWS + tr
        valid = r < rows
        h = kvh * group + (r // sq if valid else 0)
        i = r % sq if valid else 0
        visible = skv
        if causal:
            visible = min(skv, max(0, skv - sq + i + 1))
        if not valid:
            visible = 0
        # the keys any row of this block may see (causal: up to the block's latest query)
        first_row = cuda.blockIdx.x * ATT_ROWS
        last_row = min(rows, first_row + ATT_ROWS) - 1
        latest = last_row % sq
        if last_row - first_row + 1 >= sq or first_row % sq > latest:
            latest = sq - 1
        block_keys = skv if not causal else min(skv, max(0, skv - sq + latest + 1))
        if tc == 0:
            row_max[tr] = -math.inf
            row_sum[tr] = float32(0.0)
        for c in range(per_thread):
            acc[c] = float32(0.0)
        cuda.syncthreads()
        for k0 in range(0, block_keys, ATT_KEYS):
            for idx in range(lin, ATT_KEYS * d, nthreads):
                kj = idx // d
                kc = idx % d
                buf[kj, kc] = k[b, kvh, k0 + kj, kc] if k0 + kj < skv else float32(0.0)
            cuda.syncthreads()
            for j in range(tc, ATT_KEYS, ATT_COLS):
                s = -math.inf
                if k0 + j < visible:
                    dot = float32(0.0)
                    for c in range(d):
                        dot += q[b, h, i, c] * buf[j, c]
                    s = dot * scale
                probs[tr, j] = s
            cuda.syncthreads()
            if tc == 0:
                m_old = row_max[tr]
                m_new = m_old
                for j in range(ATT_KEYS):
                    m_new = max(m_new, probs[tr, j])
                alpha = float32(1.0)
                total = float32(0.0)
                if m_new > -math.inf:
                    alpha = math.exp(m_old - m_new) if m_old > -math.inf else float32(0.0)
                    for j in range(ATT_KEYS):
                        p = math.exp(probs[tr, j] - m_new) if probs[tr, j] > -math.inf else float32(0.0)
                        probs[tr, j] = p
                        total += p
                else:
                    for j in range(ATT_KEYS):
                        probs[tr, j] = float32(0.0)
                row_alpha[tr] = alpha
                row_max[tr] = m_new
                row_sum[tr] = row_sum[tr] * alpha + total
            for idx in range(lin, ATT_KEYS * dv, nthreads):
                vj = idx // dv
                vc = idx % dv
                buf[vj, vc] = v[b, kvh, k0 + vj, vc] if k0 + vj < skv else float32(0.0)
            cuda.syncthreads()
            alpha = row_alpha[tr]
            for slot in range(per_thread):
                col = tc + slot * ATT_COLS
                if col < dv:
                    total = acc[slot] * alpha
                    for j in range(ATT_KEYS):
                        total += probs[tr, j] * buf[j, col]
                    acc[slot] = total
            cuda.syncthreads()
        if valid:
            denom = row_sum[tr]
            for slot in range(per_thread):
                col = tc + slot * ATT_COLS
                if col < dv:
                    out[b, h, i, col] = acc[slot] / denom

    return kernel


def launch_attention(q: Any, k: Any, v: Any, causal: bool, scale: float, out: Any, stream: Any = 0) -> None:
    b, hq, sq, d = q.shape
    hkv = k.shape[1]
    rows = (hq // hkv) * sq
    kernel = _attention_kernel(int(d), int(v.shape[3]))
    grid = (math.ceil(rows / ATT_ROWS), hkv, b)
    kernel[grid, (ATT_COLS, ATT_ROWS), stream](q, k, v, causal, np.float32(scale), out)


__all__ = [
    "launch_attention",
    "launch_combine",
    "launch_copy_rows",
    "launch_gating",
    "launch_gemm",
    "launch_grouped_gemm",
    "launch_route",
    "gemm_tasks",
    "grouped_tasks",
    "int64",
]
