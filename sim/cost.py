"""Cost helpers shared by the training and serving simulators.

Two ways to price a GPU-hour:

* rental: a price per GPU-hour, with a low-high range (the GPU profile's ``PriceSpec`` carries
  ``usd_per_gpu_hour``, ``usd_per_gpu_hour_low`` and ``usd_per_gpu_hour_high``);
* TCO: purchase price amortised over a service life, plus power x PUE x electricity price.

All money is in USD, all time in seconds or hours as the name says. Nothing here knows about
models or simulators: it turns GPU-hours (or GPU-seconds) and token counts into dollars.
"""

from __future__ import annotations

import functools
import math
import numbers
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.record import Record

if TYPE_CHECKING:
    from gpus import PriceSpec

SECONDS_PER_HOUR = 3600.0
HOURS_PER_YEAR = 8766.0  # 365.25 days


def is_finite_number(value: Any) -> bool:
    """A real, finite number; bools are not numbers here (True is not a price)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_amount(value: Any, name: str, what: str, positive: bool = False) -> float:
    """``value`` as a float; a ValueError naming ``name`` unless it is finite and >= 0 (> 0)."""
    if not is_finite_number(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound} ({what}), got {value!r}.")
    return float(value)


@dataclass(frozen=True)
class PriceRange(Record):
    """A GPU-hour price with its low-high range, in USD per GPU-hour."""

    usd_per_gpu_hour: float
    usd_per_gpu_hour_low: float
    usd_per_gpu_hour_high: float
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("usd_per_gpu_hour", "usd_per_gpu_hour_low", "usd_per_gpu_hour_high"):
            value = getattr(self, name)
            if not (is_finite_number(value) and value > 0):
                raise ValueError(
                    f"{name} must be a positive finite number of USD per GPU-hour, got {value!r}."
                )
        if not self.usd_per_gpu_hour_low <= self.usd_per_gpu_hour <= self.usd_per_gpu_hour_high:
            raise ValueError(
                "A price range needs low <= price <= high, got "
                f"{self.usd_per_gpu_hour_low} <= {self.usd_per_gpu_hour} <= {self.usd_per_gpu_hour_high}."
            )


@dataclass(frozen=True)
class TCOSpec:
    """Total cost of ownership of one GPU, per hour of service.

    ``usd_per_gpu_hour`` = purchase / (amortisation_years x 8766 h)
    + power_w_per_gpu / 1000 x pue x usd_per_kwh.
    ``power_w_per_gpu`` is the all-in electrical draw attributed to one GPU (board power plus its
    share of host, network and storage); ``pue`` multiplies it for cooling and distribution.
    """

    purchase_usd_per_gpu: float
    amortisation_years: float = 4.0
    power_w_per_gpu: float = 700.0
    pue: float = 1.3
    usd_per_kwh: float = 0.08

    def __post_init__(self) -> None:
        for name in ("purchase_usd_per_gpu", "amortisation_years", "power_w_per_gpu", "usd_per_kwh"):
            value = getattr(self, name)
            if not (is_finite_number(value) and value >= 0):
                raise ValueError(f"TCO field {name} must be a finite number >= 0, got {value!r}.")
        if self.amortisation_years <= 0:
            raise ValueError(f"amortisation_years must be > 0, got {self.amortisation_years!r}.")
        if not (is_finite_number(self.pue) and self.pue >= 1.0):
            raise ValueError(
                f"pue (power usage effectiveness) must be a finite number >= 1.0, got {self.pue!r}."
            )

    @property
    def capital_usd_per_gpu_hour(self) -> float:
        return self.purchase_usd_per_gpu / (self.amortisation_years * HOURS_PER_YEAR)

    @property
    def energy_usd_per_gpu_hour(self) -> float:
        return self.power_w_per_gpu / 1000.0 * self.pue * self.usd_per_kwh

    @property
    def usd_per_gpu_hour(self) -> float:
        return self.capital_usd_per_gpu_hour + self.energy_usd_per_gpu_hour

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            capital_usd_per_gpu_hour=self.capital_usd_per_gpu_hour,
            energy_usd_per_gpu_hour=self.energy_usd_per_gpu_hour,
            usd_per_gpu_hour=self.usd_per_gpu_hour,
        )
        return out


_TCO_KEYS = {"purchase_usd_per_gpu", "amortisation_years", "power_w_per_gpu", "pue", "usd_per_kwh"}


def tco_from_mapping(spec: Mapping[str, Any]) -> TCOSpec:
    """Build a TCOSpec from a dict, rejecting unknown keys.

    Values are numbers or numeric strings (``"30000"``); anything else raises ValueError naming the key.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(
            f"A TCO must be a mapping of {sorted(_TCO_KEYS)} to numbers, got {type(spec).__name__} {spec!r}."
        )
    unknown = set(spec) - _TCO_KEYS
    if unknown:
        raise ValueError(f"Unknown TCO keys {sorted(unknown)}; allowed: {sorted(_TCO_KEYS)}.")
    if "purchase_usd_per_gpu" not in spec:
        raise ValueError(
            "A TCO needs purchase_usd_per_gpu (USD per GPU, the server price divided by its GPUs)."
        )
    values: dict[str, float] = {}
    for key, value in spec.items():
        try:
            if isinstance(value, bool):
                raise TypeError
            values[key] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"TCO field {key} must be a finite number, got {value!r}.") from None
    return TCOSpec(**values)


def price_range(
    profile_price: PriceSpec | None = None,
    usd_per_gpu_hour: float | None = None,
    tco: TCOSpec | Mapping[str, Any] | None = None,
) -> PriceRange:
    """The price used for a run and its range.

    * ``tco`` given: the TCO price, with no range (low = high = price).
    * ``usd_per_gpu_hour`` given: that price; the range is the profile's range widened to include it.
    * otherwise the profile's ``PriceSpec`` (``usd_per_gpu_hour``, ``_low``, ``_high``).
    """
    if tco is not None:
        if not isinstance(tco, TCOSpec | Mapping):
            raise ValueError(
                "tco must be a TCOSpec or a mapping such as {'purchase_usd_per_gpu': 30000.0}, got "
                f"{type(tco).__name__} {tco!r}."
            )
        spec = tco if isinstance(tco, TCOSpec) else tco_from_mapping(tco)
        price = spec.usd_per_gpu_hour
        if price <= 0:
            raise ValueError("The TCO price per GPU-hour came out as 0: give a purchase price or power.")
        return PriceRange(price, price, price, source="TCO: " + repr(spec))
    low = high = None
    source = ""
    base = None
    if profile_price is not None:
        base = getattr(profile_price, "usd_per_gpu_hour", None)
        low = getattr(profile_price, "usd_per_gpu_hour_low", None) or base
        high = getattr(profile_price, "usd_per_gpu_hour_high", None) or base
        source = str(getattr(profile_price, "source", ""))
    if usd_per_gpu_hour is not None:
        if not (is_finite_number(usd_per_gpu_hour) and usd_per_gpu_hour > 0):
            raise ValueError(f"usd_per_gpu_hour must be a positive number, got {usd_per_gpu_hour!r}.")
        price = float(usd_per_gpu_hour)
        low = min(price, low) if low else price
        high = max(price, high) if high else price
        return PriceRange(
            price, low, high, source="given" + (f"; range from profile: {source}" if source else "")
        )
    if base is None:
        raise ValueError("No price: pass usd_per_gpu_hour, a tco, or a GPU profile that has a price.")
    return PriceRange(float(base), float(low or base), float(high or base), source=source)


def rental_cost_usd(gpu_hours: float, usd_per_gpu_hour: float) -> float:
    """GPU-hours x USD per GPU-hour (both finite and >= 0)."""
    hours = _check_amount(gpu_hours, "gpu_hours", "GPU-hours")
    price = _check_amount(usd_per_gpu_hour, "usd_per_gpu_hour", "USD per GPU-hour")
    return hours * price


def cost_range_usd(gpu_hours: float, price: PriceRange) -> dict[str, float]:
    """Cost of ``gpu_hours`` at the price and at the ends of its range."""
    return {
        "usd": rental_cost_usd(gpu_hours, price.usd_per_gpu_hour),
        "usd_low": rental_cost_usd(gpu_hours, price.usd_per_gpu_hour_low),
        "usd_high": rental_cost_usd(gpu_hours, price.usd_per_gpu_hour_high),
    }


def usd_per_million_tokens(num_gpus: float, usd_per_gpu_hour: float, tokens_per_s: float) -> float:
    """USD per million tokens when ``num_gpus`` GPUs produce ``tokens_per_s`` tokens per second.

    Returns ``inf`` when no tokens are produced (``tokens_per_s`` == 0). All three must be finite
    and >= 0.
    """
    gpus = _check_amount(num_gpus, "num_gpus", "GPUs, possibly a fractional share")
    price = _check_amount(usd_per_gpu_hour, "usd_per_gpu_hour", "USD per GPU-hour")
    rate = _check_amount(tokens_per_s, "tokens_per_s", "tokens per second; 0 gives inf")
    if rate == 0:
        return math.inf
    usd_per_s = gpus * price / SECONDS_PER_HOUR
    return usd_per_s / tokens_per_s * 1e6


# ------------------------------------------------------------------------------------------------
# API list prices (data: sim/data/api_prices.toml)

API_PRICES_FILE = Path(__file__).resolve().parent / "data" / "api_prices.toml"
_PRICE_KEYS = ("cache_hit", "cache_miss", "output")


@dataclass(frozen=True)
class APIPrice:
    """A provider's list price for one model, USD per million tokens, with its source."""

    model: str
    usd_per_million_input_cache_hit: float
    usd_per_million_input_cache_miss: float
    usd_per_million_output: float
    source: str


@functools.cache
def api_prices() -> tuple[tuple[APIPrice, ...], str]:
    """DeepSeek's API list prices by model (catalog names) and the file's overall source, read from
    :data:`API_PRICES_FILE` when first asked for."""
    with API_PRICES_FILE.open("rb") as handle:
        data = tomllib.load(handle)
    overall = data.pop("source", "")
    prices = []
    for model, entry in data.items():
        if not isinstance(entry, dict) or set(entry) != {*_PRICE_KEYS, "source"}:
            raise ValueError(
                f"{API_PRICES_FILE.name}: [{model}] must have exactly the keys "
                f"{[*_PRICE_KEYS, 'source']}, got {entry!r}."
            )
        hit, miss, output = (_check_amount(entry[k], k, f"{model} price") for k in _PRICE_KEYS)
        prices.append(APIPrice(model, hit, miss, output, str(entry["source"])))
    return tuple(prices), str(overall)


def api_price(model_name: str) -> APIPrice | None:
    """The API list price of a catalog model (case-insensitive), or None when it has none."""
    key = model_name.lower()
    return next((p for p in api_prices()[0] if p.model == key), None)
