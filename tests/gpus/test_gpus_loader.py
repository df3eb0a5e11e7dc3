"""Data files: a malformed file gets an error naming the file and the field; users can add a GPU
from a file; CPU profiles come from calibration files; calibration paths."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpus
from gpus import loader

H800_TEXT = (gpus.DATA_DIR / "h800.toml").read_text()


def write(tmp_path: Path, text: str, name: str = "gpu.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def replace_line(text: str, key: str, new_line: str) -> str:
    """Replace the line that starts with ``key =`` (first occurrence)."""
    pattern = re.compile(rf"^{re.escape(key)} = .*$", re.MULTILINE)
    assert pattern.search(text), key
    return pattern.sub(new_line.replace("\\", "\\\\"), text, count=1)


def test_a_copy_of_a_shipped_file_loads(tmp_path):
    profile = gpus.load_profile(write(tmp_path, H800_TEXT))
    assert dataclasses.replace(profile) == profile  # a valid profile round-trips through its constructor
    shipped = gpus.get("H800")
    assert profile.peak_flops_per_s == shipped.peak_flops_per_s
    assert profile.to_dict() | {"data_file": ""} == shipped.to_dict() | {"data_file": ""}


@pytest.mark.parametrize(("edit", "field", "message"), [
    # missing field
    (lambda t: replace_line(t, "hbm_bandwidth", ""), "memory.hbm_bandwidth", "missing"),
    (lambda t: replace_line(t, "name", ""), "name", "missing"),
    # wrong unit
    (lambda t: replace_line(t, "bf16", 'bf16 = { value = 989.5, unit = "GB/s", source = "ANT" }'),
     "peak_dense.bf16", "unit 'GB/s' is not allowed here; use one of: FLOP/s, GFLOPS, TFLOPS"),
    (lambda t: replace_line(t, "tdp", 'tdp = { value = 700, unit = "watts", source = "CN_COMPILE" }'),
     "power.tdp", "unit 'watts' is not allowed"),
    # negative, NaN, zero, not a number
    (lambda t: replace_line(t, "tdp", 'tdp = { value = -700, unit = "W", source = "CN_COMPILE" }'),
     "power.tdp", "value must be positive, got -700"),
    (lambda t: replace_line(t, "hbm_bandwidth",
                            'hbm_bandwidth = { value = nan, unit = "TB/s", source = "ANT" }'),
     "memory.hbm_bandwidth", "value must be finite"),
    (lambda t: replace_line(t, "l2", 'l2 = { value = 0, unit = "MiB", source = "H100_TABLE" }'),
     "memory.l2", "value must be positive, got 0"),
    (lambda t: replace_line(t, "l2", 'l2 = { value = "50", unit = "MiB", source = "H100_TABLE" }'),
     "memory.l2", "value must be a number"),
    (lambda t: replace_line(t, "sm_count", 'sm_count = { value = 132.5, unit = "SMs", source = "DEEPGEMM" }'),
     "compute.sm_count", "whole number"),
    # unknown keys: in a figure, in a section, at the top
    (lambda t: replace_line(t, "tdp",
                            'tdp = { value = 700, unit = "W", source = "CN_COMPILE", sorce = "x" }'),
     "power.tdp", "unknown key(s) sorce"),
    (lambda t: t.replace("[power]\n", "[power]\ntdp_max = { value = 1, unit = \"W\", source = \"ANT\" }\n"),
     "power.tdp_max", "unknown key(s) tdp_max in [power]"),
    (lambda t: "cooling = \"air\"\n" + t, "cooling", "unknown key(s) cooling"),
    (lambda t: replace_line(t, "fp8", 'fp6 = { value = 1979, unit = "TFLOPS", source = "ANT" }'),
     "peak_dense.fp6", "unknown key(s) fp6"),
    # sources
    (lambda t: replace_line(t, "tdp", 'tdp = { value = 700, unit = "W", source = "NOPE" }'),
     "power.tdp", "unknown source key(s) 'NOPE'"),
    (lambda t: replace_line(t, "tdp", 'tdp = { value = 700, unit = "W" }'), "power.tdp", "missing 'source'"),
    (lambda t: replace_line(t, "usd_per_gpu_hour",
                            'usd_per_gpu_hour = { value = 2.0, unit = "USD/GPU-hour", source = "DSV3" }'),
     "price.usd_per_gpu_hour", "missing 'date'"),
    # cross-field checks
    (lambda t: replace_line(t, "usd_per_gpu_hour_low",
                            'usd_per_gpu_hour_low = { value = 2.5, unit = "USD/GPU-hour", '
                            'source = "DSV3", date = "x" }'),
     "price", "low <= typical <= high"),
    (lambda t: replace_line(t, "fp8", 'fp8 = { value = 98.95, unit = "TFLOPS", source = "ANT" }'),
     "peak_dense.fp8", "fp8 peak .* is below the bf16 peak"),
    (lambda t: replace_line(t, "scale_up_domain_gpus",
                            'scale_up_domain_gpus = { value = 12, unit = "GPUs", source = "DSV3" }'),
     "node", "not a whole number of nodes"),
    (lambda t: replace_line(t, "scale_up_domain_gpus",
                            'scale_up_domain_gpus = { value = 3, unit = "GPUs", source = "DSV3" }'),
     "node", "does not divide a node's 8 GPUs"),
    (lambda t: t.replace('confidence = "assumed", note = "not published for H800',
                         'confidence = "guess", note = "x'),
     "memory.l2", "confidence 'guess' is not one of"),
    (lambda t: t.replace('[node]\n', '[node]\nscale_up_topology = { value = "torus", source = "DSV3" }\n'),
     "node.scale_up_topology", "value 'torus' is not one of: switch, full-mesh, bridge, none"),
])
def test_malformed_files_name_file_and_field(tmp_path, edit, field, message):
    path = write(tmp_path, edit(H800_TEXT))
    with pytest.raises(ValueError) as info:
        gpus.load_profile(path)
    text = str(info.value)
    assert str(path) in text
    assert f"field '{field}'" in text
    assert re.search(message, text) or message in text, text
    assert isinstance(info.value, gpus.DataFileError)


def test_not_toml_and_missing_file(tmp_path):
    with pytest.raises(gpus.DataFileError, match="not valid TOML"):
        gpus.load_profile(write(tmp_path, "name = \n"))
    with pytest.raises(gpus.DataFileError, match="no such file"):
        gpus.load_profile(tmp_path / "absent.toml")
    with pytest.raises(gpus.DataFileError, match="is a directory"):
        gpus.load_profile(tmp_path)
    with pytest.raises(ValueError, match="register takes a GPUProfile or the path"):
        gpus.register(5)  # type: ignore[arg-type]


def test_register_a_new_gpu_by_file(tmp_path):
    text = H800_TEXT.replace('name = "H800"', 'name = "H900X"').replace(
        'full_name = "NVIDIA H800 SXM5 80GB"', 'full_name = "Imaginary H900X"')
    text = replace_line(text, "aliases", 'aliases = ["h900x-sxm"]')
    path = write(tmp_path, text)
    profile = gpus.register(path)
    try:
        assert gpus.get("H900X-SXM") is profile
        assert "H900X" in gpus.names()
        assert gpus.cluster("h900x", num_gpus=16).nodes == 2
    finally:
        gpus.unregister("H900X")
    assert "H900X" not in gpus.names()
    with pytest.raises(ValueError, match="unknown GPU"):
        gpus.get("H900X")


def test_register_refuses_shipped_names(tmp_path):
    with pytest.raises(ValueError, match="belongs to the shipped profile H800"):
        gpus.register(write(tmp_path, H800_TEXT))


def test_nvl72_domain_is_expressible(tmp_path):
    # A GB200-NVL72-style rack: 4 GPUs per compute tray, 72 in one NVLink domain (schema test only;
    # the figures are the H800's).
    text = H800_TEXT.replace('name = "H800"', 'name = "NVL72-TEST"').replace(
        'full_name = "NVIDIA H800 SXM5 80GB"', 'full_name = "NVL72 schema test"')
    text = replace_line(text, "aliases", "aliases = []")
    text = replace_line(text, "gpus_per_node",
                        'gpus_per_node = { value = 4, unit = "GPUs", source = "DSV3" }')
    text = replace_line(text, "scale_up_domain_gpus",
                        'scale_up_domain_gpus = { value = 72, unit = "GPUs", source = "DSV3" }')
    profile = gpus.load_profile(write(tmp_path, text))
    assert profile.node.scale_up_domain_gpus == 72
    c = gpus.cluster(profile, num_gpus=144)
    assert (c.nodes, c.gpus_per_node, c.scale_up_domain_gpus, c.nodes_per_scale_up_domain) == (36, 4, 72, 18)
    assert c.num_scale_up_domains == 2
    assert gpus.cluster(profile, num_gpus=8).scale_up_domain_gpus == 8
    with pytest.raises(ValueError, match="gpus_per_node must divide it"):
        gpus.Cluster(profile, 2, gpus_per_node=5)


def test_every_shipped_figure_has_a_resolvable_source():
    for path in sorted(gpus.DATA_DIR.glob("*.toml")):
        profile = gpus.load_profile(path)
        assert all(text and ": " in text for text in profile.sources.values()), path


# -- calibration files -------------------------------------------------------------------------

def test_calibration_paths(tmp_path, monkeypatch):
    assert gpus.calibration_path("NVIDIA H800") == gpus.CALIBRATION_DIR / "h800.json"
    assert gpus.calibration_path(gpus.get("H100-PCIe")).name == "h100-pcie.json"
    assert gpus.calibration_path("Some New Device 9").name == "some-new-device-9.json"
    monkeypatch.setattr(loader, "CALIBRATION_DIR", tmp_path)
    assert gpus.load_calibration("H800") is None
    (tmp_path / "h800.json").write_text(json.dumps({"device": "NVIDIA H800", "gemm": []}))
    assert gpus.load_calibration("h800-sxm5") == {"device": "NVIDIA H800", "gemm": []}
    (tmp_path / "h20.json").write_text("{not json")
    with pytest.raises(gpus.DataFileError, match="h20.json: not valid JSON"):
        gpus.load_calibration("H20")


def test_calibration_path_finds_files_named_after_the_driver_name(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "CALIBRATION_DIR", tmp_path)
    assert gpus.calibration_path("H200") == tmp_path / "h200.json"  # nothing there yet: canonical
    # kernels_numba.bench names a GPU file after torch.cuda.get_device_name(): "NVIDIA H200".
    (tmp_path / "nvidia-h200.json").write_text(json.dumps({"device": "NVIDIA H200", "kind": "gpu"}))
    assert gpus.calibration_path("h200") == tmp_path / "nvidia-h200.json"
    assert gpus.load_calibration("H200-SXM") == {"device": "NVIDIA H200", "kind": "gpu"}
    # a file named otherwise is found by its "device" entry
    (tmp_path / "run-7.json").write_text(json.dumps({"device": "NVIDIA A100-SXM4-80GB"}))
    assert gpus.calibration_path("A100") == tmp_path / "run-7.json"
    assert gpus.load_calibration("B200") is None


# The layout kernels_numba/bench.py writes (schema 1), with more formats than it measures today.
CPU_CALIBRATION = {
    "schema": 1,
    "device": "AMD EPYC 7B13 (test)",
    "kind": "cpu",
    "cores": 2,
    "date": "2026-11-28T11:00:00Z",
    "ceilings": {"matmul_flops_per_s": {"float32": 1.1e11, "float64": 5.5e10, "bfloat16": 2.0e10,
                                        "weird": 1.0},
                 "copy_bytes_per_s": 1.2e10, "matmul_shape": [2048, 2048, 2048], "copy_bytes": 134217728,
                 "method": "torch.matmul float32 (TF32 off) and Tensor.copy_, median after warm-up"},
    "default_impl": "torch_cpu",
    "families": {},
    "measurements": [],
}


def test_cpu_profile_from_calibration(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "CALIBRATION_DIR", tmp_path)
    (tmp_path / "cpu-testhost.json").write_text(json.dumps(CPU_CALIBRATION))
    assert "CPU-testhost" in gpus.names()
    cpu = gpus.get("cpu-testhost")
    assert cpu.name == "CPU-testhost" and cpu.full_name == "AMD EPYC 7B13 (test)"
    assert cpu.peak_flops("fp32") == 1.1e11 and cpu.peak_flops("fp64") == 5.5e10
    assert cpu.peak_flops("bf16") == 2.0e10
    assert not cpu.supports("fp8") and cpu.nearest_dtype("fp8") == "bf16"
    assert cpu.hbm_bandwidth_bytes_per_s == 1.2e10
    assert cpu.sm_count == 2 and cpu.hbm_bytes > 0
    assert "weird" in " ".join(cpu.notes)
    assert gpus.calibration_path("CPU-testhost") == tmp_path / "cpu-testhost.json"
    assert gpus.cluster(cpu).num_gpus == 1
    assert gpus.get("H800").name == "H800"  # GPUs still resolve


@pytest.mark.parametrize(("capability", "vector_bytes", "noted"), [
    ("AVX512", 64.0, False), ("AVX2", 32.0, False), ("DEFAULT", 0.0, False),
    ("NEWISA9000", 0.0, True), (None, 0.0, True),
])
def test_cpu_profile_vector_width_from_the_recorded_capability(tmp_path, capability, vector_bytes, noted):
    data = dict(CPU_CALIBRATION)
    if capability is not None:
        data["cpu_capability"] = capability
    path = tmp_path / "cpu-simd.json"
    path.write_text(json.dumps(data))
    cpu = gpus.cpu_profile_from_calibration(path)
    assert cpu.vector_bytes == vector_bytes
    assert ("vector_bytes" in cpu.notes) == noted


def test_profile_rejects_a_negative_vector_width():
    with pytest.raises(ValueError, match="vector_bytes"):
        dataclasses.replace(gpus.get("H800"), vector_bytes=-1.0)


def test_cpu_profile_from_a_file_declaring_kind_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "CALIBRATION_DIR", tmp_path)
    (tmp_path / "buildbox.json").write_text(json.dumps({**CPU_CALIBRATION, "kind": "cpu"}))
    (tmp_path / "h800.json").write_text(json.dumps({"device": "H800", "kind": "gpu"}))
    (tmp_path / "defaults.json").write_text(json.dumps({"kinds": {}}))
    cpu_names = [n for n in gpus.names() if n.startswith("CPU-")]
    assert cpu_names == ["CPU-buildbox"]
    cpu = gpus.get("CPU-buildbox")
    assert gpus.calibration_path(cpu) == tmp_path / "buildbox.json"
    assert gpus.calibration_path("cpu buildbox") == tmp_path / "buildbox.json"


@pytest.mark.parametrize(("data", "field"), [
    ({"device": "x", "ceilings": {"copy_bytes_per_s": 1e10}}, "ceilings.matmul_flops_per_s"),
    ({"device": "x", "ceilings": {"matmul_flops_per_s": {"fp32": 1e11}}}, "ceilings.copy_bytes_per_s"),
    ({"device": "x", "ceilings": {"matmul_flops_per_s": {"fp32": -1}, "copy_bytes_per_s": 1e10}},
     "ceilings.matmul_flops_per_s.fp32"),
    ({**CPU_CALIBRATION, "cores": 0.5}, "cores"),
    ({**CPU_CALIBRATION, "cores": 0}, "cores"),
])
def test_malformed_cpu_calibration(tmp_path, monkeypatch, data, field):
    monkeypatch.setattr(loader, "CALIBRATION_DIR", tmp_path)
    (tmp_path / "cpu-bad.json").write_text(json.dumps(data))
    with pytest.raises(gpus.DataFileError, match=re.escape(f"field '{field}'")):
        gpus.get("CPU-bad")


# -- properties -----------------------------------------------------------------------------------

SHIPPED = [gpus.load_profile(path).name for path in sorted(gpus.DATA_DIR.glob("*.toml"))]


@settings(deadline=None, max_examples=25)
@given(name=st.sampled_from(SHIPPED), sep=st.sampled_from([" ", "-", "_", "  "]),
       upper=st.booleans(), vendor=st.booleans())
def test_names_resolve_under_case_separator_and_vendor_changes(name, sep, upper, vendor):
    profile = gpus.get(name)
    spelled = re.sub(r"[-_ ]", sep, name)
    spelled = spelled.upper() if upper else spelled.lower()
    if vendor:
        spelled = f"{profile.vendor} {spelled}"
    assert gpus.get(spelled) is profile


@settings(deadline=None, max_examples=25)
@given(value=st.floats(min_value=1e-3, max_value=1e5, allow_nan=False))
def test_file_values_convert_exactly_once(tmp_path_factory, value):
    tmp_path = tmp_path_factory.mktemp("conv")
    text = replace_line(H800_TEXT, "hbm_bandwidth",
                        f'hbm_bandwidth = {{ value = {value!r}, unit = "GB/s", source = "ANT" }}')
    profile = gpus.load_profile(write(tmp_path, text))
    assert profile.hbm_bandwidth_bytes_per_s == pytest.approx(value * 1e9, rel=1e-12)
    assert gpus.units.from_si(profile.hbm_bandwidth_bytes_per_s, "GB/s") == pytest.approx(value, rel=1e-12)


def test_a_kernel_vintage_is_the_same_hardware_timed_with_that_months_kernels():
    from sim import timing

    assert gpus.kernel_vintages("h800") == ["2025-02"]
    assert gpus.kernel_vintages("H100") == []
    old, new = gpus.get("H800@2025-02"), gpus.get("H800")
    assert old.name == "H800@2025-02" and old.aliases == ()
    assert gpus.get("h800-sxm5@2025-02").name == "H800@2025-02"
    assert old.peak_flops("fp8") == new.peak_flops("fp8")
    assert old.hbm_bandwidth_bytes_per_s == new.hbm_bandwidth_bytes_per_s
    assert old.nvlink_bandwidth_bytes_per_s_per_direction == new.nvlink_bandwidth_bytes_per_s_per_direction
    assert gpus.calibration_path(old).name == "h800-2025-02.json"
    a = timing.gemm_time("H800@2025-02", 4096, 7168, 2048, "fp8")
    b = timing.gemm_time("H800", 4096, 7168, 2048, "fp8")
    assert a.calibration == "H800@2025-02" and b.calibration == "H800"
    assert a.predicted_s > b.predicted_s  # DeepGEMM v1 was slower at large M
    # other Hopper GPUs still borrow the newest H800 efficiencies
    assert timing.gemm_time("H100", 4096, 7168, 2048, "fp8").calibration.startswith("H800 (")


@pytest.mark.parametrize(
    "name, message",
    [
        ("H800@2024-01", "H800 has: 2025-02"),
        ("H800@", "the form is 'H800@YYYY-MM'"),
        ("H100@2025-02", "H100 has: none"),
        ("nosuchgpu@2025-02", "unknown GPU 'nosuchgpu'"),
    ],
)
def test_an_unknown_kernel_vintage_is_refused(name, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        gpus.get(name)


def test_register_refuses_a_name_with_the_vintage_sign():
    profile = dataclasses.replace(gpus.get("H800"), name="MyGPU@2025", full_name="My GPU", aliases=())
    with pytest.raises(ValueError, match="reserved for kernel vintages"):
        gpus.register(profile)
    assert "MyGPU@2025" not in gpus.names()
