"""Seeing backprop happen: one forward and one backward pass, recorded layer by layer.

``trace`` runs the network's own layers (their ``forward`` and the
``backward`` closures it returns) on the network's backend, exactly as a
training step does, and keeps what each layer with parameters computed: its
input x, its output, the incoming ∂C/∂output, and ∂C/∂θ for every parameter.
A layer whose ``backward`` keeps ``saved`` arrays shows them too: a Dense
layer's z, a and the error δ = ∂C/∂z, each labelled with its equation. C is
the loss as training computes it, a mean over the batch.

>>> import xpnet as xn
>>> X, y = xn.datasets.xor()
>>> net = xn.MLP([2, 2, 1], activation="sigmoid", output_activation="sigmoid", seed=0)
>>> t = xn.trace(net, "mse", X[1:2], y[1:2])
>>> [layer.delta.shape for layer in t.layers]
[(1, 2), (1, 1)]
"""
import numpy as np

from . import losses
from .validation import prepare

SUMMARY_ABOVE = 16  # arrays with more elements print as shape and statistics
SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


class LayerTrace:
    """What the ``index``-th layer with parameters (from 1) computed, as host NumPy arrays.

    Every layer: ``x`` (its input; a⁰ = the network's input), ``y`` (its output),
    ``grad_y`` (∂C/∂y, from the loss or the layer above) and ``grad_<param>``
    (∂C/∂θ) for each parameter. A Dense layer also has ``z``, ``a`` (= y),
    ``grad_a`` (= grad_y) and ``delta`` (∂C/∂z); so does a convolution (``conv`` True), whose
    z and δ have the shape of its output, (samples, channels, ...positions).
    """

    def __init__(self, index, position, layer, x, y, grad_y, grads, saved):
        self.index, self.position, self.name = index, position, repr(layer)
        self.kind, self.param_names = type(layer).__name__, list(grads)
        self.activation = layer.config().get("activation")
        self.x, self.y, self.grad_y = x, y, grad_y
        for name, value in grads.items():
            setattr(self, f"grad_{name}", value)
        for name, value in saved.items():
            setattr(self, name, value)
        weighted = "z" in saved and "delta" in saved  # a = σ(z), z from W and b: Dense or a convolution
        self.dense, self.conv = weighted and x.ndim == 2, weighted and x.ndim > 2
        if weighted:
            self.a, self.grad_a, self.fan_in, self.fan_out = y, grad_y, x.shape[1], y.shape[1]

    def gradients(self):
        """∂C/∂θ for this layer's parameters, in their order."""
        return [getattr(self, f"grad_{name}") for name in self.param_names]

    def __repr__(self):
        return f"<LayerTrace {self.index}: {self.name}>"


class Trace:
    """The result of ``xn.trace``: ``loss`` (a float), ``layers`` (LayerTrace, input to output), ``output``.

    Prints as a table, each line labelled with its equation (BP1–BP4).
    """

    def __init__(self, net, loss, value, layers, output, target):
        self.net_name, self.backend, self.dtype = _shape_name(net), net.backend.name, net.dtype
        self.loss_name, self.loss, self.layers, self.output, self.target = loss.name, value, layers, output, target

    def gradients(self):
        """[∂W1, ∂b1, ∂W2, ∂b2, ...]: the order of ``net.get_weights()`` and ``xn.backprop``."""
        return [g for layer in self.layers for g in layer.gradients()]

    def __str__(self):
        n = len(self.output)
        lines = [f"{self.net_name} on {self.backend} ({self.dtype}), {n} sample{'s' * (n != 1)}: "
                 f"{self.loss_name} loss C = {self.loss:.6g}", "", "forward pass: z = a W + b, a = σ(z)",
                 *_row("", "a⁰ = x (the input)", self.layers[0].x)]
        for t in self.layers:
            l, below = _sup(t.index), _sup(t.index - 1)
            if t.conv:
                kernel = "×".join(map(str, t.grad_W.shape[2:]))
                lines.append(f"  layer {t.index}  {t.kind} {t.fan_in}→{t.fan_out} channels, kernel {kernel}, "
                             f"σ = {t.activation}")
                lines += _row("", f"z{l} = W{l} ∗ a{below} + b{l}", t.z)
                lines += _row("", f"a{l} = {t.activation}(z{l})", t.a)
                continue
            if not t.dense:
                lines.append(f"  layer {t.index}  {t.name}")
                lines += _row("", f"a{l} = f(a{below})", t.y)
                continue
            lines.append(f"  layer {t.index}  Dense {t.fan_in}→{t.fan_out}, σ = {t.activation}")
            lines += _row("", f"z{l} = a{below}W{l} + b{l}", t.z)
            lines += _row("", f"a{l} = {t.activation}(z{l})", t.a)
        lines += ["", *_row("", "target y", self.target)]
        lines += ["", "backward pass: δ = ∂C/∂z, from the output (BP1) back to the input (BP2)"]
        last = len(self.layers)
        for t in reversed(self.layers):
            l, below, above = _sup(t.index), _sup(t.index - 1), _sup(t.index + 1)
            lines.append(f"  layer {t.index}")
            if t.conv:
                lines += _row("", f"∂C/∂a{l}", t.grad_a)
                lines += _row("BP2", f"δ{l} = ∂C/∂a{l} ⊙ σ'(z{l})", t.delta)
                lines += _row("BP3", f"∂C/∂b{l} = Σ δ{l} (samples, positions)", t.grad_b)
                lines += _row("BP4", f"∂C/∂W{l} = δ{l} ⋆ a{below} (im2col: δ colsᵀ)", t.grad_W)
                continue
            if not t.dense:
                lines += _row("", f"∂C/∂a{l}", t.grad_y)
                lines += [row for name in t.param_names for row in _row("", f"∂C/∂{name}{l}", getattr(t, f"grad_{name}"))]
                continue
            if t.index == last and self.loss_name == "softmax_ce" and t.activation == "identity":
                lines += _row("BP1", f"δ{l} = (softmax(z{l}) − y) / n", t.delta)
            elif t.index == last:
                lines += _row("", f"∂C/∂a{l} (from the loss)", t.grad_a)
                lines += _row("BP1", f"δ{l} = ∂C/∂a{l} ⊙ σ'(z{l})", t.delta)
            else:
                lines += _row("BP2", f"δ{l} = (δ{above}W{above}ᵀ) ⊙ σ'(z{l})", t.delta)
            lines += _row("BP3", f"∂C/∂b{l} = Σₙ δ{l}", t.grad_b)
            lines += _row("BP4", f"∂C/∂W{l} = a{below}ᵀ δ{l}", t.grad_W)
        return "\n".join(lines)

    __repr__ = __str__


def trace(net, loss, X, y):
    """Run one forward and one backward pass of ``net`` on (X, y) and record every layer with parameters.

    Dropout is off (``training=False``), so the trace is deterministic; for a
    net without dropout its gradients are those of ``xn.backprop``. Returns a
    ``Trace``; ``print(xn.trace(...))`` shows the table.
    """
    loss = losses.get(loss)
    X, T = prepare(net, loss, X, y)
    backend = net.backend
    out, passes = X, []
    for layer in net.layers:
        x = out
        out, backward = layer.forward(x, training=False)
        passes.append((layer, x, out, backward))
    value, grad = loss(backend, out, T)  # ∂C/∂output: where BP1 starts
    host = lambda a: np.array(backend.to_numpy(a), copy=True)  # noqa: E731
    records = []
    first = min([i for i, (layer, *_) in enumerate(passes) if layer.param_names], default=len(passes))
    for position in reversed(range(first, len(passes))):  # below the first layer with parameters: nothing to learn
        layer, x, y, backward = passes[position]
        grad_y = grad
        grad = backward(grad_y, need_grad_x=position > first)
        if not layer.param_names:  # nothing to learn here (Dropout, Flatten): the table skips it
            continue
        saved = {name: host(a) for name, a in getattr(backward, "saved", {}).items() if name != "x"}
        grads = {name: host(layer.grads[name]) for name in layer.param_names}
        records.append((position, layer, host(x), host(y), host(grad_y), grads, saved))
    records.reverse()
    layers = [LayerTrace(k, *record) for k, record in enumerate(records, 1)]
    return Trace(net, loss, backend.scalar(value), layers, host(out), host(T))


def _shape_name(net):
    shape = lambda s: str(s[0]) if len(s) == 1 else "×".join(map(str, s))  # noqa: E731
    shapes = [net.input_shape] + [layer.output_shape for layer in net.layers if layer.param_names]
    return f"{type(net).__name__} {'→'.join(map(shape, shapes))}"


def _sup(k):
    return str(k).translate(SUPERSCRIPTS)


def _format(a):
    """Small arrays rounded to 4 significant digits; large ones as shape and statistics."""
    a = np.asarray(a, dtype=np.float64)
    if a.size > SUMMARY_ABOVE:
        return (f"shape {a.shape}, mean {a.mean():.4g}, std {a.std():.4g}, "
                f"min {a.min():.4g}, max {a.max():.4g}")
    # v + 0.0 turns the −0.0 that ReLU can give into 0
    return np.array2string(a, formatter={"float_kind": lambda v: f"{v + 0.0: .4g}"}, max_line_width=100)


def _row(tag, label, a, width=30):
    text = _format(a).splitlines()
    head = f"    {tag:<4} {label}"
    lines = [f"{head:<{width + 9}} {text[0]}"]
    return lines + [f"{'':<{width + 9}} {line}" for line in text[1:]]
