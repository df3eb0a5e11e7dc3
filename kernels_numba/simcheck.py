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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
