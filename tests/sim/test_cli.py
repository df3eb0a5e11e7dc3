"""The moe-sim command line: tables, --json, exit codes, clear errors (never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sim.cli import EXIT_BAD_INPUT, EXIT_DOES_NOT_FIT, EXIT_OK, main


def test_gpus_table_lists_the_required_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpus"]) == EXIT_OK
    out = capsys.readouterr().out
    for name in ("H100", "H800", "H20", "A800"):
        assert name in out
    assert "H800@2025-02" in out  # the kernel vintages are named under the table


def test_gpus_json_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpus", "--json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    h800 = next(p for p in data if p["name"] == "H800")
    # H800: "400 GB/s" NVLink is both directions together, 200 GB/s each way (DESIGN.md).
    assert h800["nvlink_bandwidth_bytes_per_s_per_direction"] == pytest.approx(200e9)
    assert h800["kernel_vintages"] == ["2025-02"]


def test_a_kernel_vintage_works_as_a_gpu_name_and_a_wrong_one_is_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["train", "--model", "deepseek-v3", "--num-gpus", "2048", "--pp", "16", "--ep", "64",
            "--precision", "fp8", "--json"]  # fmt: skip
    assert main([*args, "--gpu", "H800@2025-02"]) == EXIT_OK
    old = json.loads(capsys.readouterr().out)
    assert main([*args, "--gpu", "H800"]) == EXIT_OK
    new = json.loads(capsys.readouterr().out)
    assert old["step_time_s"] > new["step_time_s"]
    assert main([*args, "--gpu", "H800@2031-01"]) == EXIT_BAD_INPUT
    assert "H800 has: 2025-02" in capsys.readouterr().err


def test_models_json_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == EXIT_OK
    data = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    # DeepSeek-V3 technical report: 671B total, 37B activated per token (1%, 3%: issue 2).
    assert data["deepseek-v3"]["total_params"] == pytest.approx(671e9, rel=0.01)
    assert data["deepseek-v3"]["active_params"] == pytest.approx(37e9, rel=0.03)


def test_fit_v3_on_one_h800_node_does_not_fit_bf16(capsys: pytest.CaptureFixture[str]) -> None:
    # 671B parameters in BF16 are 1.34 TB: more than 8 x 80 GB.
    code = main(["fit", "--model", "deepseek-v3", "--gpu", "H800",
                 "--require", "serving", "--recipe", "bf16"])
    assert code == EXIT_DOES_NOT_FIT
    assert "deepseek-v3" in capsys.readouterr().out


def test_fit_v3_fp8_on_four_h800_nodes_serves(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fit", "--model", "deepseek-v3", "--gpu", "H800", "--nodes", "4", "--json",
                 "--require", "serving", "--recipe", "fp8"])
    assert code == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["num_gpus"] == 32
    fp8 = next(r for r in data["recipes"] if r["recipe"] == "fp8")
    # ~671 GB of FP8 weights over 32 GPUs is ~21 GB each, well inside 80 GB.
    assert 15e9 < fp8["weights_bytes_per_gpu"] < 30e9
    assert fp8["max_sequences_at_context"] > 0
    # KV bytes per sequence = 70,272 B/token (ISCA'25 Table 1) x 4,096 tokens.
    assert data["kv_bytes_per_sequence"] == pytest.approx(70272 * 4096)


def test_fit_more_nodes_holds_more_sequences() -> None:
    from sim.fit import fit

    small = fit("deepseek-v3", "H800", nodes=4)
    large = fit("deepseek-v3", "H800", nodes=8)
    seqs = {r.recipe: r.max_sequences_at_context for r in small.recipes}
    for r in large.recipes:
        assert r.max_sequences_at_context > seqs[r.recipe]


@pytest.mark.parametrize("argv, needle", [
    (["fit", "--model", "deepseek-v3", "--gpu", "H9000"], "H800"),
    (["fit", "--model", "no-such-model", "--gpu", "H800"], "deepseek-v3"),
    (["fit", "--model", "deepseek-v3", "--gpu", "H800", "--nodes", "0"], "nodes"),
    (["fit", "--model", "deepseek-v3", "--gpu", "H800", "--reserve", "1.5"], "reserve_fraction"),
    (["train", "--tokens", "-1"], "tokens"),
    (["train", "--usd-per-gpu-hour", "nan"], "usd_per_gpu_hour"),
    (["serve", "--deployment", '{"mode": "colocated", "nodes": 2, "ep": 16}',
      "--workload", '{"input_len": 64, "output_len": 4, "concurrency": 2}', "--sweep", "1,x"],
     "whole numbers >= 1"),
    (["serve", "--deployment", "no-such-file.json", "--workload", "{}"], "no such file"),
])
def test_bad_input_is_a_clear_error(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err


def test_console_entry_point_help_has_examples() -> None:
    out = subprocess.run([sys.executable, "-m", "sim.cli", "--help"],
                         capture_output=True, text=True, check=True)
    assert "examples:" in out.stdout and "moe-sim fit" in out.stdout


def test_fit_takes_a_config_json_path(capsys: pytest.CaptureFixture[str]) -> None:
    import moe

    path = moe.__path__[0] + "/catalog/deepseek-v2-lite.json"
    assert main(["fit", "--model", path, "--gpu", "H800", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "deepseek-v2-lite"


@pytest.mark.parametrize("text, needle", [
    ("{}", "needs 'device', 'kind' and a 'measurements' list"),
    ("[1]", "needs 'device', 'kind' and a 'measurements' list"),
    ("{bad", "is not valid JSON"),
    (None, "is not a file"),
])
def test_validate_names_a_malformed_file(tmp_path, text, needle, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "calib.json"
    if text is not None:
        path.write_text(text)
    assert main(["validate", "--file", str(path if text is not None else tmp_path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_serve_refuses_a_directory_as_json(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--deployment", str(tmp_path), "--workload", "{}"]) == EXIT_BAD_INPUT
    assert "is a directory" in capsys.readouterr().err


def test_plan_serve_json_is_one_object_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["plan", "serve", "--model", "qwen3-30b-a3b", "--gpu", "H100", "--nodes", "1",
            "--mode", "colocated", "--stack", "deepseek", "--refine", "0", "--json"]
    assert main(argv) == EXIT_OK
    out = capsys.readouterr()
    data = json.loads(out.out)
    assert data["plans"] and data["plans"][0]["flags"]["vllm"].startswith("VLLM_ALL2ALL_BACKEND")
    assert data["targets"] == {"ttft_p99_s": 5.0, "tokens_per_s_per_user": 20.0}
    assert "screening" in out.err  # the progress bar goes to stderr


def test_plan_serve_table_and_bad_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["plan", "serve", "--model", "qwen3-30b-a3b", "--gpu", "H100", "--nodes", "1",
            "--mode", "colocated", "--stack", "deepseek", "--refine", "0", "--no-progress"]
    assert main(argv) == EXIT_OK
    out = capsys.readouterr()
    assert "USD/M out" in out.out and "how to run the best plan" in out.out and out.err == ""
    bad = ["plan", "serve", "--model", "qwen3-30b-a3b", "--gpu", "H999", "--no-progress"]
    assert main(bad) == EXIT_BAD_INPUT
    assert "H999" in capsys.readouterr().err
