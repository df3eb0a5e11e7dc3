"""Real MoE kernels (Numba CPU, Numba-CUDA, torch references), their timing harness and validation.

Modules: ``reference`` (float64 numpy ground truth), ``cpu`` (Numba ``@njit``), ``cuda``
(Numba-CUDA ``@cuda.jit`` with shared-memory tiling), ``torch_ref`` (torch), ``bench``
(``python -m kernels_numba.bench``), ``validate`` (``python -m kernels_numba.validate``),
``published`` (DeepSeek's H800 tables). Importing this package imports nothing heavy.
"""
