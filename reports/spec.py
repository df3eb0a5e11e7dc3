"""Report specs: which notebooks to run over which models, GPUs and scenarios.

A spec is a TOML file (see ``reports/specs/default.toml``)::

    title = "..."                 # shown on the index page
    workers = 2                   # parallel worker processes (the command line may override)
    cell_timeout_s = 900          # per notebook cell
    show_code = false             # hide code cells in the HTML
    models = ["deepseek-v4-flash"]   # the grid, used by scenarios whose axes name it
    gpus = ["H800", "H20"]

    [[scenarios]]
    name = "training"             # unique; letters, digits, "-" and "_"
    notebook = "02_training_cost" # a file in notebooks/ (".ipynb" optional)
    axes = ["model", "gpu"]       # which grid axes the scenario expands over ([] = one run)
    models = [...]                # optional: this scenario's own list instead of the grid's
    gpus = [...]
    parameters = { ... }          # plain values for the notebook's parameters cell

Each scenario contributes one run per combination of its axes. The notebook receives ``model``
and/or ``gpu`` for the axes it expands over, the scenario's ``parameters``, and ``summary_path``
(where it writes its headline figures as JSON).
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sim.tomlfile import read_toml, reject_unknown_keys

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
DEFAULT_SPEC = Path(__file__).resolve().parent / "specs" / "default.toml"

_TOP_KEYS = {"title", "workers", "cell_timeout_s", "show_code", "models", "gpus", "scenarios"}
_SCENARIO_KEYS = {"name", "notebook", "axes", "models", "gpus", "parameters"}
_AXES = ("model", "gpu")
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Run:
    """One notebook execution: a scenario at one point of its grid."""

    run_id: str
    scenario: str
    notebook: str
    model: str | None
    gpu: str | None
    parameters: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "parameters": dict(self.parameters)}


@dataclass(frozen=True)
class ReportSpec:
    """A parsed spec: its settings and the list of runs it expands to."""

    path: Path
    title: str
    workers: int
    cell_timeout_s: float
    show_code: bool
    runs: tuple[Run, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path), "runs": [run.to_dict() for run in self.runs]}


def notebook_path(name: str, notebooks_dir: Path = NOTEBOOKS_DIR) -> Path:
    """The notebook file a spec names: ``"02_training_cost"`` -> ``notebooks/02_training_cost.ipynb``."""
    path = Path(name)
    if path.suffix != ".ipynb":
        path = path.with_suffix(".ipynb")
    return path if path.is_absolute() else notebooks_dir / path


def _string_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where} must be a list of non-empty strings, got {value!r}.")
    return list(value)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def parse_spec(data: Mapping[str, Any], path: Path) -> ReportSpec:
    """Check a spec's contents and expand it into runs; bad input raises ValueError saying what."""
    reject_unknown_keys(data, _TOP_KEYS, str(path), "top-level keys")
    title = data.get("title", path.stem)
    if not isinstance(title, str):
        raise ValueError(f"{path}: title must be a string.")
    workers = data.get("workers", 2)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"{path}: workers must be a positive integer, got {workers!r}.")
    cell_timeout_s = data.get("cell_timeout_s", 900)
    if (
        not isinstance(cell_timeout_s, int | float)
        or isinstance(cell_timeout_s, bool)
        or not math.isfinite(cell_timeout_s)
        or cell_timeout_s <= 0
    ):
        raise ValueError(f"{path}: cell_timeout_s must be a finite positive number of seconds.")
    show_code = data.get("show_code", False)
    if not isinstance(show_code, bool):
        raise ValueError(f"{path}: show_code must be true or false.")
    grid = {
        "model": _string_list(data.get("models", []), f"{path}: models"),
        "gpu": _string_list(data.get("gpus", []), f"{path}: gpus"),
    }
    scenarios = data.get("scenarios")
    if not isinstance(scenarios, list) or not scenarios:
        raise ValueError(f"{path}: a spec needs at least one [[scenarios]] table.")

    runs: list[Run] = []
    seen_scenarios: set[str] = set()
    for index, scenario in enumerate(scenarios):
        where = f"{path}: scenario #{index + 1}"
        if not isinstance(scenario, Mapping):
            raise ValueError(f"{where} must be a table.")
        reject_unknown_keys(scenario, _SCENARIO_KEYS, where, "keys")
        name = scenario.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(f"{where}: name must use only letters, digits, '-' and '_', got {name!r}.")
        if name in seen_scenarios:
            raise ValueError(f"{where}: scenario name {name!r} is used twice.")
        seen_scenarios.add(name)
        notebook = scenario.get("notebook")
        if not isinstance(notebook, str) or not notebook:
            raise ValueError(f"{where} ({name}): notebook must name a file in notebooks/.")
        axes = _string_list(scenario.get("axes", []), f"{where} ({name}): axes")
        for axis in axes:
            if axis not in _AXES:
                raise ValueError(f"{where} ({name}): unknown axis {axis!r}; axes may be {list(_AXES)}.")
        parameters = scenario.get("parameters", {})
        if not isinstance(parameters, Mapping):
            raise ValueError(f"{where} ({name}): parameters must be a table of plain values.")
        reserved = {"summary_path", *axes} & set(parameters)
        if reserved:
            raise ValueError(
                f"{where} ({name}): parameters {sorted(reserved)} are set by the runner; "
                "list models and GPUs under models/gpus instead."
            )
        values: dict[str, list[str | None]] = {}
        for axis in _AXES:
            key = axis + "s"
            if axis in axes:
                own = scenario.get(key)
                chosen = _string_list(own, f"{where} ({name}): {key}") if own is not None else grid[axis]
                if not chosen:
                    raise ValueError(
                        f"{where} ({name}): expands over {axis} but no {key} are listed "
                        f"(give {key} = [...] in the spec or in the scenario)."
                    )
                values[axis] = list(chosen)
            else:
                if scenario.get(key) is not None:
                    raise ValueError(f"{where} ({name}): lists {key} but does not expand over {axis!r}.")
                values[axis] = [None]
        for model, gpu in itertools.product(values["model"], values["gpu"]):
            parts = [name] + [p for p in (model, gpu) if p is not None]
            runs.append(
                Run(
                    run_id=_slug("__".join(parts)),
                    scenario=name,
                    notebook=notebook,
                    model=model,
                    gpu=gpu,
                    parameters=dict(parameters),
                )
            )
    ids = [run.run_id for run in runs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{path}: runs {duplicates} appear twice; list each model and GPU once.")
    return ReportSpec(
        path=path,
        title=title,
        workers=workers,
        cell_timeout_s=float(cell_timeout_s),
        show_code=show_code,
        runs=tuple(runs),
    )


def notebook_parameters(path: Path) -> dict[str, Any]:
    """The names a notebook's ``parameters`` cell assigns, with their default values (``...`` where
    a default is not a literal)."""
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    found: dict[str, Any] = {}
    for cell in cells:
        if "parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        source = cell.get("source", "")
        tree = ast.parse("".join(source) if isinstance(source, list) else source)
        for node in tree.body:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        try:
                            found[target.id] = ast.literal_eval(node.value)
                        except ValueError:
                            found[target.id] = ...
    return found


def _same_kind(value: Any, default: Any) -> bool:
    """Whether a spec value can stand for a parameter with this default: numbers for numbers, true or
    false for booleans, lists for lists; other defaults (strings that may also take a table, such as
    ``plan``) take any value."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int | float):
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if isinstance(default, list):
        return isinstance(value, list)
    return True


def check_runs(spec: ReportSpec, notebooks_dir: Path = NOTEBOOKS_DIR) -> None:
    """Check what a run needs before any run starts, so that a typo is exit 2 at once rather than a
    failed run minutes later: the notebook exists, its parameters cell declares every parameter the
    spec sets (with a value of the same kind as its default), the models and GPUs are known, and no
    two runs of a scenario name the same model and GPU under different spellings."""
    import gpus
    import moe

    known = sorted(p.stem for p in notebooks_dir.glob("*.ipynb"))
    declared: dict[str, dict[str, Any]] = {}
    seen: dict[tuple[str, str | None, str | None], str] = {}
    for run in spec.runs:
        where = f"{spec.path}: scenario {run.scenario!r}"
        source = notebook_path(run.notebook, notebooks_dir)
        if not source.is_file():
            raise ValueError(
                f"{where}: notebook {run.notebook!r} is not one of {known} (nor a notebook file's path)."
            )
        if run.notebook not in declared:
            declared[run.notebook] = notebook_parameters(source)
        defaults = declared[run.notebook]
        for key, value in run.parameters.items():
            if key not in defaults:
                allowed = sorted(k for k in defaults if k not in ("summary_path", "model", "gpu"))
                raise ValueError(f"{where}: {run.notebook} has no parameter {key!r}; it takes {allowed}.")
            if not _same_kind(value, defaults[key]):
                raise ValueError(
                    f"{where}: parameter {key} = {value!r} is not of the kind of its default "
                    f"{defaults[key]!r} in {run.notebook}."
                )
        model = moe.get(run.model).name if run.model is not None else None
        gpu = gpus.get(run.gpu).name if run.gpu is not None else None
        key3 = (run.scenario, model, gpu)
        if key3 in seen:
            raise ValueError(
                f"{where}: runs {seen[key3]!r} and {run.run_id!r} are the same model and GPU; list each once."
            )
        seen[key3] = run.run_id


def load_spec(path: str | Path = DEFAULT_SPEC) -> ReportSpec:
    """Read and check a spec file."""
    path = Path(path)
    data = read_toml(path, f"spec file {path} does not exist (the default is {DEFAULT_SPEC}).")
    return parse_spec(data, path)
