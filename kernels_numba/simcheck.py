"""Run the kernel checks on the CUDA simulator: ``python -m kernels_numba.simcheck NAME...``.

Sets ``NUMBA_ENABLE_CUDASIM=1`` before numba is imported, refuses to run if numba was already
loaded (the flag would be ignored) or if the simulator is not what ``numba.cuda`` turned out to
be, then runs the named checks of ``kernels_numba.checks.suite(small=True)`` with the Numba-CUDA
kernels. Exit status 0 only if every check passed; ``--list`` prints the names.
"""

from __future__ import annotations

import os
import sys
import time


def main(argv: list[str]) -> int:
    if "numba" in sys.modules:
        print("numba was imported before the simulator flag could be set", file=sys.stderr)
        return 2
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    import numpy as np

    from kernels_numba import checks
    from kernels_numba import gpu as impl

    if not impl.simulator_active():
        print("NUMBA_ENABLE_CUDASIM=1 was set but numba.cuda is not the simulator", file=sys.stderr)
        return 3
    cases = dict(checks.suite(small=True))
    cases["bench_runners"] = _bench_runners
    if argv == ["--list"]:
        print("\n".join(cases))
        return 0
    unknown = [n for n in argv if n not in cases]
    if unknown or not argv:
        print(f"unknown or missing check names {unknown}; known: {', '.join(cases)}", file=sys.stderr)
        return 4
    for i, name in enumerate(argv):
        start = time.perf_counter()
        cases[name](impl, np.random.default_rng([7, i, len(name)]))
        print(f"ok {name} simulator {time.perf_counter() - start:.2f} s")
    return 0


def _bench_runners(impl: object, rng: object) -> None:
    """The GPU harness glue: build a Numba-CUDA runner for a tiny case of every family and run it."""
    import numpy as np

    from kernels_numba import bench
    from kernels_numba.shapes import Case

    tiny = [
        Case("gemm", {"m": 3, "n": 20, "k": 16, "dtype": "fp32"}),
        Case("grouped_gemm", {"group_sizes": [0, 5], "n": 20, "k": 16, "dtype": "fp32"}, {"skew": 0.0}),
        Case(
            "gating",
            {"num_tokens": 5, "num_experts": 16, "top_k": 2},
            {"scoring": "sigmoid", "n_group": 4, "topk_group": 2},
        ),
        Case(
            "permute",
            {"num_tokens": 2, "hidden": 8, "top_k": 2, "dtype": "fp32", "combine": False},
            {"num_experts": 8, "skew": 1.2},
        ),
        Case(
            "permute",
            {"num_tokens": 2, "hidden": 8, "top_k": 2, "dtype": "fp32", "combine": True},
            {"num_experts": 8, "skew": 1.2},
        ),
        Case(
            "attention_prefill",
            {
                "batch": 1,
                "q_len": 5,
                "kv_len": 5,
                "num_heads": 2,
                "qk_head_dim": 8,
                "v_head_dim": 8,
                "causal": True,
                "dtype": "fp32",
            },
            {"kv_heads": 2},
        ),
        Case(
            "attention_decode",
            {
                "batch": 1,
                "q_len": 1,
                "kv_len": 9,
                "num_heads": 4,
                "qk_head_dim": 8,
                "v_head_dim": 8,
                "causal": True,
                "dtype": "fp32",
            },
            {"kv_heads": 1},
        ),
    ]
    for index, case in enumerate(tiny):
        inputs = bench.make_inputs(case, np.random.default_rng([0, index]))
        bench.numba_cuda_runner(case, inputs)()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
