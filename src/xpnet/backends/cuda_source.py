"""CUDA C for the CuPy backend's elementwise kernels, generated from xpnet.kernels.

The math functions in kernels.py are called once with symbolic values in place
of arrays; each operation they perform appends one line of C. The source that
``cupy.ElementwiseKernel`` compiles is therefore the same math, not a second
copy of it. ``T`` is the element type (float or double), as CuPy spells it.

>>> spec = activation_forward("relu")
>>> spec.in_params, spec.out_params
('T z', 'T a')
>>> print(spec.operation)
const bool t0 = z > (T)0.0;
const T t1 = (T)0.0 * z;
const T t2 = t0 ? z : t1;
a = t2;
"""
import re
from dataclasses import dataclass, field

from .. import kernels

FUNCTIONS = {"exp": "exp", "tanh": "tanh", "sqrt": "sqrt", "log": "log", "erf": "erf", "abs": "fabs"}


@dataclass(frozen=True)
class Spec:
    """The arguments of ``cupy.ElementwiseKernel(in_params, out_params, operation, name)``.

    ``inputs`` names the input parameters in order (only those the math reads);
    ``outputs`` the output parameters, which the kernel may also read (in-place state);
    ``math(xp, **values)`` is the traced function itself, runnable on any array namespace.
    """

    name: str
    inputs: tuple
    outputs: tuple
    operation: str
    math: object = field(default=None, compare=False, repr=False)

    @property
    def in_params(self):
        return ", ".join(f"T {name}" for name in self.inputs)

    @property
    def out_params(self):
        return ", ".join(f"T {name}" for name in self.outputs)


class Sym:
    """A value inside a traced kernel: the name of a C variable (or a literal) of type T, or bool."""

    __slots__ = ("tape", "code", "kind")

    def __init__(self, tape, code, kind="T"):
        self.tape, self.code, self.kind = tape, code, kind

    def _op(self, op, other, reflected=False, kind="T"):
        other = self.tape.lift(other)
        left, right = (other, self) if reflected else (self, other)
        for operand in (left, right):
            if operand.kind != "T":
                raise TypeError(f"kernel math applies {op!r} to a comparison; use xp.where")
        return self.tape.emit(f"{left.code} {op} {right.code}", kind)

    def __add__(self, other):
        return self._op("+", other)

    def __radd__(self, other):
        return self._op("+", other, reflected=True)

    def __sub__(self, other):
        return self._op("-", other)

    def __rsub__(self, other):
        return self._op("-", other, reflected=True)

    def __mul__(self, other):
        return self._op("*", other)

    def __rmul__(self, other):
        return self._op("*", other, reflected=True)

    def __truediv__(self, other):
        return self._op("/", other)

    def __rtruediv__(self, other):
        return self._op("/", other, reflected=True)

    def __neg__(self):
        return self.tape.emit(f"-{self.code}")

    def __gt__(self, other):
        return self._op(">", other, kind="bool")

    def __ge__(self, other):
        return self._op(">=", other, kind="bool")

    def __lt__(self, other):
        return self._op("<", other, kind="bool")

    def __le__(self, other):
        return self._op("<=", other, kind="bool")

    def __bool__(self):
        raise TypeError("a kernel value has no truth value on the host: kernels.py must branch with xp.where")


class Tape:
    """The lines of C a traced function produces, one operation per line (``const T tN = ...;``)."""

    def __init__(self):
        self.lines = []

    def lift(self, value):
        if isinstance(value, Sym):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return Sym(self, f"(T){float(value)!r}")
        raise TypeError(f"kernel math got {type(value).__name__} {value!r}; expected a number or a kernel value")

    def emit(self, expression, kind="T"):
        name = f"t{len(self.lines)}"
        self.lines.append(f"const {'T' if kind == 'T' else 'bool'} {name} = {expression};")
        return Sym(self, name, kind)


class CudaMath:
    """The ``xp`` that kernels.py functions see while being traced: C math functions and ``where``."""

    def __init__(self, tape):
        self.tape = tape
        for python_name, c_name in FUNCTIONS.items():
            setattr(self, python_name, self._function(c_name))

    def _function(self, c_name):
        def call(x):
            return self.tape.emit(f"{c_name}({self.tape.lift(x).code})")

        return call

    def where(self, condition, x, y):
        if not isinstance(condition, Sym) or condition.kind != "bool":
            raise TypeError("where() needs a comparison of kernel values as its condition")
        x, y = self.tape.lift(x), self.tape.lift(y)
        return self.tape.emit(f"{condition.code} ? {x.code} : {y.code}")


def elementwise(name, body, inputs, outputs):
    """Trace ``body(xp, **values) -> {output: value}`` into a Spec.

    ``inputs`` and ``outputs`` are parameter names; outputs may be read before
    they are written (optimiser state updated in place): every result is
    computed into a temporary first and the outputs are assigned last.
    """
    tape = Tape()
    values = {n: Sym(tape, n) for n in (*inputs, *outputs)}
    results = body(CudaMath(tape), **values)
    if set(results) != set(outputs):
        raise ValueError(f"kernel {name} returned {sorted(results)}, expected {sorted(outputs)}")
    assignments = []
    for out in outputs:
        value = tape.lift(results[out])
        if value.kind != "T":
            raise TypeError(f"kernel {name}: output {out} is a comparison, not a number")
        assignments.append(f"{out} = {value.code};")
    source = "\n".join(tape.lines + assignments)
    used = tuple(n for n in inputs if re.search(rf"\b{n}\b", source))
    return Spec(f"xpnet_{name}", used, tuple(outputs), source, body)


# ---- the kernels the CuPy backend runs ------------------------------------------------


def activation_forward(activation):
    """a = σ(z)."""
    forward, _ = kernels.ACTIVATIONS[activation]
    return elementwise(f"{activation}_forward", lambda xp, z, alpha, a: {"a": forward(xp, z, alpha)},
                       ["z", "alpha"], ["a"])


def bias_activation(activation):
    """z ← z + b in place (z holds x W from the matmul), a = σ(z): a Dense layer's elementwise half."""
    forward, _ = kernels.ACTIVATIONS[activation]

    def body(xp, b, alpha, z, a):
        z = z + b
        return {"z": z, "a": forward(xp, z, alpha)}

    return elementwise(f"bias_{activation}", body, ["b", "alpha"], ["z", "a"])


def activation_backward(activation):
    """grad_z = grad_a ⊙ σ'(z): the slope factor of BP1 and BP2."""
    _, backward = kernels.ACTIVATIONS[activation]
    return elementwise(f"{activation}_backward",
                       lambda xp, grad_a, z, a, alpha, grad_z: {"grad_z": backward(xp, grad_a, z, a, alpha)},
                       ["grad_a", "z", "a", "alpha"], ["grad_z"])


def softmax_ce():
    """Per-element loss terms and ∂C/∂z of softmax cross-entropy, given the row max and row sum."""

    def body(xp, z, row_max, row_sum, onehot, count, terms, grad):
        return {"terms": kernels.softmax_ce_terms(xp, z, row_max, row_sum, onehot),
                "grad": kernels.softmax_ce_grad(xp, z, row_max, row_sum, onehot, count)}

    return elementwise("softmax_ce", body, ["z", "row_max", "row_sum", "onehot", "count"], ["terms", "grad"])


def _decayed(xp, param, grad, weight_decay, decay):
    return kernels.weight_decayed(xp, param, grad, weight_decay) if decay else grad


def sgd(momentum, nesterov, decay):
    """One SGD step in place: param (and velocity when ``momentum``)."""
    if not momentum:  # v = 0·0 + g: kernels.sgd with no velocity to keep
        def body(xp, grad, lr, weight_decay, param):
            g = _decayed(xp, param, grad, weight_decay, decay)
            return {"param": kernels.sgd(xp, param, g, 0.0, lr, 0.0, False)[0]}

        return elementwise(f"sgd{'_decay' if decay else ''}", body, ["grad", "lr", "weight_decay"], ["param"])

    def body(xp, grad, lr, momentum, weight_decay, param, velocity):
        g = _decayed(xp, param, grad, weight_decay, decay)
        new_param, new_velocity = kernels.sgd(xp, param, g, velocity, lr, momentum, nesterov)
        return {"param": new_param, "velocity": new_velocity}

    name = f"sgd_momentum{'_nesterov' if nesterov else ''}{'_decay' if decay else ''}"
    return elementwise(name, body, ["grad", "lr", "momentum", "weight_decay"], ["param", "velocity"])


def rmsprop(decay):
    def body(xp, grad, lr, rho, eps, weight_decay, param, square_avg):
        g = _decayed(xp, param, grad, weight_decay, decay)
        new_param, new_square_avg = kernels.rmsprop(xp, param, g, square_avg, lr, rho, eps)
        return {"param": new_param, "square_avg": new_square_avg}

    return elementwise(f"rmsprop{'_decay' if decay else ''}", body, ["grad", "lr", "rho", "eps", "weight_decay"],
                       ["param", "square_avg"])


def adam(decay):
    def body(xp, grad, lr, beta1, beta2, eps, bias1, bias2, weight_decay, param, m, v):
        g = _decayed(xp, param, grad, weight_decay, decay)
        new_param, new_m, new_v = kernels.adam(xp, param, g, m, v, lr, beta1, beta2, eps, bias1, bias2)
        return {"param": new_param, "m": new_m, "v": new_v}

    return elementwise(f"adam{'_decay' if decay else ''}", body,
                       ["grad", "lr", "beta1", "beta2", "eps", "bias1", "bias2", "weight_decay"], ["param", "m", "v"])


def batch_norm():
    """x̂ = (x − μ)·(1/σ), y = γ x̂ + β, the per-channel vectors broadcast against x."""

    def body(xp, x, mean, inv_std, gamma, beta, xhat, y):
        normalised, out = kernels.batch_norm(xp, x, mean, inv_std, gamma, beta)
        return {"xhat": normalised, "y": out}

    return elementwise("batch_norm", body, ["x", "mean", "inv_std", "gamma", "beta"], ["xhat", "y"])


def batch_norm_grad():
    """∂C/∂x = γ/σ (∂C/∂y − mean_dy − x̂ mean_dy_xhat): BatchNorm's three-term backward."""

    def body(xp, grad_y, xhat, inv_std, gamma, mean_dy, mean_dy_xhat, grad_x):
        return {"grad_x": kernels.batch_norm_grad(xp, grad_y, xhat, inv_std, gamma, mean_dy, mean_dy_xhat)}

    return elementwise("batch_norm_grad", body, ["grad_y", "xhat", "inv_std", "gamma", "mean_dy", "mean_dy_xhat"],
                       ["grad_x"])


def all_specs():
    """Every kernel the backend can build, for tests and for compiling them all with nvcc."""
    specs = [softmax_ce(), batch_norm(), batch_norm_grad()]
    for activation in kernels.ACTIVATIONS:
        specs += [activation_forward(activation), bias_activation(activation), activation_backward(activation)]
    for decay in (False, True):
        specs += [sgd(False, False, decay), sgd(True, False, decay), sgd(True, True, decay), rmsprop(decay),
                  adam(decay)]
    return specs
