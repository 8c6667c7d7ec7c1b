"""One reusable checker for a differentiable op: inputs + NumPy reference →
forward value, output dtype, backward against float64 finite differences, and
the same results on non-contiguous inputs (Chainer's check_backward, for xpnet).
"""
import numpy as np

RTOL = {"float32": 1e-5, "float64": 1e-10}
ATOL = {"float32": 1e-6, "float64": 1e-12}


def strided(backend, a, dtype):
    """``a`` as a non-contiguous backend array: every other column of a wider array."""
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],) if a.ndim else (), dtype=a.dtype)
    if a.ndim == 0:
        return backend.asarray(a, dtype=dtype)
    wide[..., ::2] = a
    return backend.asarray(wide, dtype=dtype)[..., ::2]


def numerical_grads(f, inputs, grad_out, eps=1e-6):
    """∂/∂inputs of sum(grad_out · f(*inputs)) by central differences, in float64 on the host."""
    grads = []
    for k, x in enumerate(inputs):
        g = np.zeros_like(x)
        for index in np.ndindex(*x.shape):
            old = x[index]
            x[index] = old + eps
            plus = np.sum(grad_out * f(*inputs))
            x[index] = old - eps
            minus = np.sum(grad_out * f(*inputs))
            x[index] = old
            g[index] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def check_op(backend, forward, inputs, reference=None, backward=None, dtypes=("float32", "float64"),
             grad_rtol=1e-6, seed=0):
    """Check ``forward(*backend_arrays) -> output`` and ``backward(grad_out, *backend_arrays) -> grads``.

    ``inputs`` are float64 NumPy arrays; ``reference(*inputs)`` the expected output in NumPy;
    ``backward`` returns one gradient per input (None for inputs it does not differentiate).
    """
    rng = np.random.default_rng(seed)
    for dtype in dtypes:
        xp_dtype = backend.dtype(dtype)
        for layout in ("contiguous", "strided"):
            make = (lambda a: backend.asarray(a, dtype=xp_dtype)) if layout == "contiguous" else \
                (lambda a: strided(backend, a, xp_dtype))
            args = [make(a) for a in inputs]
            out = forward(*args)
            assert out.dtype == xp_dtype, f"{dtype} in, {out.dtype} out ({layout})"
            got = backend.to_numpy(out)
            if reference is not None:
                np.testing.assert_allclose(got, reference(*inputs), rtol=RTOL[dtype], atol=ATOL[dtype],
                                           err_msg=f"forward, {dtype}, {layout}")
            if backward is None:
                continue
            grad_out = rng.standard_normal(got.shape)
            grads = backward(backend.asarray(grad_out, dtype=xp_dtype), *args)
            for g in grads:
                assert g is None or g.dtype == xp_dtype, f"backward: {dtype} in, {g.dtype} out"
            if dtype != "float64":
                continue
            host = [a.copy() for a in inputs]
            numeric = numerical_grads(lambda *xs: backend.to_numpy(forward(*[backend.asarray(x, dtype=xp_dtype)
                                                                              for x in xs])), host, grad_out)
            for k, (g, n) in enumerate(zip(grads, numeric)):
                if g is None:
                    continue
                g = backend.to_numpy(g)
                scale = max(np.max(np.abs(n), initial=0.0), 1e-8)
                err = np.max(np.abs(g - n), initial=0.0) / scale
                assert err < grad_rtol, f"backward input {k}: relative error {err:.2e} ({layout})"
