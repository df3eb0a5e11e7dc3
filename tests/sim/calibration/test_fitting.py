"""The fixed held-out split, the least-squares fit, and the file stems of device names."""

from __future__ import annotations

import numpy as np
import pytest

from sim import calibration as cal


def test_split_is_fixed_whole_shapes_and_alternating() -> None:
    keys = [(64, 1), (1, 2), (64, 1), (1, 2), (16, 0), (8, 3)]
    fit, held = cal.split_fit_holdout(keys)
    # sorted distinct: (1,2) (8,3) (16,0) (64,1) -> fit (1,2),(16,0); held (8,3),(64,1)
    assert [keys[i] for i in fit] == [(1, 2), (1, 2), (16, 0)]
    assert [keys[i] for i in held] == [(64, 1), (64, 1), (8, 3)]
    reverse_fit, _ = cal.split_fit_holdout(list(reversed(keys)))
    assert {list(reversed(keys))[i] for i in reverse_fit} == {keys[i] for i in fit}  # order-free

def test_fit_recovers_known_parameters() -> None:
    truth = cal.FamilyParams(
        launch_s=2e-5, compute_efficiency=0.6, memory_efficiency=0.8, overlap_exponent=3.0
    )
    rng = np.random.default_rng(5)
    compute = rng.uniform(1e-6, 1e-2, 40)
    memory = rng.uniform(1e-6, 1e-2, 40)
    measured = [cal.predict_seconds(truth, c, m) for c, m in zip(compute, memory, strict=True)]

    def predict(p: cal.FamilyParams, i: int) -> float:
        return cal.predict_seconds(p, compute[i], memory[i])

    fitted = cal.fit_params(predict, measured, list(range(0, 40, 2)), cal.FamilyParams(1e-5, 0.5, 0.5, 2.0))
    held = [predict(fitted, i) / measured[i] - 1 for i in range(1, 40, 2)]
    assert max(abs(e) for e in held) < 0.01

@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Intel(R) Xeon(R) Processor", "intel-xeon-processor"),
        ("AMD EPYC", "amd-epyc"),
        ("H800 SXM", "h800-sxm"),
        ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb-hbm3"),
        ("Core(TM) i9 / test", "core-i9-test"),
    ],
)
def test_device_key_makes_plain_file_stems(name: str, key: str) -> None:
    assert cal.device_key(name) == key
