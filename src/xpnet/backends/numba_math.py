"""The scalar namespace numba compiles kernels.py against.

kernels.py writes its math as ``f(xp, z, ...)`` with ``xp.exp``, ``xp.where``
and friends; inside numba-compiled loops ``xp`` is this module and ``z`` one
number, so the numba backend runs the very same formulas the NumPy backend
runs on whole arrays. Only names kernels.py uses are here.
"""
import builtins
import math
import os

from numba import njit

# XPNET_NUMBA_CACHE=0 turns numba's on-disk cache off (NUMBA_CACHE_DIR moves it).
CACHE = os.environ.get("XPNET_NUMBA_CACHE", "1") != "0"

abs = builtins.abs
exp = math.exp
log = math.log
log1p = math.log1p
sqrt = math.sqrt
tanh = math.tanh
erf = math.erf


@njit(inline="always", cache=CACHE)
def where(condition, if_true, if_false):
    return if_true if condition else if_false


@njit(inline="always", cache=CACHE)
def clip(x, low, high):
    return builtins.min(builtins.max(x, low), high)  # NaN stays NaN


@njit(inline="always", cache=CACHE)
def maximum(a, b):
    return a if a >= b or a != a else b


@njit(inline="always", cache=CACHE)
def minimum(a, b):
    return a if a <= b or a != a else b
