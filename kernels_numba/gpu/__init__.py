"""Numba-CUDA kernels with numpy in, numpy out (device arrays: ``kernels_numba.gpu.kernels``).

The folder is ``gpu/`` rather than ``cuda/`` because numba-cuda's import redirector
(``_numba_cuda_redirector.py``) hijacks every module whose dotted name contains
"numba.cuda", which ``kernels_numba.cuda`` would. Importing this package imports
``numba.cuda``; with ``NUMBA_ENABLE_CUDASIM=1`` set before numba loads, the same kernels run on
the CUDA simulator (the tests do this in a subprocess).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from kernels_numba.gpu import kernels as _k


def simulator_active() -> bool:
    """True when numba.cuda is the CUDA simulator (NUMBA_ENABLE_CUDASIM=1 at import)."""
    return "simulator" in str(getattr(cuda.jit, "__module__", ""))


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    da, db, dc = cuda.to_device(a), cuda.to_device(b), cuda.to_device(out)
    tasks = tuple(cuda.to_device(t) for t in _k.gemm_tasks(a.shape[0]))
    _k.launch_gemm(da, db, dc, tasks)  # type: ignore[arg-type]
    dc.copy_to_host(out)
    return out


def grouped_gemm(x: np.ndarray, offsets: np.ndarray, w: np.ndarray, out: np.ndarray) -> np.ndarray:
    dx, dw, dout = cuda.to_device(x), cuda.to_device(w), cuda.to_device(out)
    tasks = tuple(cuda.to_device(t) for t in _k.grouped_tasks(offsets))
    _k.launch_grouped_gemm(dx, dw, dout, tasks)  # type: ignore[arg-type]
    dout.copy_to_host(out)
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
    di, dw = cuda.to_device(indices), cuda.to_device(weights)
    _k.launch_gating(
        cuda.to_device(logits),
        cuda.to_device(bias),
        top_k,
        scoring,
        n_group,
        topk_group,
        routed_scaling_factor,
        norm_topk_prob,
        di,
        dw,
    )
    di.copy_to_host(indices)
    dw.copy_to_host(weights)
    return indices, weights


def permute(
    x: np.ndarray, indices: np.ndarray, num_experts: int, out: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    dind = cuda.to_device(indices)
    slot, source, _, offsets = _k.launch_route(dind, num_experts)
    dout = cuda.to_device(out)
    _k.launch_copy_rows(cuda.to_device(x), source, dout)
    dout.copy_to_host(out)
    return out, source.copy_to_host(), offsets, slot.copy_to_host()


def unpermute(y_perm: np.ndarray, slot: np.ndarray, weights: np.ndarray, out: np.ndarray) -> np.ndarray:
    dout = cuda.to_device(out)
    _k.launch_combine(cuda.to_device(y_perm), cuda.to_device(slot), cuda.to_device(weights), dout)
    dout.copy_to_host(out)
    return out


def attention(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool, scale: float, out: np.ndarray
) -> np.ndarray:
    dout = cuda.to_device(out)
    _k.launch_attention(cuda.to_device(q), cuda.to_device(k), cuda.to_device(v), causal, scale, dout)
    dout.copy_to_host(out)
    return out
