"""benchmarks/compare.py on fake timings and a throw-away git repository: the table, the ratios,
the verdict and exit status, the A B A B order, worktree clean-up, argument errors, and a worker
process importing the simulator packages from the tree it is pointed at. No real workload runs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compare.py"


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("benchcmp_compare", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["benchcmp_compare"] = mod
    spec.loader.exec_module(mod)
    return mod


compare = _load()


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    return subprocess.run([*cmd, *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with two commits of a tree that has gpus/, moe/ and sim/ (marked by version)."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    for version in ("old", "new"):
        for pkg in compare.PACKAGES:
            (root / pkg).mkdir(exist_ok=True)
            (root / pkg / "__init__.py").write_text(f"VERSION = {version!r}\n")
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", version)
    return root


def _version(tree: Path) -> str:
    return (tree / "sim" / "__init__.py").read_text().split("'")[1]


def test_summarise_takes_min_or_median_and_judges_the_ratio() -> None:
    rows = [
        compare.Row("fast", [1.0, 0.8, 0.9], [0.5, 0.6, 0.4]),
        compare.Row("edge", [0.95, 1.2, 2.0], [1.0, 1.0, 1.0]),
        compare.Row("slow", [1.0, 1.0, 1.0], [2.0, 1.5, 3.0]),
    ]
    by_min = {s["workload"]: s for s in compare.summarise(rows, "min", 0.95)}
    assert by_min["fast"]["base_s"] == 0.8 and by_min["fast"]["head_s"] == 0.4
    assert by_min["fast"]["ratio"] == pytest.approx(2.0) and by_min["fast"]["ok"]
    assert by_min["edge"]["ratio"] == pytest.approx(0.95) and by_min["edge"]["ok"]  # the bound is met
    assert by_min["slow"]["ratio"] == pytest.approx(1 / 1.5) and not by_min["slow"]["ok"]
    by_median = {s["workload"]: s for s in compare.summarise(rows, "median", 0.95)}
    assert by_median["edge"]["base_s"] == 1.2 and by_median["edge"]["ratio"] == pytest.approx(1.2)
    assert by_median["slow"]["head_s"] == 2.0 and by_median["slow"]["ratio"] == pytest.approx(0.5)
    assert by_median["fast"]["base_samples"] == [1.0, 0.8, 0.9]


def test_table_lists_each_workload_with_its_verdict() -> None:
    rows = [compare.Row("training.engine_step", [0.3], [0.25]), compare.Row("serving", [3.0], [3.5])]
    table = compare.format_table(compare.summarise(rows, "min", 0.95), 0.95)
    lines = table.splitlines()
    assert lines[0].split() == ["workload", "base", "s", "head", "s", "base/head", ">=", "0.95"]
    assert lines[2].split() == ["training.engine_step", "0.300", "0.250", "1.200", "yes"]
    assert lines[3].split() == ["serving", "3.000", "3.500", "0.857", "NO"]
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule line up


def test_main_alternates_sides_and_removes_the_worktree(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[str, str]] = []
    timings = {
        "bench_training": {"estimate_training_s": 0.4, "engine_s": 0.3},
        "bench_serving": {"wall_s": 3.0},
    }

    def fake(tree: Path, module: str, bench_dir: Path) -> dict[str, float]:
        calls.append((_version(tree), module))
        assert bench_dir == compare.HERE
        scale = 1.0 if _version(tree) == "old" else 1.02  # head 2 % slower: ratio 0.98
        return {k: v * scale for k, v in timings[module].items()}

    out_json = tmp_path / "out.json"
    argv = ["--base", "HEAD~1", "--repeats", "2", "--json", str(out_json)]
    assert compare.main(argv, repo=repo, runner=fake) == 0
    modules = ["bench_training", "bench_training", "bench_serving", "bench_serving"]
    assert calls == list(zip(["old", "new"] * 4, modules * 2, strict=True))
    assert _git(repo, "worktree", "list").count("\n") == 1  # the temporary worktree is gone
    out = capsys.readouterr().out
    assert "base: HEAD~1 = " in out and "all meet >= 0.95" in out
    doc = json.loads(out_json.read_text())
    assert doc["passed"] and doc["base"]["commit"] == _git(repo, "rev-parse", "HEAD~1").strip()
    assert doc["head"]["tree"] == str(repo.resolve())
    assert [w["workload"] for w in doc["workloads"]] == list(compare.WORKLOADS)
    assert all(w["ratio"] == pytest.approx(1 / 1.02) for w in doc["workloads"])
    assert doc["workloads"][0]["base_samples"] == [0.4, 0.4]

    calls.clear()
    argv = ["--base", "HEAD~1", "--repeats", "1", "--min-ratio", "0.99", "--workloads", "serving.day6_100k"]
    assert compare.main(argv, repo=repo, runner=fake) == 1  # 0.98 < 0.99
    assert calls == [("old", "bench_serving"), ("new", "bench_serving")]
    assert "NO" in capsys.readouterr().out


def test_head_can_be_a_revision_too(repo: Path) -> None:
    seen: list[str] = []

    def fake(tree: Path, module: str, bench_dir: Path) -> dict[str, float]:
        seen.append(_version(tree))
        return {"estimate_training_s": 1.0, "engine_s": 1.0, "wall_s": 1.0}

    assert compare.main(["--base", "HEAD", "--head", "HEAD~1", "--repeats", "1"], repo=repo, runner=fake) == 0
    assert seen == ["new", "old", "new", "old"]
    assert _git(repo, "worktree", "list").count("\n") == 1


def test_unknown_revision_is_a_clear_error(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def never(tree: Path, module: str, bench_dir: Path) -> dict[str, float]:
        raise AssertionError("nothing should run")

    assert compare.main(["--base", "no-such-rev"], repo=repo, runner=never) == 2
    err = capsys.readouterr().err
    assert "unknown revision 'no-such-rev'" in err
    assert compare.main(["--base", "HEAD", "--head", "nope~3"], repo=repo, runner=never) == 2
    assert "unknown revision 'nope~3'" in capsys.readouterr().err
    assert _git(repo, "worktree", "list").count("\n") == 1  # the base's worktree was removed too


@pytest.mark.parametrize(
    "argv", [[], ["--base", "HEAD", "--repeats", "0"], ["--base", "HEAD", "--stat", "mean"]]
)
def test_bad_arguments_exit_2(argv: list[str], repo: Path) -> None:
    with pytest.raises(SystemExit) as e:
        compare.main(argv, repo=repo)
    assert e.value.code == 2


def test_a_directory_that_is_not_a_tree_is_refused(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "half" / "sim").mkdir(parents=True)
    assert compare.main(["--base", "HEAD", "--head", str(tmp_path / "half")], repo=repo) == 2
    assert "not a tree of the project" in capsys.readouterr().err


def test_worker_imports_the_simulator_from_the_given_tree(repo: Path, tmp_path: Path) -> None:
    """A real worker process: PYTHONPATH must win over the installed project (editable install)."""
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "bench_fake.py").write_text(
        "import gpus, moe, sim\n\n\n"
        "def workload():\n    return {'wall_s': 0.5, 'version': sim.VERSION == 'new'}\n"
    )
    assert compare.run_module(repo, "bench_fake", bench) == {"wall_s": 0.5, "version": True}
    (bench / "bench_old.py").write_text("def main():\n    pass\n")
    with pytest.raises(compare.CompareError, match="no workload"):
        compare.run_module(repo, "bench_old", bench)
