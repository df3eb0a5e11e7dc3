"""Sweeps: a grid of configurations (models x GPUs x deployments or plans x workloads x prices) run in
chunks in this process, in local processes or on a Dask cluster, stored as Parquet and queried with
DuckDB. ``sim.sweep`` and ``sim.query_sweep`` are the entry points; ``moe-sim sweep`` and
``moe-sim query`` the commands. Dask, pyarrow and duckdb are imported only when a sweep runs."""

from __future__ import annotations

from sim.grid.spec import SweepSpec, load_sweep_spec, parse_sweep_spec

__all__ = ["SweepSpec", "load_sweep_spec", "parse_sweep_spec"]
