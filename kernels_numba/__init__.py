"""Real MoE kernels (Numba CPU, Numba-CUDA, torch references) and the harness that times them.

Modules: ``reference`` (float64 numpy ground truth), ``cpu`` (Numba ``@njit``), ``gpu``
(Numba-CUDA ``@cuda.jit`` with shared-memory tiling), ``torch_ref`` (torch), ``checks`` and
``simcheck`` (correctness), ``shapes`` (the benchmark grid), ``bench`` (``python -m
kernels_numba.bench``: time every kernel and write the device's calibration file), ``host_overhead``
(``python -m kernels_numba.host_overhead``: the host time of an eager torch call), ``validate``
(``python -m kernels_numba.validate``: score the hardware at hand and DeepSeek's H800 tables).
Fitting, scoring and writing calibration data is :mod:`sim.calibration`'s. Importing this package
imports nothing heavy.
"""
