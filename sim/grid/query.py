"""Query a sweep's results with DuckDB: a view ``results`` over every chunk's Parquet file.

``query(results_dir, "SELECT gpu, min(usd_per_million_output_tokens) FROM results GROUP BY gpu")``
returns a ``pyarrow.Table`` (``.to_pylist()`` for rows as dicts); ``connect`` gives the DuckDB
connection itself, with the view, for several queries. The manifest is readable as JSON too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sim.grid import store

VIEW = "results"


def _parquet_glob(results_dir: str | Path) -> str:
    folder = Path(results_dir)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of sweep results (moe-sim sweep SPEC --out {folder}).")
    if not store.done_chunks(folder):
        raise ValueError(f"{folder} holds no chunk files ({store.CHUNK_GLOB}): run the sweep first.")
    return str(folder / store.CHUNK_GLOB)


def connect(results_dir: str | Path) -> Any:
    """An in-memory DuckDB connection with the view ``results`` over the folder's chunk files."""
    import duckdb

    pattern = _parquet_glob(results_dir).replace("'", "''")
    connection = duckdb.connect(":memory:")
    connection.execute(f"CREATE VIEW {VIEW} AS SELECT * FROM read_parquet('{pattern}', union_by_name = true)")
    return connection


def query(results_dir: str | Path, sql: str) -> Any:
    """Run ``sql`` (which may name the view ``results``) and return a ``pyarrow.Table``; a SQL error is a
    ValueError with DuckDB's message."""
    import duckdb

    if not isinstance(sql, str) or not sql.strip():
        raise ValueError("the query is empty; for example: SELECT count(*) FROM results")
    connection = connect(results_dir)
    try:
        relation = connection.sql(sql)
        if relation is None:  # a statement without a result (CREATE, SET ...)
            import pyarrow as pa

            return pa.table({})
        # DuckDB 2.x names it to_arrow_table, 1.x arrow
        fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
        return fetch()
    except duckdb.Error as error:
        raise ValueError(f"DuckDB refused the query: {error}") from None
    finally:
        connection.close()
