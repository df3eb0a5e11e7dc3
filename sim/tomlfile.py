"""Reading a TOML input file (a sweep spec, a report spec) with errors a user can act on."""

from __future__ import annotations

import tomllib
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
