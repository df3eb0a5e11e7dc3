"""A sweep's results on disk: one Parquet file per chunk and a JSON manifest.

``RESULTS/chunk-000012.parquet`` holds chunk 12's rows (configurations ``12 * chunk_size`` up to the
next chunk's first); ``RESULTS/manifest.json`` holds the spec, its digest, the provenance of the
run and the state of every chunk (done with its row count, or failed with its errors). Every file
is written to a temporary name in the same folder and renamed over the final name
(``os.replace``, atomic on POSIX), so a file that exists is whole: a chunk file present is a chunk
done, which is what a rerun skips.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.grid.evaluate import columns

MANIFEST = "manifest.json"
CHUNK_GLOB = "chunk-*.parquet"
FORMAT_VERSION = 1

_ARROW_TYPES = {"int": "int64", "float": "float64", "str": "string", "bool": "bool_"}


def chunk_file(results_dir: Path, index: int) -> Path:
    return results_dir / f"chunk-{index:06d}.parquet"


def arrow_schema(kind: str) -> Any:
    """The Arrow schema of a ``kind`` sweep's rows (``pyarrow.Schema``)."""
    import pyarrow as pa

    return pa.schema([pa.field(name, getattr(pa, _ARROW_TYPES[code])()) for name, code in columns(kind)])


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(temporary_path)``, then rename the file over ``path``; nothing is left half-written."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        with open(temporary, "rb") as done:
            os.fsync(done.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_chunk(results_dir: Path, index: int, kind: str, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write one chunk's rows as Parquet, atomically; returns the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([dict(r) for r in rows], schema=arrow_schema(kind))
    path = chunk_file(results_dir, index)
    _atomic_write(path, lambda temporary: pq.write_table(table, temporary))
    return path


def write_manifest(results_dir: Path, manifest: Mapping[str, Any]) -> None:
    text = json.dumps(manifest, indent=1, sort_keys=False, default=str) + "\n"
    _atomic_write(
        results_dir / MANIFEST, lambda temporary: Path(temporary).write_text(text, encoding="utf-8")
    )


def read_manifest(results_dir: Path) -> dict[str, Any] | None:
    path = results_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); it is not a sweep's manifest.") from error
    if not isinstance(data, dict) or "spec_sha256" not in data:
        raise ValueError(f"{path} is not a sweep's manifest (no spec_sha256).")
    return data


def done_chunks(results_dir: Path) -> set[int]:
    """Indices of the chunk files present (each is whole: files are only ever renamed into place)."""
    found = set()
    for path in results_dir.glob(CHUNK_GLOB):
        stem = path.stem.removeprefix("chunk-")
        if stem.isdigit():
            found.add(int(stem))
    return found


def remove_temporaries(results_dir: Path) -> int:
    """Delete temporary files a killed run left behind; returns how many."""
    count = 0
    for path in results_dir.glob(".*.tmp"):
        path.unlink(missing_ok=True)
        count += 1
    return count
