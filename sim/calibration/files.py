"""Calibration files: finding, reading and writing the data under ``gpus/calibration``.

Calibration is data (STYLE.md rule 8). Each device has one JSON file under
``gpus/calibration/<device>.json`` written by ``python -m kernels_numba.bench`` (hardware at
hand) or by ``python -m kernels_numba.validate --write`` (H800, fitted to DeepSeek's published
kernel tables: :mod:`sim.calibration.published`); ``kernels/<name>.json`` holds a serving stack's
kernel table (:mod:`sim.calibration.stack_kernels`) and ``host/eager_pytorch.json`` the host time
of an eager PyTorch call. The files hold the parameters of :mod:`sim.calibration.params`; nothing
here is a hand-tuned constant except the documented defaults in ``gpus/calibration/defaults.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sim.calibration.params import FamilyParams


@lru_cache(maxsize=1)
def _package_calibration_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "gpus" / "calibration"


def calibration_dir() -> Path:
    """Folder of the per-device calibration files (``gpus/calibration``)."""
    return _package_calibration_dir()


# mtime_ns's answers while files_held() is open (None outside): path -> modification time, or -1 when
# the path does not exist
_HELD_MTIMES: dict[str, int] | None = None


@contextmanager
def files_held() -> Iterator[None]:
    """Within the block, each calibration file's (and folder's) modification time is read once and
    then taken as unchanged: a plan search looks files up hundreds of thousands of times, and a
    ``stat`` per lookup was a tenth of its time. A file rewritten inside the block is seen after it.
    Blocks nest; the outermost one's readings hold until it closes."""
    global _HELD_MTIMES
    outer = _HELD_MTIMES
    if outer is None:
        _HELD_MTIMES = {}
    try:
        yield
    finally:
        if outer is None:
            _HELD_MTIMES = None


def mtime_ns(path: Path) -> int:
    """``path``'s modification time in nanoseconds (raises FileNotFoundError when it does not exist),
    read once per :func:`files_held` block."""
    held = _HELD_MTIMES
    if held is None:
        return path.stat().st_mtime_ns
    key = str(path)
    value = held.get(key)
    if value is None:
        try:
            value = path.stat().st_mtime_ns
        except FileNotFoundError:
            value = -1
        held[key] = value
    if value < 0:
        raise FileNotFoundError(f"no such file: {path}")
    return value


@lru_cache(maxsize=8)
def _listing(folder: str, mtime_ns: int) -> tuple[Path, ...]:
    return tuple(sorted(Path(folder).glob("*.json")))


def calibration_files() -> tuple[Path, ...]:
    """The calibration folder's ``*.json`` files, sorted by name (the listing is cached by the
    folder's modification time, which changes when a file is added or removed; a timing model
    looks files up on every operator, and scanning the folder each time dominated a serving run)."""
    folder = calibration_dir()
    try:
        folder_mtime_ns = mtime_ns(folder)
    except FileNotFoundError:
        return ()
    return _listing(str(folder), folder_mtime_ns)


def calibration_sha256(length: int = 16) -> dict[str, str]:
    """Each calibration file under ``gpus/calibration`` (subfolders included, such as ``collectives/``),
    by its path relative to that folder, with the first ``length`` hex digits of its SHA-256, sorted
    by path: the provenance that results computed with these files carry (the end-to-end baselines,
    sweep rows)."""
    import hashlib

    folder = calibration_dir()
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()[:length]
        for path in sorted(folder.rglob("*.json"))
    }


@lru_cache(maxsize=64)
def _load_json(path: str, mtime_ns: int) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def load_file(path: Path) -> dict[str, Any]:
    """Parsed calibration JSON (cached by modification time, so re-written files are re-read)."""
    return _load_json(str(path), mtime_ns(path))


@lru_cache(maxsize=1024)
def device_key(name: str) -> str:
    """File stem for a device name: lower case, trademark marks ("(R)", "(TM)") dropped, every
    run of characters other than letters, digits, "." and "+" as one dash
    ("Intel(R) Xeon(R) Processor" -> "intel-xeon-processor", "H800 SXM" -> "h800-sxm")."""
    text = re.sub(r"\((r|tm)\)", "", name.strip().lower())
    return re.sub(r"[^a-z0-9.+]+", "-", text).strip("-")


def defaults() -> dict[str, Any]:
    """The uncalibrated defaults (``gpus/calibration/defaults.json``)."""
    path = calibration_dir() / "defaults.json"
    try:
        return load_file(path)
    except FileNotFoundError:
        raise ValueError(f"missing {path}: the timing model needs its documented defaults file") from None


def _labels(data: Mapping[str, Any]) -> set[str]:
    labels = {device_key(str(data.get("device", "")))}
    labels.update(device_key(str(a)) for a in data.get("aliases", []))
    return labels


@lru_cache(maxsize=256)
def _calibration_path(names: tuple[str, ...], files: tuple[Path, ...]) -> Path | None:
    by_stem = {path.stem: path for path in files}
    wanted = [device_key(n) for n in names if n]
    for key in wanted:
        if key in by_stem:
            return by_stem[key]
    for path in files:
        if path.name != "defaults.json" and _labels(load_file(path)).intersection(wanted):
            return path
    return None


KERNELS_FOLDER = "kernels"  # kernel tables of serving stacks, under the calibration folder


def kernel_table_names() -> list[str]:
    """Names of the kernel tables (``gpus/calibration/kernels/<name>.json``), sorted."""
    return sorted(p.stem for p in (calibration_dir() / KERNELS_FOLDER).glob("*.json"))


def kernel_table(name: str) -> dict[str, Any]:
    """The kernel table ``name``: a library kernel's published times with their source and the
    parameters fitted to them (``python -m sim.calibration.stack_kernels --write``)."""
    path = calibration_dir() / KERNELS_FOLDER / f"{name}.json"
    if not isinstance(name, str) or not name or "/" in name or not path.is_file():
        raise ValueError(f"unknown kernel table {name!r}; known: {', '.join(kernel_table_names()) or 'none'}")
    return load_file(path)


def kernel_params(name: str) -> FamilyParams:
    """The fitted parameters of kernel table ``name`` (fractions of the timed GPU's peaks, carried to
    any GPU the kernel runs on, as every fit of this model is)."""
    fitted = kernel_table(name).get("fitted")
    if not isinstance(fitted, Mapping) or "params" not in fitted:
        raise ValueError(
            f"kernel table {name!r} has no fitted parameters; "
            "run python -m sim.calibration.stack_kernels --write"
        )
    return FamilyParams.from_mapping(fitted["params"])


HOST_EAGER_FILE = "host/eager_pytorch.json"  # under the calibration folder


def eager_call_s() -> float:
    """Host seconds per eager PyTorch operator call (one call launching one kernel), from
    ``gpus/calibration/host/eager_pytorch.json``: its ``published`` figure (measured on a CUDA GPU, the
    launch included) where it has one, else the one ``python -m kernels_numba.host_overhead --write``
    measured here (``measured_here``: the CPU side only, a lower bound)."""
    path = calibration_dir() / HOST_EAGER_FILE
    if not path.exists():
        raise ValueError(
            f"missing {path}: a stack without CUDA graphs needs the measured host time per eager call "
            "(python -m kernels_numba.host_overhead --write)"
        )
    data = load_file(path)
    # a published measurement on a CUDA GPU (it includes the launch) before this machine's CPU-only one
    entry = data.get("published") or data.get("measured_here") or {}
    value = entry.get("eager_call_s") if isinstance(entry, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e-3:
        raise ValueError(f"{path}: 'eager_call_s' must be seconds in (0, 1e-3), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class EagerStep:
    """A published decode step of a model run eager at batch ``batch`` with tensor parallelism ``tp``,
    long enough against its GPU time that the host's issue of kernels bounds it."""

    model: str
    gpu: str
    tp: int
    batch: int
    step_s: float
    source: str


def eager_steps() -> tuple[EagerStep, ...]:
    """The ``eager_steps`` of ``gpus/calibration/host/eager_pytorch.json``, checked."""
    path = calibration_dir() / HOST_EAGER_FILE
    if not path.exists():
        raise ValueError(f"missing {path}: a stack without CUDA graphs needs its published eager steps")
    rows = load_file(path).get("eager_steps")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path}: 'eager_steps' must be a non-empty list of published eager decode steps")
    out = []
    for i, row in enumerate(rows):
        try:
            step = EagerStep(
                str(row["model"]),
                str(row["gpu"]),
                int(row["tp"]),
                int(row["batch"]),
                float(row["step_s"]),
                str(row["source"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"{path}: eager_steps[{i}] needs model, gpu, tp, batch, step_s and source ({error})"
            ) from None
        if not (step.tp >= 1 and step.batch >= 1 and 0 < step.step_s < 10):
            raise ValueError(f"{path}: eager_steps[{i}]: tp and batch >= 1, step_s in (0, 10) s; got {row}")
        out.append(step)
    return tuple(out)


def find_calibration(names: Sequence[str]) -> dict[str, Any] | None:
    """The calibration file for the first of ``names`` that has one, else None.

    A file is matched by its stem (``h800.json``) or by a ``"device"`` / ``"aliases"`` entry. Which
    file matches is remembered per folder listing; the file itself is re-read when rewritten, and a
    match by label is looked up afresh if the rewritten file no longer carries the label.
    """
    files = calibration_files()
    if not files:
        return None
    key = tuple(str(n) for n in names)
    found = _FOUND.get(key)
    # the same names against the same folder listing (the listing is cached: the same tuple while the
    # folder is unchanged, so identity is enough and no path is hashed): one stat tells whether the
    # matched file changed
    if found is not None and found[0] is files:
        _, path, found_mtime_ns, data = found
        if path is None:
            return None
        if mtime_ns(path) == found_mtime_ns:
            return data
    path = _calibration_path(key, files)
    if path is None:
        _FOUND[key] = (files, None, 0, None)
        return None
    data = load_file(path)
    wanted = {device_key(n) for n in key if n}
    if path.stem not in wanted and not _labels(data).intersection(wanted):
        _calibration_path.cache_clear()
        path = _calibration_path(key, files)
        data = None if path is None else load_file(path)
    if len(_FOUND) > 1024:
        _FOUND.clear()
    _FOUND[key] = (files, path, 0 if path is None else mtime_ns(path), data)
    return data


# find_calibration's answers per names: the folder listing they were matched against, the matched
# file, its modification time when matched and its parsed contents (a timing model asks once per
# operator it times)
_FOUND: dict[tuple[str, ...], tuple[tuple[Path, ...], Path | None, int, dict[str, Any] | None]] = {}


def family_params(
    calibration: Mapping[str, Any] | None, family: str, impl: str | None = None
) -> FamilyParams | None:
    """Fitted parameters of ``family`` (for ``impl`` or the file's default implementation)."""
    if calibration is None:
        return None
    families = calibration.get("families", {})
    per_impl = families.get(family)
    if not per_impl:
        return None
    chosen = impl or calibration.get("default_impl")
    if chosen not in per_impl:
        chosen = sorted(per_impl)[0]
    return FamilyParams.from_mapping(per_impl[chosen])


def default_params(kind: str) -> FamilyParams:
    """Uncalibrated parameters for a device kind ("gpu" or "cpu") from defaults.json."""
    data = defaults()
    if kind not in data.get("kinds", {}):
        raise ValueError(
            f"no defaults for device kind {kind!r}; defaults.json has {list(data.get('kinds', {}))}"
        )
    return FamilyParams.from_mapping(data["kinds"][kind])


def write_json(path: Path, doc: Mapping[str, Any]) -> Path:
    """Write ``doc`` to ``path`` as every calibration file is written (JSON, one-space indent, a final
    newline), through a temporary file renamed over the target so that no reader sees half a file;
    returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    return path


def write_eager_call(record: Mapping[str, Any]) -> Path:
    """Store a measurement of the host time per eager call on the machine at hand (``python -m
    kernels_numba.host_overhead --write``) as the ``measured_here`` entry of
    ``gpus/calibration/host/eager_pytorch.json``, keeping the file's ``published`` figure; returns the
    path."""
    path = calibration_dir() / HOST_EAGER_FILE
    existing = json.loads(path.read_text()) if path.exists() else {"schema": 2}
    existing["measured_here"] = dict(record)
    return write_json(path, existing)
