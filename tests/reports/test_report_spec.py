"""The spec format: expansion into runs and clear errors for bad specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports.runner import main, make_offline
from reports.spec import DEFAULT_SPEC, check_runs, load_spec, parse_spec

PATH = Path("spec.toml")


def test_default_spec_expands_over_its_grid():
    spec = load_spec(DEFAULT_SPEC)
    ids = [run.run_id for run in spec.runs]
    assert len(ids) == len(set(ids))
    assert "validation" in ids
    assert {"training__deepseek-v4-flash__H800", "training__deepseek-v4-flash__H20"} <= set(ids)
    assert all(Path("notebooks", run.notebook + ".ipynb").is_file() for run in spec.runs)


def test_axes_expand_and_scenarios_override_the_grid():
    spec = parse_spec(
        {
            "models": ["m1", "m2"],
            "gpus": ["g1", "g2", "g3"],
            "scenarios": [
                {"name": "both", "notebook": "x", "axes": ["model", "gpu"]},
                {"name": "own", "notebook": "x", "axes": ["gpu"], "gpus": ["z"]},
                {"name": "once", "notebook": "x", "parameters": {"a": 1}},
            ],
        },
        PATH,
    )
    ids = [run.run_id for run in spec.runs]
    assert len(ids) == 6 + 1 + 1
    assert "own__z" in ids and "once" in ids
    once = next(run for run in spec.runs if run.run_id == "once")
    assert once.model is None and once.gpu is None and once.parameters == {"a": 1}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"scenarios": [{"name": "a", "notebook": "x"}], "colour": 1}, "unknown key"),
        ({"scenarios": []}, "at least one"),
        ({"scenarios": [{"name": "a b", "notebook": "x"}]}, "letters, digits"),
        ({"scenarios": [{"name": "a", "notebook": "x", "axes": ["dtype"]}]}, "unknown axis"),
        ({"scenarios": [{"name": "a", "notebook": "x", "axes": ["gpu"]}]}, "no gpus are listed"),
        ({"scenarios": [{"name": "a", "notebook": "x", "parmeters": {}}]}, "unknown key"),
        ({"scenarios": [{"name": "a", "notebook": "x"}, {"name": "a", "notebook": "y"}]}, "used twice"),
        ({"gpus": ["H800"], "scenarios": [{"name": "a", "notebook": "x", "axes": ["gpu"],
                                           "parameters": {"gpu": "H20"}}]}, "set by the runner"),
        ({"workers": 0, "scenarios": [{"name": "a", "notebook": "x"}]}, "workers"),
        ({"cell_timeout_s": float("nan"), "scenarios": [{"name": "a", "notebook": "x"}]}, "cell_timeout_s"),
        ({"cell_timeout_s": float("inf"), "scenarios": [{"name": "a", "notebook": "x"}]}, "cell_timeout_s"),
    ],
)
def test_bad_specs_are_refused_with_a_sentence(data, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(data, PATH)


def test_a_bad_spec_file_exits_2(tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text('title = "x"\nunknown = 1\n[[scenarios]]\nname = "a"\nnotebook = "01_gpus"\n')
    assert main([str(spec), "-o", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "unknown key" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.toml"), "--no-progress"]) == 2


def test_make_offline_strips_cdn_mathjax_and_refuses_other_network_scripts():
    page = '<script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/3.2.2/es5/tex-svg.min.js"></script>ok'
    assert make_offline(page) == "ok"
    assert "cdn.plot.ly" not in make_offline('{dflt:"https://cdn.plot.ly/un/"}')
    with pytest.raises(ValueError, match="network"):
        make_offline('<script src="https://example.org/x.js"></script>')
    with pytest.raises(ValueError, match="cdn.plot.ly"):
        make_offline('<script>fetch("https://cdn.plot.ly/plotly-2.0.min.js")</script>')


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"scenarios": [{"name": "a", "notebook": "99_nope"}]}, "is not one of"),
        ({"scenarios": [{"name": "a", "notebook": "../README"}]}, "is not one of"),
        ({"scenarios": [{"name": "a", "notebook": "03_serving_cost", "parameters": {"duraton_s": 60.0}}]},
         "has no parameter 'duraton_s'"),
        ({"scenarios": [{"name": "a", "notebook": "03_serving_cost", "parameters": {"duration_s": "sixty"}}]},
         "not of the kind of its default"),
        ({"scenarios": [{"name": "a", "notebook": "04_validation", "parameters": {"run_training": 1}}]},
         "not of the kind of its default"),
        ({"models": ["gpt-5"],
          "scenarios": [{"name": "a", "notebook": "02_training_cost", "axes": ["model"]}]}, "unknown model"),
        ({"gpus": ["H900"], "scenarios": [{"name": "a", "notebook": "01_gpus", "axes": ["gpu"]}]}, "H800"),
        ({"gpus": ["H800", "h800"], "scenarios": [{"name": "a", "notebook": "01_gpus", "axes": ["gpu"]}]},
         "same model and GPU"),
    ],
)
def test_runs_are_checked_before_any_starts(data, message):
    with pytest.raises(ValueError, match=message):
        check_runs(parse_spec(data, PATH))


def test_a_spec_naming_an_unknown_gpu_exits_2_at_once(tmp_path, capsys):
    spec = tmp_path / "typo.toml"
    spec.write_text('gpus = ["H900"]\n[[scenarios]]\nname = "a"\nnotebook = "01_gpus"\naxes = ["gpu"]\n')
    assert main([str(spec), "-o", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "H900" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_notebook_outside_the_folder_is_taken_by_its_path(tmp_path):
    import shutil

    own = tmp_path / "mine.ipynb"
    shutil.copy("notebooks/01_gpus.ipynb", own)

    def spec(parameters):
        scenario = {"name": "a", "notebook": str(own), "parameters": parameters}
        return parse_spec({"scenarios": [scenario]}, PATH)

    check_runs(spec({"dtype": "fp8"}))
    with pytest.raises(ValueError, match="has no parameter 'dtyp'"):
        check_runs(spec({"dtyp": 1}))
