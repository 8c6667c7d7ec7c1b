"""Matrix products from numba-compiled code through NumPy's own BLAS.

numba's ``np.dot`` calls the BLAS SciPy bundles; NumPy's wheels bundle their
own. On the AMD EPYC of the README the two were OpenBLAS 0.3.30 and 0.3.31,
and SciPy's took 1.6–1.9× as long on LeNet's products and 1.2× on conv64's,
in one thread as in two (called through ctypes, so the library alone
differs). Two BLAS thread pools spinning side by side also slow each other
down. So the numba backend multiplies with NumPy's BLAS everywhere: ``@`` in
Python, and ``gemm`` below in compiled code.

``gemm`` calls NumPy's CBLAS by a symbol name that this module registers with
LLVM when it is imported: numba's cache keeps the machine code, which names
the symbol rather than an address, so cached code calls the library of the
process that loads it. Where NumPy's BLAS cannot be found (a NumPy built
against MKL or a system BLAS rather than the wheels' scipy-openblas64), or
when ``XPNET_NUMBA_BLAS=scipy``, ``gemm`` calls numba's own helper instead,
the one behind its ``np.dot``: SciPy's BLAS, as before. ``CBLAS`` says which
(compiled functions that call ``gemm`` carry it in their names, so the cache
keeps one copy of each).
"""
import ctypes
import os

from llvmlite import binding, ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from .numpy_backend import numpy_openblas

_SYMBOLS = {"float32": ("scipy_cblas_sgemm64_", "xpnet_cblas_sgemm"),
            "float64": ("scipy_cblas_dgemm64_", "xpnet_cblas_dgemm")}


CHOICE = os.environ.get("XPNET_NUMBA_BLAS", "numpy")
PROBLEM = None if CHOICE in ("numpy", "scipy") else \
    f"XPNET_NUMBA_BLAS must be 'numpy' (the default) or 'scipy', got {CHOICE!r}"  # the backend's probe says so


def _register():
    """Registers NumPy's sgemm and dgemm under xpnet's names; returns the library's path, or None."""
    if CHOICE != "numpy":
        return None
    path = numpy_openblas()
    if path is None:
        return None
    try:
        library = ctypes.CDLL(path)  # already loaded by NumPy: the same copy, and so the same thread pool
        addresses = {ours: ctypes.cast(getattr(library, theirs), ctypes.c_void_p).value
                     for theirs, ours in _SYMBOLS.values()}
    except (OSError, AttributeError):  # not the library we know
        return None
    for name, address in addresses.items():
        binding.add_symbol(name, address)
    return path


CBLAS = _register()
NAME = "cblas" if CBLAS else "dot"  # in the names of compiled functions that call gemm (see above)
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS's enums


@intrinsic
def gemm(typingctx, trans_a, trans_b, m, n, k, a, a_offset, b, b_offset, c, c_offset):
    """C ← op(A) op(B), row-major, on flat contiguous arrays from the given element offsets: op(A) is (m, k),
    stored (m, k), or (k, m) when trans_a; op(B) is (k, n), stored (k, n), or (n, k) when trans_b; C is (m, n).
    No views, so no reference counts: it compiles in functions without numba's runtime."""
    if not all(isinstance(x, types.Array) and x.ndim == 1 and x.layout == "C" and x.dtype == a.dtype
               for x in (a, b, c)) or str(a.dtype) not in _SYMBOLS:
        return None
    dtype = a.dtype

    def codegen(context, builder, signature, args):
        i64, i32 = ir.IntType(64), ir.IntType(32)
        ta, tb, m, n, k, ao, bo, co = (context.cast(builder, args[i], signature.args[i], types.int64)
                                       for i in (0, 1, 2, 3, 4, 6, 8, 10))  # flags, sizes and offsets

        def pointer(array_type, value, offset):
            data = context.make_array(array_type)(context, builder, value).data
            return builder.bitcast(builder.gep(data, [offset]), cgutils.voidptr_t)

        pa, pb, pc = (pointer(signature.args[i], args[i], offset) for i, offset in ((5, ao), (7, bo), (9, co)))
        zero = ir.Constant(i64, 0)
        transposed_a, transposed_b = builder.icmp_signed("!=", ta, zero), builder.icmp_signed("!=", tb, zero)
        lda = builder.select(transposed_a, m, k)  # the stored row length
        ldb = builder.select(transposed_b, k, n)
        scalar = context.get_value_type(dtype)
        one, nought = context.get_constant(dtype, 1.0), context.get_constant(dtype, 0.0)
        if CBLAS:
            fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, scalar, cgutils.voidptr_t, i64,
                                                   cgutils.voidptr_t, i64, scalar, cgutils.voidptr_t, i64])
            fn = cgutils.get_or_insert_function(builder.module, fnty, _SYMBOLS[str(dtype)][1])
            flag = lambda t: builder.select(t, ir.Constant(i32, _TRANS), ir.Constant(i32, _NO_TRANS))  # noqa: E731
            builder.call(fn, [ir.Constant(i32, _ROW_MAJOR), flag(transposed_a), flag(transposed_b), m, n, k, one, pa,
                              lda, pb, ldb, nought, pc, n])
        else:  # numba's helper is column-major (Fortran's): row-major C = A B is column-major Cᵀ = Bᵀ Aᵀ
            char = ir.IntType(8)
            fnty = ir.FunctionType(i32, [char, char, char, i64, i64, i64, cgutils.voidptr_t, cgutils.voidptr_t, i64,
                                         cgutils.voidptr_t, i64, cgutils.voidptr_t, cgutils.voidptr_t, i64])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
            flag = lambda t: builder.select(t, ir.Constant(char, ord("t")), ir.Constant(char, ord("n")))  # noqa: E731
            slot = lambda v: builder.bitcast(cgutils.alloca_once_value(builder, v), cgutils.voidptr_t)  # noqa: E731
            status = builder.call(fn, [ir.Constant(char, ord("s" if dtype == types.float32 else "d")),
                                       flag(transposed_b), flag(transposed_a), n, m, k, slot(one), pb, ldb, pa, lda,
                                       slot(nought), pc, n])
            with builder.if_then(cgutils.is_neg_int(builder, status), likely=False):
                context.call_conv.return_user_exc(builder, RuntimeError, ("BLAS not available (numba needs SciPy)",))
        return context.get_dummy_value()

    return types.void(trans_a, trans_b, m, n, k, a, a_offset, b, b_offset, c, c_offset), codegen
