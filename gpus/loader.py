"""Reading GPU profiles from data files, the name registry, and calibration files.

Adding a GPU
------------
Copy a file from ``gpus/data/`` (``h800.toml`` is a good start), change the figures and their
sources, and either

* load it: ``p = gpus.load_profile("my_gpu.toml")``; ``p`` can be passed wherever a GPU name is
  accepted (``gpus.cluster(p, num_gpus=64)``, ``sim.estimate_training(gpu=p, ...)``);
* or register it for use by name in this session: ``gpus.register("my_gpu.toml")``, then
  ``gpus.get("my-gpu")``;
* or drop it into ``gpus/data/`` to ship it with the package.

File format (TOML, human units; converted to SI once, here)
-----------------------------------------------------------
Top level: ``name``, ``full_name``, ``vendor``, ``architecture`` (strings), ``aliases`` (list of
strings), optional ``description``. A ``[sources]`` table maps short keys to full citations.
Every figure is an inline table ``{ value = ..., unit = "...", source = "KEY" }`` (``source``: a
key of ``[sources]`` or a list of keys) with optional ``note`` (where sources disagree, say so
here), ``confidence`` (one of ``CONFIDENCE``) and ``date``; price figures need ``date``.
Sections and keys (``FIELDS`` below is the authority):

* ``[compute]`` ``sm_count`` (SMs | CUs | AI cores), ``clock`` (MHz | GHz)
* ``[peak_dense]`` one entry per number format the chip has, among fp64 fp32 tf32 bf16 fp16 fp8
  fp4 int8 (TFLOPS | TOPS | PFLOPS ...), dense: halve 2:4-sparsity datasheet figures; leave out a
  format the chip lacks (never write 0)
* ``[memory]`` ``hbm_capacity`` (driver-reported MiB where known, else GB), optional
  ``hbm_capacity_marketed`` (GB), ``hbm_bandwidth`` (TB/s | GB/s), ``l2`` (MiB | MB),
  ``smem_per_sm`` (KiB)
* ``[interconnect]`` ``nvlink_per_direction``, ``pcie_per_direction`` (GB/s, one direction:
  H800's "400 GB/s" NVLink is 200 each way)
* ``[power]`` ``tdp`` (W)
* ``[node]`` ``gpus_per_node`` (GPUs), ``scale_up_domain_gpus`` (GPUs; 72 for NVL72), optional
  ``scale_up_topology`` (a word, no unit: switch | full-mesh | bridge | none; default switch),
  ``nics_per_node`` (NICs), ``nic_bandwidth_per_direction`` (Gbit/s, per NIC)
* ``[price]`` ``usd_per_gpu_hour``, ``usd_per_gpu_hour_low``, ``usd_per_gpu_hour_high``
  (USD/GPU-hour), optional ``purchase_usd_per_gpu`` (USD)

A malformed file raises ``DataFileError`` (a ``ValueError``) naming the file and the field.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import units
from .profile import DTYPES, SCALE_UP_TOPOLOGIES, GPUProfile, NodeSpec, PriceSpec, normalize_dtype

DATA_DIR = Path(__file__).resolve().parent / "data"
CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"

# The order of gpus.names() for the shipped profiles (others follow alphabetically).
CANONICAL_ORDER = ("H100", "H800", "H20", "A800", "A100", "H200", "B200", "H100-PCIe", "H800-PCIe",
                   "Ascend-910B", "MI300X")

CONFIDENCE = ("official", "official-halved", "secondary", "derived", "measured", "assumed", "low")


class DataFileError(ValueError):
    """A GPU data file (or calibration file) that cannot be read; the message names file and field."""

    def __init__(self, path: str | Path, field: str | None, problem: str) -> None:
        where = f"{path}" + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.field = field


@dataclass(frozen=True)
class FieldSpec:
    """One figure of a data file: where it goes in the profile and what it may be."""

    section: str
    key: str
    attr: str             # field path in the profile ("peak_flops_per_s.bf16", "node.nics_per_node")
    dimension: str        # see gpus.units.UNITS
    required: bool = True
    integer: bool = False
    allow_zero: bool = False
    needs_date: bool = False
    choices: tuple[str, ...] = ()  # for dimension "text": the allowed values


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("compute", "sm_count", "sm_count", "count", integer=True),
    FieldSpec("compute", "clock", "clock_hz", "hz"),
    *(FieldSpec("peak_dense", dtype, f"peak_flops_per_s.{dtype}", "flop_per_s", required=False)
      for dtype in DTYPES),
    FieldSpec("memory", "hbm_capacity", "hbm_bytes", "bytes"),
    FieldSpec("memory", "hbm_capacity_marketed", "hbm_marketed_bytes", "bytes", required=False),
    FieldSpec("memory", "hbm_bandwidth", "hbm_bandwidth_bytes_per_s", "bytes_per_s"),
    FieldSpec("memory", "l2", "l2_bytes", "bytes"),
    FieldSpec("memory", "smem_per_sm", "smem_per_sm_bytes", "bytes"),
    FieldSpec("interconnect", "nvlink_per_direction", "nvlink_bandwidth_bytes_per_s_per_direction",
              "bytes_per_s", allow_zero=True),
    FieldSpec("interconnect", "pcie_per_direction", "pcie_bandwidth_bytes_per_s_per_direction",
              "bytes_per_s"),
    FieldSpec("power", "tdp", "tdp_w", "w"),
    FieldSpec("node", "gpus_per_node", "node.gpus_per_node", "count", integer=True),
    FieldSpec("node", "scale_up_domain_gpus", "node.scale_up_domain_gpus", "count", integer=True),
    FieldSpec("node", "scale_up_topology", "node.scale_up_topology", "text", required=False,
              choices=SCALE_UP_TOPOLOGIES),
    FieldSpec("node", "nics_per_node", "node.nics_per_node", "count", integer=True, allow_zero=True),
    FieldSpec("node", "nic_bandwidth_per_direction", "node.nic_bandwidth_bytes_per_s_per_direction",
              "bytes_per_s"),
    FieldSpec("price", "usd_per_gpu_hour", "price.usd_per_gpu_hour", "usd_per_gpu_hour", needs_date=True),
    FieldSpec("price", "usd_per_gpu_hour_low", "price.usd_per_gpu_hour_low", "usd_per_gpu_hour",
              needs_date=True),
    FieldSpec("price", "usd_per_gpu_hour_high", "price.usd_per_gpu_hour_high", "usd_per_gpu_hour",
              needs_date=True),
    FieldSpec("price", "purchase_usd_per_gpu", "price.purchase_usd_per_gpu", "usd", required=False,
              needs_date=True),
)

_TOP_STRINGS = ("name", "full_name", "vendor", "architecture")
_TOP_KEYS = {*_TOP_STRINGS, "aliases", "description", "sources", *(f.section for f in FIELDS)}
_QUANTITY_KEYS = {"value", "unit", "source", "note", "confidence", "date"}

# Peaks must not fall as the format narrows (catches a figure typed into the wrong row).
_PEAK_CHAIN = ("fp64", "fp32", "tf32", "bf16", "fp8", "fp4")


def _number(raw: Any, path: Path, where: str, spec: FieldSpec) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise DataFileError(path, where, f"value must be a number, got {raw!r}")
    if not math.isfinite(raw):
        raise DataFileError(path, where, f"value must be finite, got {raw!r}")
    if raw < 0 or (raw == 0 and not spec.allow_zero):
        allowed = "zero or more" if spec.allow_zero else "positive"
        raise DataFileError(path, where, f"value must be {allowed}, got {raw!r}")
    if spec.integer and not float(raw).is_integer():
        raise DataFileError(path, where, f"value must be a whole number, got {raw!r}")
    return float(raw)


def _resolve_sources(raw: Any, catalog: Mapping[str, str], path: Path, where: str) -> str:
    keys = [raw] if isinstance(raw, str) else raw
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
        raise DataFileError(path, where, f"source must be a key of [sources] or a list of keys, got {raw!r}")
    missing = [k for k in keys if k not in catalog]
    if missing:
        raise DataFileError(path, where, f"unknown source key(s) {', '.join(map(repr, missing))}; "
                            f"[sources] defines: {', '.join(sorted(catalog)) or 'nothing'}")
    return " | ".join(f"{k}: {catalog[k]}" for k in keys)


def _read_quantity(raw: Any, spec: FieldSpec, catalog: Mapping[str, str], path: Path,
                   out: dict[str, Any]) -> Any:
    where = f"{spec.section}.{spec.key}"
    if not isinstance(raw, dict):
        raise DataFileError(path, where, "must be a table like "
                            f"{{ value = ..., unit = \"...\", source = \"KEY\" }}, got {raw!r}")
    unknown = sorted(set(raw) - _QUANTITY_KEYS)
    if unknown:
        raise DataFileError(path, where, f"unknown key(s) {', '.join(unknown)}; allowed: "
                            f"{', '.join(sorted(_QUANTITY_KEYS))}")
    text = spec.dimension == "text"
    for needed in ("value", "source") + (() if text else ("unit",)) + (("date",) if spec.needs_date else ()):
        if needed not in raw:
            raise DataFileError(path, where, f"missing '{needed}'")
    value: Any
    if text:
        if "unit" in raw:
            raise DataFileError(path, where, "takes no unit (it is a word, not a number)")
        if raw["value"] not in spec.choices:
            raise DataFileError(path, where,
                                f"value {raw['value']!r} is not one of: {', '.join(spec.choices)}")
        value = raw["value"]
    else:
        allowed_units = units.units_of(spec.dimension)
        if raw["unit"] not in allowed_units:
            raise DataFileError(path, where, f"unit {raw['unit']!r} is not allowed here; use one of: "
                                f"{', '.join(allowed_units)}")
        value = units.to_si(_number(raw["value"], path, where, spec), raw["unit"])
    out["sources"][spec.attr] = _resolve_sources(raw["source"], catalog, path, where)
    if "note" in raw:
        if not isinstance(raw["note"], str):
            raise DataFileError(path, where, f"note must be a string, got {raw['note']!r}")
        out["notes"][spec.attr] = raw["note"]
    if "confidence" in raw:
        if raw["confidence"] not in CONFIDENCE:
            raise DataFileError(path, where, f"confidence {raw['confidence']!r} is not one of: "
                                f"{', '.join(CONFIDENCE)}")
        out["confidence"][spec.attr] = raw["confidence"]
    if "date" in raw:
        if not isinstance(raw["date"], str) or not raw["date"].strip():
            raise DataFileError(path, where, f"date must be a non-empty string such as \"2026-09\", "
                                f"got {raw['date']!r}")
        out["dates"][spec.attr] = raw["date"]
    return value


def parse_profile(data: Mapping[str, Any], path: str | Path = "<data>") -> GPUProfile:
    """Build a ``GPUProfile`` from an already-parsed TOML mapping (``path`` is used in errors)."""
    path = Path(path)
    if not isinstance(data, Mapping):
        raise DataFileError(path, None, "the file must hold a table of fields")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise DataFileError(path, unknown[0], f"unknown key(s) {', '.join(unknown)}; allowed: "
                            f"{', '.join(sorted(_TOP_KEYS))}")
    for key in _TOP_STRINGS:
        if key not in data:
            raise DataFileError(path, key, "missing")
        if not isinstance(data[key], str) or not data[key].strip():
            raise DataFileError(path, key, f"must be a non-empty string, got {data[key]!r}")
    aliases = data.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise DataFileError(path, "aliases", f"must be a list of non-empty strings, got {aliases!r}")
    catalog = data.get("sources")
    if not isinstance(catalog, dict) or not catalog:
        raise DataFileError(path, "sources",
                            "missing: a [sources] table mapping keys to citations is required")
    for key, citation in catalog.items():
        if not isinstance(citation, str) or not citation.strip():
            raise DataFileError(path, f"sources.{key}",
                                f"must be a non-empty citation string, got {citation!r}")

    specs_by_section: dict[str, dict[str, FieldSpec]] = {}
    for spec in FIELDS:
        specs_by_section.setdefault(spec.section, {})[spec.key] = spec
    out: dict[str, Any] = {"sources": {}, "notes": {}, "confidence": {}, "dates": {}}
    values: dict[str, Any] = {}
    for section, specs in specs_by_section.items():
        table = data.get(section)
        if table is None:
            if any(s.required for s in specs.values()):
                raise DataFileError(path, section, f"missing section [{section}]")
            table = {}
        if not isinstance(table, dict):
            raise DataFileError(path, section, f"must be a table [{section}], got {table!r}")
        extra = sorted(set(table) - set(specs))
        if extra:
            raise DataFileError(path, f"{section}.{extra[0]}", f"unknown key(s) {', '.join(extra)} in "
                                f"[{section}]; allowed: {', '.join(specs)}")
        for key, spec in specs.items():
            if key not in table:
                if spec.required:
                    raise DataFileError(path, f"{section}.{key}", "missing")
                continue
            values[spec.attr] = _read_quantity(table[key], spec, catalog, path, out)

    peaks = {a.split(".", 1)[1]: v for a, v in values.items() if a.startswith("peak_flops_per_s.")}
    if not peaks:
        raise DataFileError(path, "peak_dense", "lists no number format; give at least one dense peak")
    chain = [d for d in _PEAK_CHAIN if d in peaks]
    for narrow, wide in zip(chain[1:], chain[:-1], strict=True):
        if peaks[narrow] < peaks[wide]:
            raise DataFileError(path, f"peak_dense.{narrow}",
                                f"{narrow} peak ({peaks[narrow]:.4g} FLOP/s) is below the {wide} peak "
                                f"({peaks[wide]:.4g}); narrower formats are never slower: check the row and "
                                "the unit")

    dates, sources = out["dates"], out["sources"]
    try:
        node = NodeSpec(
            gpus_per_node=int(values["node.gpus_per_node"]),
            scale_up_domain_gpus=int(values["node.scale_up_domain_gpus"]),
            nics_per_node=int(values["node.nics_per_node"]),
            nic_bandwidth_bytes_per_s_per_direction=values["node.nic_bandwidth_bytes_per_s_per_direction"],
            scale_up_topology=values.get("node.scale_up_topology", "switch"),
        )
    except ValueError as error:
        raise DataFileError(path, "node", str(error)) from None
    try:
        price = PriceSpec(
            usd_per_gpu_hour=values["price.usd_per_gpu_hour"],
            usd_per_gpu_hour_low=values["price.usd_per_gpu_hour_low"],
            usd_per_gpu_hour_high=values["price.usd_per_gpu_hour_high"],
            source=sources["price.usd_per_gpu_hour"],
            date=dates["price.usd_per_gpu_hour"],
            purchase_usd_per_gpu=values.get("price.purchase_usd_per_gpu"),
            purchase_source=sources.get("price.purchase_usd_per_gpu", ""),
            purchase_date=dates.get("price.purchase_usd_per_gpu", ""),
        )
    except ValueError as error:
        raise DataFileError(path, "price", str(error)) from None
    notes = dict(out["notes"])
    for attr, date in dates.items():
        notes.setdefault(f"{attr}.date", date)
    if "description" in data:
        notes["description"] = str(data["description"])
    try:
        return GPUProfile(
            name=data["name"].strip(),
            full_name=data["full_name"].strip(),
            vendor=data["vendor"].strip(),
            architecture=data["architecture"].strip(),
            aliases=tuple(a.strip() for a in aliases),
            sm_count=int(values["sm_count"]),
            clock_hz=values["clock_hz"],
            peak_flops_per_s=peaks,
            hbm_bytes=values["hbm_bytes"],
            hbm_marketed_bytes=values.get("hbm_marketed_bytes"),
            hbm_bandwidth_bytes_per_s=values["hbm_bandwidth_bytes_per_s"],
            l2_bytes=values["l2_bytes"],
            smem_per_sm_bytes=values["smem_per_sm_bytes"],
            nvlink_bandwidth_bytes_per_s_per_direction=values["nvlink_bandwidth_bytes_per_s_per_direction"],
            pcie_bandwidth_bytes_per_s_per_direction=values["pcie_bandwidth_bytes_per_s_per_direction"],
            tdp_w=values["tdp_w"],
            node=node,
            price=price,
            sources=sources,
            notes=notes,
            confidence=out["confidence"],
            data_file=str(path),
        )
    except ValueError as error:
        raise DataFileError(path, None, str(error)) from None


def load_profile(path: str | Path) -> GPUProfile:
    """Read one GPU data file (TOML, human units) into a ``GPUProfile``; see the module docstring
    for the format. Errors name the file and the field."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise DataFileError(path, None, "no such file") from None
    except IsADirectoryError:
        raise DataFileError(path, None, "is a directory, not a GPU data file (.toml)") from None
    except tomllib.TOMLDecodeError as error:
        raise DataFileError(path, None, f"not valid TOML: {error}") from None
    return parse_profile(data, path)


# -- the registry ---------------------------------------------------------------------------------

_VENDOR_PREFIXES = ("nvidia ", "amd ", "huawei ", "instinct ")
_registered: dict[str, GPUProfile] = {}


def _key(name: str) -> str:
    """Lookup key: lower case, runs of spaces, hyphens and underscores as one space."""
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def _keys_of(name: str) -> list[str]:
    key = _key(name)
    keys = [key]
    for prefix in _VENDOR_PREFIXES:
        if key.startswith(prefix):
            keys.append(key[len(prefix):])
    return keys


def _index(profiles: list[GPUProfile]) -> dict[str, GPUProfile]:
    index: dict[str, GPUProfile] = {}
    for profile in profiles:
        for label in (profile.name, profile.full_name, *profile.aliases):
            for key in _keys_of(label):
                other = index.get(key)
                if other is not None and other.name != profile.name:
                    raise DataFileError(profile.data_file, "aliases",
                                        f"name {label!r} is already used by {other.name} ({other.data_file})")
                index[key] = profile
    return index


@lru_cache(maxsize=1)
def _builtin() -> tuple[tuple[GPUProfile, ...], dict[str, GPUProfile]]:
    profiles = [load_profile(p) for p in sorted(DATA_DIR.glob("*.toml"))]
    seen: dict[str, str] = {}
    for profile in profiles:
        if profile.name in seen:
            raise DataFileError(profile.data_file, "name",
                                f"{profile.name!r} is also the name in {seen[profile.name]}")
        seen[profile.name] = profile.data_file
    order = {name: i for i, name in enumerate(CANONICAL_ORDER)}
    profiles.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
    return tuple(profiles), _index(profiles)


def _declares_cpu(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and str(data.get("kind", "")).lower() == "cpu"


def _cpu_files() -> list[Path]:
    """Calibration files that describe a CPU: ``cpu-*.json``, or any file with ``"kind": "cpu"``."""
    found = set(CALIBRATION_DIR.glob("cpu-*.json"))
    found.update(p for p in CALIBRATION_DIR.glob("*.json")
                 if p not in found and p.name != "defaults.json" and _declares_cpu(p))
    return sorted(found)


def _cpu_name(path: Path) -> str:
    stem = path.stem
    return "CPU-" + (stem[len("cpu-"):] if stem.lower().startswith("cpu-") else stem)


def names() -> list[str]:
    """Canonical names of every known profile: shipped data files, then profiles added with
    ``register``, then CPU profiles from calibration files (``CPU-<host>``)."""
    builtin, _ = _builtin()
    result = [p.name for p in builtin]
    result += [n for n in _registered if n not in result]
    result += [_cpu_name(p) for p in _cpu_files() if _cpu_name(p) not in result]
    return result


def register(profile_or_path: GPUProfile | str | Path) -> GPUProfile:
    """Make a profile (or a data file) known to ``get`` and ``names`` for this session."""
    if not isinstance(profile_or_path, GPUProfile | str | Path):
        raise ValueError(f"register takes a GPUProfile or the path of a GPU data file (.toml), "
                         f"got {type(profile_or_path).__name__}")
    profile = profile_or_path if isinstance(profile_or_path, GPUProfile) else load_profile(profile_or_path)
    for label in (profile.name, *profile.aliases):
        if "@" in label:
            raise ValueError(f"cannot register {profile.name}: '@' in {label!r} is reserved for kernel "
                             "vintages ('H800@2025-02'); choose a name without it")
    _, builtin_index = _builtin()
    for label in (profile.name, profile.full_name, *profile.aliases):
        for key in _keys_of(label):
            clash = builtin_index.get(key)
            if clash is not None:
                raise ValueError(f"cannot register {profile.name}: the name {label!r} belongs to the shipped "
                                 f"profile {clash.name}; choose another name")
    _registered[profile.name] = profile
    return profile


def unregister(name: str) -> None:
    """Forget a profile added with ``register`` (no error if it is not there)."""
    _registered.pop(name, None)


def kernel_vintages(name: str | GPUProfile) -> list[str]:
    """Kernel vintages of a GPU ("YYYY-MM", oldest first): months whose kernel tables have their own
    calibration file, ``gpus/calibration/<gpu>-YYYY-MM.json`` (``python -m sim.calibration.published
    --as-of``). ``get("H800@2025-02")`` is the H800 timed with its kernels of February 2025."""
    profile = get(name)
    stem = slug(profile.name.partition("@")[0])
    pattern = re.compile(re.escape(stem) + r"-(\d{4}-\d{2})\.json")
    found = (pattern.fullmatch(p.name) for p in CALIBRATION_DIR.glob(f"{stem}-*.json"))
    return sorted(m.group(1) for m in found if m)


def _with_kernel_vintage(name: str) -> GPUProfile:
    """``"<gpu>@YYYY-MM"``: the GPU's profile renamed so that the timing model reads the calibration
    fitted to its kernel tables as they stood at the end of that month; the hardware is the same."""
    import dataclasses

    base, _, when = name.partition("@")
    profile = get(base)
    when = when.strip()
    available = kernel_vintages(profile)
    if when not in available:
        raise ValueError(f"no kernel calibration of {profile.name} as of {when!r} (the form is "
                         f"'{profile.name}@YYYY-MM'); {profile.name} has: "
                         f"{', '.join(available) or 'none'}; '{profile.name}' alone uses its newest kernels")
    return dataclasses.replace(profile, name=f"{profile.name}@{when}",
                               full_name=f"{profile.full_name} (kernels as of {when})", aliases=())


def get(name: str | GPUProfile) -> GPUProfile:
    """The profile for a name or alias (case-insensitive; "h800", "H800-SXM5", "NVIDIA H800" ...),
    or the profile itself if one is passed. Unknown names raise ValueError listing ``names()``.
    ``"H800@2025-02"`` is the H800 timed with its kernels of that month (:func:`kernel_vintages`)."""
    if isinstance(name, GPUProfile):
        return name
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a GPU is given by name (str) or as a GPUProfile, got {name!r}; "
                         f"known: {', '.join(names())}")
    if "@" in name:
        return _with_kernel_vintage(name)
    keys = _keys_of(name)
    if _registered:
        extra_index = _index(list(_registered.values()))
        for key in keys:
            if key in extra_index:
                return extra_index[key]
    _, index = _builtin()
    for key in keys:
        if key in index:
            return index[key]
    for path in _cpu_files():
        if _key(_cpu_name(path)) in keys or _key(path.stem) in keys:
            return _cpu_profile_cached(str(path), path.stat().st_mtime_ns)
    raise ValueError(f"unknown GPU {name!r}; known: {', '.join(names())} (aliases such as 'h800' or "
                     "'H800-SXM5' work too; add a GPU with gpus.load_profile(path) or gpus.register(path))")


# -- calibration files ----------------------------------------------------------------------------

def slug(device_name: str) -> str:
    """File-name form of a device name: lower case, runs of other characters as one hyphen."""
    return re.sub(r"[^a-z0-9]+", "-", device_name.strip().lower()).strip("-")


def calibration_path(device_name: str | GPUProfile) -> Path:
    """The calibration file of a device: ``gpus/calibration/<slug>.json``.

    For a known GPU the first existing file among its canonical name, full name and aliases is
    returned (``h800.json``, or ``nvidia-h800.json`` as ``kernels_numba.bench`` names it from the
    driver's device name), then any file whose ``"device"`` or ``"aliases"`` entry names the GPU;
    if none exists, the canonical ``<slug of name>.json``. Any other name maps to its own slug.
    The returned file may not exist."""
    profile: GPUProfile | None
    if isinstance(device_name, GPUProfile):
        profile = device_name
    else:
        try:
            profile = get(device_name)
        except ValueError:
            profile = None
    if profile is None:
        return CALIBRATION_DIR / f"{slug(str(device_name))}.json"
    if profile.data_file.endswith(".json"):  # a CPU profile built from its own calibration file
        return Path(profile.data_file)
    labels = [profile.name, profile.full_name, *profile.aliases]
    for label in labels:
        candidate = CALIBRATION_DIR / f"{slug(label)}.json"
        if candidate.is_file():
            return candidate
    wanted = {key for label in labels for key in _keys_of(label)}
    for candidate in sorted(CALIBRATION_DIR.glob("*.json")):
        if candidate.name == "defaults.json":
            continue
        try:
            data = json.loads(candidate.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(data, dict):
            continue
        declared = [data.get("device")] + list(data.get("aliases") or [])
        if any(isinstance(d, str) and wanted.intersection(_keys_of(d)) for d in declared):
            return candidate
    return CALIBRATION_DIR / f"{slug(profile.name)}.json"


def load_calibration(device_name: str | GPUProfile) -> dict[str, Any] | None:
    """The calibration data for a device (parsed JSON), or None if there is no file."""
    path = calibration_path(device_name)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataFileError(path, None, f"not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise DataFileError(path, None, "must hold a JSON object")
    return data


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in data and data[key] is not None:
            return data[key]
    return None


@lru_cache(maxsize=16)
def _cpu_profile_cached(path: str, mtime_ns: int) -> GPUProfile:
    """Re-read only when the file changes (a new bench run rewrites it)."""
    return cpu_profile_from_calibration(path)


# SIMD register width of the levels torch's CPU dispatch reports (ATen ``CPUCapability``):
# AVX-512 and AVX2 registers are 512 and 256 bits; "DEFAULT" builds use no wide vectors (0: unknown).
CPU_CAPABILITY_VECTOR_BYTES = {"AVX512": 64.0, "AVX2": 32.0, "SVE256": 32.0, "DEFAULT": 0.0}


def cpu_profile_from_calibration(path: str | Path) -> GPUProfile:
    """A profile for a CPU built from its measured ceilings in a calibration file.

    Reads ``device`` (name), ``ceilings.matmul_flops_per_s`` ({dtype: FLOP/s}; required),
    ``ceilings.copy_bytes_per_s`` (memory bandwidth; required), ``cores``, and optionally
    ``clock_hz``, ``memory_bytes``, ``l2_bytes``, ``tdp_w``, ``usd_per_hour`` and
    ``cpu_capability`` (what ``torch.backends.cpu.get_cpu_capability()`` reported: the SIMD level
    torch's kernels dispatch to, giving ``vector_bytes``). The peaks are measured ceilings, not
    datasheet figures; the notes say so.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataFileError(path, None, f"cannot read calibration JSON: {error}") from None
    if not isinstance(data, dict):
        raise DataFileError(path, None, "must hold a JSON object")
    ceilings = data.get("ceilings", data)
    if not isinstance(ceilings, dict):
        raise DataFileError(path, "ceilings", f"must be an object, got {ceilings!r}")
    matmul = _first(ceilings, "matmul_flops_per_s", "gemm_flops_per_s")
    if not isinstance(matmul, dict) or not matmul:
        raise DataFileError(path, "ceilings.matmul_flops_per_s",
                            "missing: an object {dtype: FLOP/s} is required")
    notes: dict[str, str] = {}
    peaks: dict[str, float] = {}
    for dtype, value in matmul.items():
        try:
            canonical = normalize_dtype(str(dtype))
        except ValueError:
            notes[f"peak_flops_per_s.{dtype}"] = "format not known to gpus; ignored"
            continue
        if not _is_number(value) or value <= 0:
            raise DataFileError(path, f"ceilings.matmul_flops_per_s.{dtype}",
                                f"must be a positive number, got {value!r}")
        peaks[canonical] = float(value)
    if not peaks:
        raise DataFileError(path, "ceilings.matmul_flops_per_s", "names no known number format")
    copy = _first(ceilings, "copy_bytes_per_s", "memory_bytes_per_s", "stream_bytes_per_s")
    if not _is_number(copy) or copy <= 0:
        raise DataFileError(path, "ceilings.copy_bytes_per_s", f"must be a positive number, got {copy!r}")

    def optional(key: str, *more: str, default: float = 0.0) -> float:
        value = _first(data, key, *more)
        if value is None:
            return default
        if not _is_number(value) or value < 0:
            raise DataFileError(path, key, f"must be a number >= 0, got {value!r}")
        return float(value)

    cores_value = optional("cores", "num_cores", "threads", default=1.0)
    if cores_value != int(cores_value) or cores_value < 1:
        raise DataFileError(path, "cores", f"must be a whole number of cores >= 1, got {cores_value!r}")
    cores = int(cores_value)
    clock = optional("clock_hz", default=0.0)
    if clock == 0.0:
        clock = 1e9
        notes["clock_hz"] = "not in the calibration file; placeholder 1 GHz (not used for timing)"
    memory = optional("memory_bytes", "ram_bytes", default=0.0)
    if memory == 0.0:
        memory = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        notes["hbm_bytes"] = "not in the calibration file; this machine's RAM at load time"
    price = optional("usd_per_hour", "usd_per_gpu_hour", default=0.0)
    source = f"measured ceilings in {path.name}"
    for attr in ("peak_flops_per_s", "hbm_bandwidth_bytes_per_s", "sm_count"):
        notes.setdefault(attr, "measured on this machine by kernels_numba (a ceiling, not a datasheet peak)")
    capability = _first(data, "cpu_capability")
    if capability is None:
        vector = 0.0
        notes["vector_bytes"] = "cpu_capability not recorded in the calibration file: unknown (0)"
    elif str(capability).upper() in CPU_CAPABILITY_VECTOR_BYTES:
        vector = CPU_CAPABILITY_VECTOR_BYTES[str(capability).upper()]
    else:
        vector = 0.0
        notes["vector_bytes"] = (f"cpu_capability {capability!r} has no known register width "
                                 f"(known: {', '.join(CPU_CAPABILITY_VECTOR_BYTES)}): unknown (0)")
    device = str(_first(data, "device", "device_name", "cpu") or _cpu_name(path))
    name = _cpu_name(path)
    return GPUProfile(
        name=name,
        full_name=device,
        vendor=str(_first(data, "vendor") or "CPU"),
        architecture=str(_first(data, "architecture", "cpu_model") or "CPU"),
        aliases=(device,) if device != name else (),
        sm_count=cores,
        clock_hz=clock,
        peak_flops_per_s=peaks,
        hbm_bytes=memory,
        hbm_bandwidth_bytes_per_s=float(copy),
        l2_bytes=optional("l2_bytes"),
        smem_per_sm_bytes=0.0,
        nvlink_bandwidth_bytes_per_s_per_direction=0.0,
        pcie_bandwidth_bytes_per_s_per_direction=0.0,
        tdp_w=optional("tdp_w"),
        node=NodeSpec(gpus_per_node=1, scale_up_domain_gpus=1, nics_per_node=0,
                      nic_bandwidth_bytes_per_s_per_direction=0.0),
        price=PriceSpec(usd_per_gpu_hour=price, usd_per_gpu_hour_low=price, usd_per_gpu_hour_high=price,
                        source=source if price else "not priced", date=str(_first(data, "date") or "")),
        sources={"peak_flops_per_s": source, "hbm_bandwidth_bytes_per_s": source, "sm_count": source},
        notes=notes,
        confidence={"peak_flops_per_s": "measured", "hbm_bandwidth_bytes_per_s": "measured"},
        data_file=str(path),
        vector_bytes=vector,
    )
