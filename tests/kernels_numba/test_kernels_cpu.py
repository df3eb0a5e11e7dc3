"""Numba CPU and torch kernels against float64 numpy references.

Fresh random inputs, NaN-poisoned outputs."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from kernels_numba import checks

CASES = checks.suite(small=False)


@pytest.fixture(scope="module")
def impls() -> dict[str, object]:
    from kernels_numba import cpu

    return {"numba_cpu": cpu, "torch_cpu": checks.TorchImpl()}


@pytest.mark.parametrize("impl_name", ["numba_cpu", "torch_cpu"])
@pytest.mark.parametrize("name", [name for name, _ in CASES])
def test_kernel_matches_float64_reference(impls: dict[str, object], impl_name: str, name: str) -> None:
    run = dict(CASES)[name]
    run(impls[impl_name], np.random.default_rng([zlib.crc32(name.encode()), zlib.crc32(impl_name.encode())]))


def test_poisoned_output_is_detected() -> None:
    """A kernel that leaves one element unwritten must fail the check."""

    class Lazy:
        @staticmethod
        def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
            out[:-1] = a[:-1] @ b
            return out

    with pytest.raises(AssertionError, match="NaN"):
        checks.check_gemm(Lazy(), np.random.default_rng(0), ((4, 5, 6),))


def test_wrong_routing_is_detected() -> None:
    from kernels_numba import cpu

    class Off:
        @staticmethod
        def gating(*args: object) -> object:
            idx, w = cpu.gating(*args)  # type: ignore[arg-type]
            idx[0, 0] = (idx[0, 0] + 1) % 32
            return idx, w

    with pytest.raises(AssertionError, match="token 0"):
        checks.check_gating(Off(), np.random.default_rng(1), 8, 32, 4, "sigmoid", 4, 2)
