"""End-to-end validation against third-party measurements: mapping rules, regimes, schema, baseline."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from reports import end_to_end as e2e
from sim.cli import main as cli_main

RECORDS = {r["id"]: r for r in e2e.load_records()}
BASELINES = e2e.baselines()


def test_repository_copy_is_the_shared_file_when_present():
    shared = e2e.REPO_ROOT.parent / "shared" / "reference" / "measured_dev.json"
    if not shared.exists():
        pytest.skip("no ../shared checkout beside the repository (CI)")
    assert json.loads(shared.read_text()) == json.loads(e2e.DATA.read_text())


def test_trtllm_017_offline_run_is_mapped_as_the_source_ran_it():
    plan = e2e.map_record(RECORDS["R216"])  # Mixtral 8x7B, 1 H100, FP8 weights+KV, 128/128
    assert plan.api == "serving" and plan.regime == "throughput"
    dep, wl = plan.kwargs["deployment"], plan.kwargs["workload"]
    assert dep == {
        "mode": "colocated",
        "nodes": 1,
        "gpus_per_node": 1,
        "tp": 1,
        "weight_dtype": "fp8",
        "kv_dtype": "fp8",
        "stack": "trtllm-0.17",
    }
    assert wl == {"mtp_draft_tokens": 0, "input_len": 128, "output_len": 128, "requests": 30000}
    assert plan.figure == "output_tokens_per_s"


def test_dep_and_stated_ep_are_kept():
    dep = e2e.map_record(RECORDS["R151"]).kwargs["deployment"]  # gpt-oss-120b, TensorRT-LLM DEP4
    assert (dep["tp"], dep["attn_dp"], dep["ep"], dep["gpus_per_node"]) == (1, 4, 4, 4)
    plan = e2e.map_record(RECORDS["R057"])  # trtllm-serve tp8 ep4 on 8 H200, max_batch 512
    dep = plan.kwargs["deployment"]
    stack = "trtllm-0.17-pytorch"  # the build the study's README names (commit 9b931c0f)
    assert (dep["ep"], dep["tp"], dep["max_batch_per_gpu"], dep["stack"]) == (4, 8, 512, stack)
    assert plan.kwargs["workload"]["requests"] == e2e.DSTACK_PROMPTS
    assert plan.kwargs["workload"]["concurrency"] == 4
    assert plan.regime == "low_concurrency"


@pytest.mark.parametrize(
    "rid, stack",
    [
        ("R216", "trtllm-0.17"),
        ("R151", "trtllm-1.0"),
        ("R121", "vllm-0.10"),
        ("R051", "vllm-0.7"),
        ("R043", "sglang-0.4"),
        ("R057", "trtllm-0.17-pytorch"),
    ],
)
def test_each_record_runs_on_the_stack_its_system_names(rid, stack):
    plan = e2e.map_record(RECORDS[rid])
    assert plan.kwargs["deployment"]["stack"] == stack
    assert any(n.startswith(f"stack {stack}:") for n in plan.assumptions)


def test_a_system_naming_no_framework_keeps_the_default_stack():
    assert e2e.stack_for("an unnamed engine, TP8")[0] is None
    assert "no framework named" in e2e.stack_for("an unnamed engine, TP8")[1]
    plan = e2e.map_record(RECORDS["R038"])  # InferenceX: its harness script runs vLLM for gpt-oss on H100
    assert plan.kwargs["deployment"]["stack"] == "vllm-0.10"
    assert any("gptoss_fp4_h100.sh" in n for n in plan.assumptions)


def test_unlisted_length_pair_takes_the_nearest_request_count_and_says_so():
    n, notes = e2e._trtllm_requests(1000, 2000)
    assert n == 3000 and "not in trtllm-bench's request table" in notes[0]
    assert e2e._trtllm_requests(20000, 2000) == (1000, [])


@pytest.mark.parametrize(
    "rid, key",
    [
        ("R040", "no_gpu_count"),
        ("R346", "no_lengths"),
        ("R120", "no_lengths"),
        ("R373", "architecture"),
        ("R360", "no_plan"),
        ("R374", "no_gpu_count"),
    ],
)
def test_unmapped_records_have_a_listed_reason(rid, key):
    with pytest.raises(e2e.Unmapped) as info:
        e2e.map_record(RECORDS[rid])
    assert info.value.key == key and info.value.key in e2e.UNMAPPED_REASONS


def test_regime_rule():
    rec = copy.deepcopy(RECORDS["R036"])  # 2 GPUs, concurrency 64
    assert e2e.regime(rec, {"tp": 2}, offline=False) == "low_concurrency"
    rec["workload"]["batch_or_concurrency"] = 65
    assert e2e.regime(rec, {"tp": 2}, offline=False) == "other"
    assert e2e.regime(rec, {"tp": 2}, offline=True) == "throughput"
    rec["n_gpus"] = 16
    assert e2e.regime(rec, {"tp": 16}, offline=True) == "large_ep"
    assert e2e.regime(rec, {"tp": 16, "ep": 8}, offline=True) == "throughput"
    assert e2e.regime(RECORDS["R359"], None, offline=False) == "training"


def test_training_record_compares_tokens_per_gpu():
    plan = e2e.map_record(RECORDS["R359"])  # Qwen3-235B, 256 H100, TP2 PP8 VP4 EP32, FP8
    kw = plan.kwargs
    assert (kw["tp"], kw["pp"], kw["virtual_stages"], kw["ep"], kw["num_gpus"]) == (2, 8, 4, 32, 256)
    assert kw["schedule"] == "interleaved-1f1b" and kw["precision"] == "fp8"
    assert plan.measured == 1575.0  # the record's notes: 1575 tokens/s/GPU


def test_every_record_is_mapped_or_has_a_listed_reason():
    for record in RECORDS.values():
        try:
            plan = e2e.map_record(record)
        except e2e.Unmapped as why:
            assert why.key in e2e.UNMAPPED_REASONS
            continue
        assert plan.regime in e2e.REGIMES
        assert plan.figure in e2e.READERS


def test_summary_schema_on_two_records(capsys):
    """The --json object: one line of JSON, the issue's keys, errors in percent."""
    code = cli_main(["validate", "--end-to-end", "--json", "--jobs", "1", "--records", "R044,R346"])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads(out)
    assert set(data) >= {"overall", "regimes", "mapped", "total", "refused", "unmapped", "records"}
    assert set(data["regimes"]) == set(e2e.REGIMES)
    assert data["total"] == 2 and data["mapped"] == 1 and len(data["unmapped"]) == 1
    rec = data["records"][0]
    assert rec["id"] == "R044"
    assert rec["error_pct"] == pytest.approx((rec["predicted"] - rec["measured"]) / rec["measured"] * 100)
    assert data["overall"]["n"] == 1
    assert data["overall"]["median_abs_error_pct"] == pytest.approx(abs(rec["error_pct"]), abs=0.01)


def test_refusal_is_a_failure_not_a_gap():
    """A configuration the source ran but the simulator refuses is listed with its message."""
    # gpt-oss-120b BF16 PP4 EP8 at MBS 4 with no recipe to say otherwise: the memory model refuses it
    record = dict(RECORDS["R358"], system="Megatron-Bridge, DGX-H100 (no container named)")
    outcome = e2e.predict(record)
    assert outcome.status == "refused"
    assert "does not fit" in outcome.message


def test_a_self_contradicting_table_row_takes_its_recipes_micro_batch():
    plan = e2e.map_record(RECORDS["R358"])  # the 25.11 table: GBS 512, MBS 4, GA 2 over DP 16
    assert plan.kwargs["micro_batch_seqs"] == 1 and plan.kwargs["global_batch_seqs"] == 512
    assert any("cannot both hold" in n for n in plan.assumptions)


def test_bad_input():
    with pytest.raises(ValueError, match="Unknown record ids"):
        e2e.run(only=["R999"])
    with pytest.raises(ValueError, match="jobs must be"):
        e2e.run(only=["R036"], jobs=0)


def test_malformed_file(tmp_path: Path):
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        e2e.load_records(bad)
    bad.write_text(json.dumps({"records": [{"id": "X"}]}))
    with pytest.raises(ValueError, match="lacks"):
        e2e.load_records(bad)
    assert cli_main(["validate", "--end-to-end", "--data", str(tmp_path / "none.json")]) == 2


def test_committed_baseline():
    """The dated baseline every later change reports against: the issue's schema, every record of the
    file accounted for, and at least 90% of the measured records mapped or refused with a message."""
    assert BASELINES, "no reports/baselines/YYYY-MM-DD-end-to-end.json committed"
    data = json.loads(BASELINES[0].read_text())
    summary = data["end_to_end"]
    ids = [r["id"] for key in ("records", "refused", "unmapped") for r in summary[key]]
    assert sorted(ids) == sorted(RECORDS)
    assert summary["total"] == len(RECORDS)
    measured = [r for r in RECORDS.values() if r["kind"] == "measured"]
    unmapped_measured = [r for r in summary["unmapped"] if r["kind"] == "measured"]
    assert len(unmapped_measured) <= 0.1 * len(measured)
    for rec in summary["refused"]:
        assert rec["message"]
    for rec in summary["unmapped"]:
        assert rec["reason_key"] in e2e.UNMAPPED_REASONS


def test_readme_end_to_end_table_is_current():
    readme = (e2e.REPO_ROOT / "README.md").read_text(encoding="utf-8")
    written = readme.split(e2e.README_BEGIN, 1)[1].split(e2e.README_END, 1)[0].strip("\n")
    assert written == e2e.render_readme(), "run python -m reports.end_to_end --write"


# Fast records of different sources and regimes, re-predicted against the committed current results so
# that a model change cannot leave them stale (the whole file takes about 15 minutes: --write).
SAMPLE = ("R044", "R216", "R234", "R121", "R038", "R362")


def test_current_results_are_what_the_model_predicts_now():
    current = json.loads(e2e.CURRENT.read_text())["end_to_end"]
    committed = {r["id"]: r for key in ("records", "refused", "unmapped") for r in current[key]}
    for outcome in e2e.run(only=SAMPLE, jobs=1):
        rec = committed[outcome.record["id"]]
        assert outcome.status == rec["status"], outcome.record["id"]
        if outcome.predicted is not None:
            assert outcome.predicted == pytest.approx(rec["predicted"], rel=1e-6), outcome.record["id"]
