"""Hardware profiles: what a GPU (and a node, and a fleet) can do, in SI units.

    import gpus
    gpus.names()                       # ["H100", "H800", "H20", "A800", ...]
    h800 = gpus.get("h800")            # GPUProfile; aliases are case-insensitive
    h800.peak_flops("fp8")             # 1.979e15 FLOP/s, dense
    h800.nvlink_bandwidth_bytes_per_s_per_direction   # 200e9
    gpus.cluster("H800", num_gpus=2048)               # 256 nodes x 8

Every figure comes from a data file in ``gpus/data/`` (human units, one source per figure,
converted once by ``gpus.units``). To add a GPU, write such a file and call
``gpus.load_profile(path)`` (see ``gpus.loader`` for the format). ``gpus`` imports nothing else
of this project and nothing outside the standard library.
"""

from . import units
from .cluster import Cluster, cluster
from .loader import (
    CALIBRATION_DIR,
    DATA_DIR,
    DataFileError,
    calibration_path,
    cpu_profile_from_calibration,
    get,
    kernel_vintages,
    load_calibration,
    load_profile,
    names,
    parse_profile,
    register,
    unregister,
)
from .profile import DTYPES, SCALE_UP_TOPOLOGIES, GPUProfile, NodeSpec, PriceSpec, normalize_dtype

__all__ = [
    "CALIBRATION_DIR",
    "DATA_DIR",
    "DTYPES",
    "SCALE_UP_TOPOLOGIES",
    "Cluster",
    "DataFileError",
    "GPUProfile",
    "NodeSpec",
    "PriceSpec",
    "calibration_path",
    "cluster",
    "cpu_profile_from_calibration",
    "get",
    "kernel_vintages",
    "load_calibration",
    "load_profile",
    "names",
    "normalize_dtype",
    "parse_profile",
    "register",
    "units",
    "unregister",
]
