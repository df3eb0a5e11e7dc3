"""Correctness checks shared by the pytest suite and the CUDA-simulator subprocess.

Each check draws fresh random inputs (normal or uniform, never zeros) from the generator it
is given, fills every output with NaN first (so an unwritten element fails), runs one
implementation and compares it with the float64 numpy reference (``kernels_numba.reference``).
An implementation is a namespace with the numpy calling convention of ``kernels_numba.cpu``;
:class:`TorchImpl` adapts ``kernels_numba.torch_ref`` to it.

Tolerances: float32 kernels against float64 references, ``rtol = 2e-4`` and an absolute
floor of ``2e-4 * max|reference|`` (sums of up to a few hundred float32 products).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from kernels_numba import reference as ref

RTOL = 2e-4


def _close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    if np.isnan(got).any():
        raise AssertionError(f"{what}: output has NaN (an element was not written)")
    scale = float(np.max(np.abs(want))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def _poison(shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
    out = np.empty(shape, dtype=dtype)
    if np.issubdtype(np.dtype(dtype), np.floating):
        out.fill(np.nan)
    else:
        out.fill(-(2**40))
    return out


def _normal(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


class TorchImpl:
    """Numpy-convention adapter over ``kernels_numba.torch_ref`` (CPU tensors)."""

    def __init__(self) -> None:
        import torch

        from kernels_numba import torch_ref

        self.torch = torch
        self.ref = torch_ref

    def gemm(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
        t = self.torch.from_numpy(out)
        self.ref.gemm(self.torch.from_numpy(a), self.torch.from_numpy(b), t)
        return out

    def grouped_gemm(self, x: np.ndarray, offsets: np.ndarray, w: np.ndarray, out: np.ndarray) -> np.ndarray:
        self.ref.grouped_gemm(
            self.torch.from_numpy(x),
            [int(o) for o in offsets],
            self.torch.from_numpy(w),
            self.torch.from_numpy(out),
        )
        return out

    def gating(
        self,
        logits: np.ndarray,
        top_k: int,
        scoring: str,
        n_group: int,
        topk_group: int,
        bias: np.ndarray,
        scale: float,
        norm: bool,
        indices: np.ndarray,
        weights: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        idx, w = self.ref.gating(
            self.torch.from_numpy(logits),
            top_k,
            scoring,
            n_group,
            topk_group,
            self.torch.from_numpy(bias),
            scale,
            norm,
        )
        indices[:] = idx.numpy()
        weights[:] = w.numpy()
        return indices, weights

    def permute(
        self, x: np.ndarray, indices: np.ndarray, num_experts: int, out: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        xp, source, offsets, slot = self.ref.permute(
            self.torch.from_numpy(x), self.torch.from_numpy(indices), num_experts
        )
        out[:] = xp.numpy()
        return out, source.numpy(), offsets.numpy(), slot.numpy()

    def unpermute(self, y: np.ndarray, slot: np.ndarray, weights: np.ndarray, out: np.ndarray) -> np.ndarray:
        out[:] = self.ref.unpermute(
            self.torch.from_numpy(y), self.torch.from_numpy(slot), self.torch.from_numpy(weights)
        ).numpy()
        return out

    def attention(
        self, q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool, scale: float, out: np.ndarray
    ) -> np.ndarray:
        t = self.torch
        out[:] = self.ref.attention(t.from_numpy(q), t.from_numpy(k), t.from_numpy(v), causal, scale).numpy()
        return out


def check_gemm(impl: Any, rng: np.random.Generator, shapes: tuple[tuple[int, int, int], ...]) -> None:
    for m, n, k in shapes:
        a, b = _normal(rng, m, k), _normal(rng, k, n)
        out = _poison((m, n))
        impl.gemm(a, b, out)
        _close(out, ref.gemm(a, b), f"gemm {m}x{n}x{k}")


def check_grouped_gemm(impl: Any, rng: np.random.Generator, sizes: tuple[int, ...], n: int, k: int) -> None:
    groups = len(sizes)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    x, w = _normal(rng, int(offsets[-1]), k), _normal(rng, groups, k, n)
    out = _poison((int(offsets[-1]), n))
    impl.grouped_gemm(x, offsets, w, out)
    _close(out, ref.grouped_gemm(x, offsets, w), f"grouped_gemm sizes={sizes} n={n} k={k}")


def check_gating(
    impl: Any,
    rng: np.random.Generator,
    tokens: int,
    experts: int,
    top_k: int,
    scoring: str,
    n_group: int,
    topk_group: int,
) -> None:
    logits = _normal(rng, tokens, experts) * np.float32(2.0)
    bias = (
        (rng.uniform(-0.1, 0.1, experts)).astype(np.float32)
        if scoring == "sigmoid"
        else np.zeros(experts, np.float32) + np.float32(rng.uniform(1e-3, 2e-3))
    )  # a constant shift: selection unchanged
    scale = float(rng.uniform(1.0, 3.0))
    indices = _poison((tokens, top_k), np.int64)
    weights = _poison((tokens, top_k))
    impl.gating(logits, top_k, scoring, n_group, topk_group, bias, scale, True, indices, weights)
    want_idx, want_w = ref.gating(logits, top_k, scoring, n_group, topk_group, bias, scale, True)
    what = f"gating {scoring} T={tokens} E={experts} k={top_k} groups={n_group}/{topk_group}"
    got_sets = np.sort(indices, axis=1)
    want_sets = np.sort(want_idx, axis=1)
    if not np.array_equal(got_sets, want_sets):
        bad = int(np.argmax((got_sets != want_sets).any(axis=1)))
        raise AssertionError(f"{what}: token {bad} chose {indices[bad]}, reference {want_idx[bad]}")
    order_got = np.argsort(indices, axis=1)
    order_want = np.argsort(want_idx, axis=1)
    _close(np.take_along_axis(weights, order_got, 1), np.take_along_axis(want_w, order_want, 1), what)


def check_permute(
    impl: Any, rng: np.random.Generator, tokens: int, hidden: int, experts: int, top_k: int, skew: float
) -> None:
    """Routing drawn from a Zipf-like popularity (``skew`` = exponent, 0 = uniform)."""
    popularity = 1.0 / np.arange(1, experts + 1) ** skew
    popularity = rng.permutation(popularity / popularity.sum())
    indices = np.stack([rng.choice(experts, size=top_k, replace=False, p=popularity) for _ in range(tokens)])
    indices = indices.astype(np.int64)
    x = _normal(rng, tokens, hidden)
    out = _poison((tokens * top_k, hidden))
    got, source, offsets, slot = impl.permute(x, indices, experts, out)
    want, _, want_offsets, _ = ref.permute(x, indices, experts)
    what = f"permute T={tokens} H={hidden} E={experts} k={top_k} skew={skew}"
    if not np.array_equal(np.asarray(offsets), want_offsets):
        raise AssertionError(f"{what}: expert offsets {offsets} != {want_offsets}")
    slot = np.asarray(slot)
    for e in range(experts):  # the same tokens per expert (order inside an expert is free)
        lo, hi = int(want_offsets[e]), int(want_offsets[e + 1])
        if sorted(np.asarray(source)[lo:hi].tolist()) != sorted(
            np.nonzero((indices == e).any(axis=1))[0].tolist()
        ):
            raise AssertionError(f"{what}: expert {e} received the wrong tokens")
    expert_of_slot = np.searchsorted(want_offsets, slot, side="right") - 1
    if not np.array_equal(expert_of_slot, indices):
        raise AssertionError(f"{what}: a slot lies outside its expert's rows")
    _close(got[slot.reshape(-1)], np.repeat(x.astype(np.float64), top_k, axis=0), what)
    _close(np.sort(got, axis=0), np.sort(want, axis=0), what)
    # combine: per-expert outputs gathered back with routing weights
    y = _normal(rng, tokens * top_k, hidden)
    weights = rng.uniform(0.1, 1.0, (tokens, top_k)).astype(np.float32)
    combined = _poison((tokens, hidden))
    impl.unpermute(y, slot, weights, combined)
    _close(combined, ref.unpermute(y, slot, weights), f"unpermute {what}")


def check_attention(
    impl: Any,
    rng: np.random.Generator,
    batch: int,
    hq: int,
    hkv: int,
    sq: int,
    skv: int,
    d: int,
    dv: int,
    causal: bool,
) -> None:
    q, k, v = (
        _normal(rng, batch, hq, sq, d),
        _normal(rng, batch, hkv, skv, d),
        _normal(rng, batch, hkv, skv, dv),
    )
    scale = 1.0 / float(np.sqrt(d))
    out = _poison((batch, hq, sq, dv))
    impl.attention(q, k, v, causal, scale, out)
    _close(
        out,
        ref.attention(q, k, v, causal, scale),
        f"attention B={batch} Hq={hq} Hkv={hkv} Sq={sq} Skv={skv} D={d} Dv={dv} causal={causal}",
    )


def suite(small: bool) -> list[tuple[str, Callable[[Any, np.random.Generator], None]]]:
    """Named checks; ``small`` shrinks sizes and head dims for the CUDA simulator."""
    if small:
        gemm_shapes: tuple[tuple[int, int, int], ...] = ((1, 20, 24), (37, 45, 19))
        mla = (1, 8, 1, 2, 21, 72, 64)  # MLA decode shrunk: 8 heads on one latent head, d 64+8, dv 64
    else:
        gemm_shapes = ((1, 300, 129), (8, 257, 64), (100, 270, 300), (130, 64, 513))
        mla = (2, 16, 1, 2, 70, 576, 512)  # MLA decode (absorbed): 576 = 512 latent + 64 rope
    cases: list[tuple[str, Callable[[Any, np.random.Generator], None]]] = [
        ("gemm", lambda impl, rng: check_gemm(impl, rng, gemm_shapes)),
        (
            "grouped_gemm_skewed",
            lambda impl, rng: check_grouped_gemm(
                impl,
                rng,
                (0, 45, 3, 0, 17, 1) if small else (0, 300, 5, 0, 77, 1, 130, 2),
                24 if small else 96,
                16 if small else 70,
            ),
        ),
        (
            "gating_sigmoid_grouped",
            lambda impl, rng: check_gating(impl, rng, 19 if small else 64, 32, 4, "sigmoid", 4, 2),
        ),
        (
            "gating_softmax",
            lambda impl, rng: check_gating(impl, rng, 19 if small else 64, 16, 2, "softmax", 1, 1),
        ),
        (
            "gating_softmax_grouped",
            lambda impl, rng: check_gating(impl, rng, 11 if small else 64, 32, 6, "softmax", 8, 3),
        ),
        (
            "permute_combine",
            lambda impl, rng: check_permute(
                impl,
                rng,
                13 if small else 100,
                24 if small else 96,
                8 if small else 32,
                3 if small else 8,
                1.2,
            ),
        ),
        (
            "attention_prefill_causal",
            lambda impl, rng: check_attention(
                impl,
                rng,
                1 if small else 2,
                2 if small else 3,
                2 if small else 3,
                19 if small else 40,
                19 if small else 40,
                8 if small else 32,
                8 if small else 32,
                True,
            ),
        ),
        (
            "attention_chunked_gqa",
            lambda impl, rng: check_attention(
                impl,
                rng,
                1,
                4,
                2,
                5 if small else 24,
                23 if small else 90,
                8 if small else 64,
                6 if small else 64,
                True,
            ),
        ),
        (
            "attention_prefill_mla_dims",  # d_qk != d_v (MLA prefill: 192 / 128, shrunk)
            lambda impl, rng: check_attention(
                impl,
                rng,
                1,
                2,
                2,
                9 if small else 33,
                9 if small else 33,
                12 if small else 48,
                8 if small else 32,
                True,
            ),
        ),
        ("attention_noncausal", lambda impl, rng: check_attention(impl, rng, 1, 2, 1, 3, 17, 8, 8, False)),
        ("attention_decode_mla", lambda impl, rng: check_attention(impl, rng, *mla, True)),
    ]
    return cases
