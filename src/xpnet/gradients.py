"""Gradients two ways: backprop, and finite differences (the articles' slow method); gradcheck compares them."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from . import losses
from .errors import ConfigError, lookup
from .validation import prepare

if TYPE_CHECKING:
    from .network import Sequential


def backprop(net: Sequential, loss: str | losses.Loss, X: Any, y: Any) -> list[np.ndarray]:
    """∂C/∂θ by backpropagation, as NumPy arrays in the order of ``net.get_weights()``.

    Examples:
        >>> import xpnet as xn
        >>> X, y = xn.datasets.xor()
        >>> [g.shape for g in xn.backprop(xn.MLP([2, 2, 1]), "mse", X, y)]
        [(2, 2), (2,), (2, 1), (1,)]
    """
    loss = losses.get(loss)
    X, T = prepare(net, loss, X, y)
    net.forward_backward(X, T, loss)
    return [net.backend.to_numpy(g).copy() for g in net.gradients()]


def finite_difference_arrays(net, loss, X, T, eps, method):
    """∂C/∂θ as backend arrays, by perturbing one parameter at a time (2P or P+1 forward passes).

    central: (C(θ+ε) − C(θ−ε)) / 2ε; forward: (C(θ+ε) − C(θ)) / ε.
    """
    backend, xp = net.backend, net.backend.xp

    def cost():
        return loss.value(backend, net.forward_prepared(X, training=False), T)

    base = cost() if method == "forward" else None
    grads = []
    for param in net.parameters():
        grad = backend.zeros_like(param)
        for index in np.ndindex(*param.shape):
            old = xp.asarray(param[index], copy=True)
            param[index] = old + eps
            plus = cost()
            if method == "central":
                param[index] = old - eps
                grad[index] = (plus - cost()) / (2 * eps)
            else:
                grad[index] = (plus - base) / eps
            param[index] = old
        grads.append(grad)
    return grads


def check_options(gradient, eps, method):
    """Raise ConfigError for an unknown gradient or finite-difference method, or a bad eps."""
    lookup("gradient method", gradient, dict.fromkeys(("backprop", "finite_difference")))
    lookup("finite-difference method", method, dict.fromkeys(("central", "forward")))
    if not (isinstance(eps, (int, float)) and 0 < eps < math.inf):
        raise ConfigError(f"eps must be a positive number, got {eps!r}")


def finite_difference(net: Sequential, loss: str | losses.Loss, X: Any, y: Any, eps: float = 1e-3,
                      method: str = "central") -> list[np.ndarray]:
    """∂C/∂θ by finite differences, as NumPy arrays in the order of ``net.get_weights()``."""
    check_options("finite_difference", eps, method)
    loss = losses.get(loss)
    X, T = prepare(net, loss, X, y)
    return [net.backend.to_numpy(g).copy() for g in finite_difference_arrays(net, loss, X, T, eps, method)]


def relative_error(a, b):
    """max|a − b| / max(max|a|, max|b|, 1e-8): the error relative to the array's largest gradient."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)), 1e-8)
    return float(np.max(np.abs(a - b), initial=0.0)) / scale


def gradcheck(net: Sequential, loss: str | losses.Loss, X: Any, y: Any, eps: float = 1e-6,
              method: str = "central") -> dict[str, float]:
    """Backprop against central finite differences, in float64 on a copy of ``net``.

    Returns {"W1": error, "b1": error, ...}, each the ``relative_error`` of that array.

    >>> import xpnet as xn
    >>> X, y = xn.datasets.xor()
    >>> errors = xn.gradcheck(xn.MLP([2, 3, 1], activation="sigmoid"), "mse", X, y)
    >>> max(errors.values()) < 1e-6
    True
    """
    net64 = net.copy(dtype="float64")
    exact = backprop(net64, loss, X, y)
    approx = finite_difference(net64, loss, X, y, eps=eps, method=method)
    return {name: relative_error(a, b) for name, a, b in zip(net64.param_names(), exact, approx)}
