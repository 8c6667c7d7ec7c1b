"""The scalar namespace numba compiles kernels.py against.

kernels.py writes its math as ``f(xp, z, ...)`` with ``xp.exp``, ``xp.where``
and friends; inside numba-compiled loops ``xp`` is this module and ``z`` one
number, so the numba backend runs the very same formulas the NumPy backend
runs on whole arrays. Only names kernels.py uses are here.

``exp`` and ``tanh`` are written out (range reduction and a polynomial, in
the argument's own precision) instead of calling libm, because LLVM can
vectorise a loop over them but not a loop that calls ``expf``: the exp-based
activations then run 4–8 samples per instruction. They keep NaN and ±inf
semantics and stay within a few ulp of libm (tested against NumPy).
"""
import builtins
import math
import os

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

# XPNET_NUMBA_CACHE=0 turns numba's on-disk cache off (NUMBA_CACHE_DIR moves it).
CACHE = os.environ.get("XPNET_NUMBA_CACHE", "1") != "0"
FASTMATH = {"contract", "reassoc"}  # FMA and reordered sums; NaN and inf are never assumed away


def jit(fn=None, **options):
    """numba.njit with xpnet's options: the on-disk cache; NumPy's error model, so x / 0 gives inf as in
    NumPy (Python's model checks every division, which also stops LLVM from vectorising the loop);
    and fastmath limited to FMA (contraction), plus what ``options`` adds."""
    options = {"cache": CACHE, "error_model": "numpy", "fastmath": {"contract"}, **options}
    return njit(**options) if fn is None else njit(**options)(fn)

abs = builtins.abs
log = math.log
log1p = math.log1p
sqrt = math.sqrt
erf = math.erf


@jit(inline="always")
def where(condition, if_true, if_false):
    return if_true if condition else if_false


@jit(inline="always")
def clip(x, low, high):
    return builtins.min(builtins.max(x, low), high)  # NaN stays NaN


@jit(inline="always")
def maximum(a, b):
    return a if a >= b or a != a else b


@jit(inline="always")
def minimum(a, b):
    return a if a <= b or a != a else b


# ---- exp, expm1 and tanh that vectorise --------------------------------------------------

@intrinsic
def _bits_as_float(typingctx, bits):
    """The float whose IEEE bits are ``bits`` (int32 → float32, int64 → float64)."""
    result = {types.int32: types.float32, types.int64: types.float64}.get(bits)
    if result is None:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(signature.return_type))

    return result(bits), codegen


def _make(dtype, int_type, low, high, degree):
    """exp, expm1 and tanh for one precision.

    exp: x = k ln 2 + r with |r| ≤ ln 2 / 2 (Cody–Waite: ln 2 split so k·ln2_hi is exact),
    e^r from its Taylor series to ``degree`` by Horner's rule, times 2^k built from bits.
    """
    f = dtype
    # ln 2 = ln2_hi + ln2_lo, ln2_hi with its low bits zero so k·ln2_hi is exact for every k in range.
    # (ln2_lo in float64 is the exact remainder, which math.log(2.0) is not precise enough to give.)
    ln2_hi = f(0.693145751953125) if dtype is np.float32 else f(0.6931471803691238)
    ln2_lo = f(math.log(2.0) - 0.693145751953125) if dtype is np.float32 else f(1.9082149292705877e-10)
    inv_ln2 = f(1.0 / math.log(2.0))
    half_ln2, one, two, zero, inf = f(math.log(2.0) / 2), f(1.0), f(2.0), f(0.0), f(np.inf)
    low, high = f(low), f(high)
    coefficients = tuple(f(1.0 / math.factorial(n)) for n in range(degree, 1, -1))
    bits = {np.float32: (np.int32(127), np.int32(23)), np.float64: (np.int64(1023), np.int64(52))}[dtype]
    bias, shift = bits

    @jit
    def expm1_reduced(r):
        """e^r − 1 for |r| ≤ ln 2 / 2: r + r²(1/2 + r/6 + …), no cancellation."""
        q = coefficients[0]
        for c in coefficients[1:]:
            q = q * r + c
        return r + r * r * q

    @jit
    def exp_(x):
        k = np.floor(builtins.min(builtins.max(x, low), high) * inv_ln2 + f(0.5))
        r = (x - k * ln2_hi) - k * ln2_lo
        ki = int_type(k)
        half = int_type(ki >> 1)  # 2^k as 2^half · 2^(k − half): both factors stay normal numbers
        y = (one + expm1_reduced(r)) * _bits_as_float(int_type((half + bias) << shift)) \
            * _bits_as_float(int_type((ki - half + bias) << shift))
        y = x if x != x else y  # NaN stays NaN
        y = inf if x > high else y
        return zero if x < low else y

    @jit
    def expm1_(x):
        small, large = expm1_reduced(x), exp_(x) - one  # both, then a select: branch-free, so it vectorises
        return small if builtins.abs(x) < half_ln2 else large

    @jit
    def tanh_(x):
        u = expm1_(-two * builtins.abs(x))  # in (−1, 0]: no overflow, no cancellation near 0
        t = -u / (two + u)
        return -t if x < zero else t

    return exp_, expm1_, tanh_


_exp32, _expm1_32, _tanh32 = _make(np.float32, np.int32, -103.98, 88.72, degree=7)
_exp64, _expm1_64, _tanh64 = _make(np.float64, np.int64, -745.2, 709.78, degree=13)


def exp(x):
    return math.exp(x)


def expm1(x):
    return math.expm1(x)


def tanh(x):
    return math.tanh(x)


def _by_precision(f32, f64, fallback):
    def impl(x):
        if isinstance(x, types.Float):
            chosen = f32 if x.bitwidth == 32 else f64
            return lambda x: chosen(x)
        return fallback
    return impl


overload(exp, inline="always")(_by_precision(_exp32, _exp64, lambda x: math.exp(x)))
overload(expm1, inline="always")(_by_precision(_expm1_32, _expm1_64, lambda x: math.expm1(x)))
overload(tanh, inline="always")(_by_precision(_tanh32, _tanh64, lambda x: math.tanh(x)))
