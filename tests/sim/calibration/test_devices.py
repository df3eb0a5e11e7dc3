"""Fits to the kernels measured on the hardware at hand (the committed device files)."""

from __future__ import annotations

import json

from sim import calibration as cal
from sim.calibration import devices


def test_torch_gating_family_fits_both_routing_variants() -> None:
    """One four-parameter torch gating fit over sigmoid group-limited, softmax group-limited and
    ungrouped routing: the grouped shapes of 1,024 tokens and more within 15% (committed data)."""
    path = cal.calibration_dir() / "cpu-amd-epyc.json"
    doc = json.loads(path.read_text())
    profile = devices.profile_for(doc, path)
    records = devices.groups(doc)[("gating", "torch_cpu")]
    _, _, _, pairs = devices.fit_group(profile, records, "cpu")
    checked = set()
    for record, (predicted, measured) in zip(records, pairs, strict=True):
        config = record["config"]
        if config["n_group"] > 1 and record["shape"]["num_tokens"] >= 1024:
            checked.add(config["scoring"])
            assert abs(predicted / measured - 1) < 0.15, (record["shape"], predicted, measured)
    assert checked == {"sigmoid", "softmax"}
