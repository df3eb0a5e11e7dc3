"""TOML input files (sweep specs, report specs): reading one and checking the keys of its tables, with
errors a user can act on."""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any


def read_toml(path: Path, missing: str) -> dict[str, Any]:
    """The contents of the TOML file ``path``; a ValueError saying ``missing`` where there is no such
    file, or naming the syntax error where the file is not TOML."""
    if not path.is_file():
        raise ValueError(missing)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path} is not valid TOML: {error}") from error


def reject_unknown_keys(table: Mapping[str, Any], allowed: Collection[str], where: str, what: str) -> None:
    """A ValueError if ``table`` has keys outside ``allowed``, naming them and the ``what`` allowed
    (e.g. "top-level keys"); ``where`` says which file or table it is."""
    unknown = set(table) - set(allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed {what} are {sorted(allowed)}.")
