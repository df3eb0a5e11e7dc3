"""Sweep specs: the grid's order and size, and clear errors for malformed files."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.grid.spec import AXES, as_spec, load_sweep_spec, parse_sweep_spec

EXAMPLE = Path(__file__).resolve().parents[3] / "sim" / "grid" / "specs" / "gpu_wins.toml"


def _grid(**axes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "model": ["mixtral-8x7b"],
        "gpu": ["H100", "H20"],
        "deployment": [{"nodes": 1}],
        "input_len": [1024, 4096, 8192],
        "output_len": 256,
        "tpot_target_s": [0.02, 0.05],
    }
    base.update(axes)
    return {"kind": "serving", "grid": base}


def test_configurations_are_the_product_in_a_fixed_order_with_the_last_axis_fastest() -> None:
    spec = parse_sweep_spec(_grid())
    assert spec.size == 1 * 2 * 1 * 3 * 1 * 2 * 1 * 1 * 1 * 1  # defaults fill cache, MTP and price
    configs = list(spec.configs())
    assert [c["config_id"] for c in configs] == list(range(spec.size))
    assert [c["tpot_target_s"] for c in configs[:4]] == [0.02, 0.05, 0.02, 0.05]
    assert [c["input_len"] for c in configs[:6]] == [1024, 1024, 4096, 4096, 8192, 8192]
    assert [c["gpu"] for c in configs] == ["H100"] * 6 + ["H20"] * 6
    assert configs[0]["usd_per_gpu_hour"] == "profile" and configs[0]["cache_hit_rate"] == 0.0
    assert list(configs[0]) == ["config_id", *AXES["serving"]]
    # every configuration decodes from its index alone, and each appears once
    assert (
        len({tuple(sorted((k, str(v)) for k, v in c.items() if k != "config_id")) for c in configs})
        == spec.size
    )


def test_chunks_cover_every_configuration_once() -> None:
    spec = parse_sweep_spec({**_grid(), "chunk_size": 5})
    bounds = [spec.chunk_bounds(i) for i in range(spec.num_chunks)]
    assert bounds == [(0, 5), (5, 10), (10, 12)]


def test_names_are_canonicalised_and_the_digest_ignores_title_and_retries() -> None:
    a = parse_sweep_spec({**_grid(gpu=["h100", "H20"]), "title": "a", "retries": 0})
    b = parse_sweep_spec({**_grid(), "title": "b", "retries": 5})
    assert a.config(0)["gpu"] == "H100"
    assert a.sha256 == b.sha256
    assert parse_sweep_spec({**_grid(), "seed": 1}).sha256 != a.sha256
    assert parse_sweep_spec({**_grid(), "chunk_size": 7}).sha256 != a.sha256


def test_the_example_spec_loads() -> None:
    spec = load_sweep_spec(EXAMPLE)
    assert spec.kind == "serving" and spec.size > 1000
    assert as_spec(str(EXAMPLE)).sha256 == spec.sha256


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**_grid(), "colour": 1}, r"unknown key\(s\) \['colour'\]; allowed top-level keys"),
        ({**_grid(), "kind": "inference"}, r"kind must be one of \['serving', 'training'\]"),
        ({"kind": "serving"}, r"needs a \[grid\] table; serving axes"),
        (_grid(batch=[1]), r"unknown serving axis/axes \['batch'\].*serving axes are \['model', 'gpu'"),
        (_grid(model=["gpt-5"]), r"grid.model: .*gpt-5"),
        (_grid(gpu=["H900"]), r"grid.gpu: .*H900"),
        (_grid(input_len=[1024, -5]), r"grid.input_len value -5 is not valid: expected a whole number >= 1"),
        (_grid(tpot_target_s=[]), r"grid.tpot_target_s is an empty list"),
        (_grid(cache_hit_rate=[1.5]), r"expected a fraction in \[0, 1\)"),
        (_grid(usd_per_gpu_hour=["cheap"]), r'"profile" for the GPU profile'),
        (_grid(deployment=[{"nodes": 1, "pp": 2}]), r"unknown keys \['pp'\]; instance keys are"),
        (_grid(deployment=[{"prefill": {"nodes": 1}}]), r"both 'prefill' and 'decode'"),
        (_grid(gpu=["H100", "h100"]), r"grid.gpu lists \['\"H100\"'\] more than once"),
        ({**_grid(), "chunk_size": 0}, r"chunk_size must be a whole number >= 1, got 0"),
        (
            {"kind": "serving", "grid": {"model": ["mixtral-8x7b"]}},
            r"grid.gpu is required for a serving sweep",
        ),
        (
            {
                "kind": "training",
                "grid": {
                    "model": "mixtral-8x7b",
                    "gpu": "H100",
                    "plan": [{"tp": 1}],
                    "global_batch_seqs": 64,
                },
            },
            r"a plan that names num_gpus",
        ),
    ],
)
def test_malformed_specs_say_what_is_wrong_and_what_is_allowed(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_sweep_spec(data)


def test_a_file_that_is_not_toml_or_missing_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("kind = serving\n")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load_sweep_spec(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_sweep_spec(tmp_path / "missing.toml")


def test_plan_keys_follow_the_training_api_and_instance_keys_the_serving_api() -> None:
    with pytest.raises(
        ValueError, match=r"unknown keys \['stages'\]; plan keys are \[.*'micro_batch_seqs'.*'pp'"
    ):
        parse_sweep_spec(
            {
                "kind": "training",
                "grid": {
                    "model": "mixtral-8x7b",
                    "gpu": "H100",
                    "plan": [{"num_gpus": 8, "stages": 2}],
                    "global_batch_seqs": 64,
                },
            }
        )
    with pytest.raises(ValueError, match=r"instance keys are \[.*'max_batch_per_gpu'.*'redundant_experts'"):
        parse_sweep_spec(_grid(deployment=[{"nodes": 1, "colour": "red"}]))
