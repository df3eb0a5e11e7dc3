"""Calibration of the timing model: its data files, the efficiency model, and fitting them to kernel times.

Calibration is data (STYLE.md rule 8): fitted parameters live in ``gpus/calibration``, and this
package is the one place that fits, scores, writes and reads them. Two layers:

What the timing model reads (this module, importable without anything heavy):

* :mod:`sim.calibration.params`: the efficiency model, at most four parameters per kernel family
  (:class:`FamilyParams`, :func:`predict_seconds`), the families and their fallbacks;
* :mod:`sim.calibration.files`: finding and reading the files (:func:`find_calibration`,
  :func:`family_params`, :func:`kernel_table`, :func:`kernel_params`, :func:`eager_call_s`,
  :func:`eager_steps`, ...; :func:`files_held` for a search that reads them many times) and
  writing them (:func:`write_json`, :func:`write_eager_call`);
* :mod:`sim.calibration.fitting`: the least-squares fit (:func:`fit_params`), the fixed held-out
  split (:func:`split_fit_holdout`) and error summaries (:func:`summarise`).

Every public name of those three modules is importable from ``sim.calibration``.

Where the fitted times come from (submodules that predict each time with ``sim.timing``, which
reads this module, so this module does not import them: ``from sim.calibration import devices``):

* :mod:`sim.calibration.devices`: kernels timed on the hardware at hand (``python -m
  kernels_numba.bench``): ``groups`` (a file's measurements by family and implementation),
  ``fit_group`` / ``fit_families`` (fit), ``score_device`` (held-out errors), ``write_device_file``
  (write the fitted families), ``merge_runs`` (pool runs of the bench);
* :mod:`sim.calibration.published`: DeepSeek's published H800 tables and the V3 training trace:
  ``fit_and_score`` (fit and score), ``write_calibration`` / ``write_all`` (``h800.json`` and the
  dated ``h800-YYYY-MM.json``); ``python -m sim.calibration.published [--as-of YYYY-MM] [--write]``;
* :mod:`sim.calibration.stack_kernels`: the kernel tables of serving stacks: ``fit`` and
  ``write_fit``; ``python -m sim.calibration.stack_kernels [--write]``.

The kernels themselves and the harness that times them stay in ``kernels_numba``; its command line
(``python -m kernels_numba.validate [--json] [--measure] [--write]``) scores and writes through here.
"""

from __future__ import annotations

from sim.calibration.files import (
    HOST_EAGER_FILE,
    KERNELS_FOLDER,
    EagerStep,
    calibration_dir,
    calibration_files,
    calibration_sha256,
    default_params,
    defaults,
    device_key,
    eager_call_s,
    eager_steps,
    family_params,
    files_held,
    find_calibration,
    kernel_params,
    kernel_table,
    kernel_table_names,
    load_file,
    mtime_ns,
    write_eager_call,
    write_json,
)
from sim.calibration.fitting import FIT_TOLERANCE, abs_pct_errors, fit_params, split_fit_holdout, summarise
from sim.calibration.params import (
    DTYPE_BYTES,
    FALLBACKS,
    FAMILIES,
    PARAMETER_BOUNDS,
    PARAMETER_NAMES,
    FamilyParams,
    combine,
    dtype_bytes,
    predict_seconds,
)

__all__ = [
    "DTYPE_BYTES",
    "FALLBACKS",
    "FAMILIES",
    "FIT_TOLERANCE",
    "HOST_EAGER_FILE",
    "EagerStep",
    "eager_steps",
    "KERNELS_FOLDER",
    "PARAMETER_BOUNDS",
    "PARAMETER_NAMES",
    "FamilyParams",
    "abs_pct_errors",
    "calibration_dir",
    "calibration_files",
    "calibration_sha256",
    "combine",
    "default_params",
    "defaults",
    "device_key",
    "dtype_bytes",
    "eager_call_s",
    "family_params",
    "files_held",
    "find_calibration",
    "fit_params",
    "kernel_params",
    "kernel_table",
    "kernel_table_names",
    "load_file",
    "mtime_ns",
    "predict_seconds",
    "split_fit_holdout",
    "summarise",
    "write_eager_call",
    "write_json",
]
