"""Seeing backprop happen: one forward and one backward pass, recorded layer by layer.

``trace`` runs the network's own layers (their ``forward`` and the
``backward`` closures it returns) on the network's backend, exactly as a
training step does, and keeps what each Dense layer computed: z, a, the
incoming ∂C/∂a, the error δ = ∂C/∂z, and the gradients ∂C/∂b and ∂C/∂W. C
is the loss as training computes it, a mean over the batch.

>>> import xpnet as xn
>>> X, y = xn.datasets.xor()
>>> net = xn.MLP([2, 2, 1], activation="sigmoid", output_activation="sigmoid", seed=0)
>>> t = xn.trace(net, "mse", X[1:2], y[1:2])
>>> [layer.delta.shape for layer in t.layers]
[(1, 2), (1, 1)]
"""
import numpy as np

from . import losses
from .gradients import prepare

SUMMARY_ABOVE = 16  # arrays with more elements print as shape and statistics
SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


class LayerTrace:
    """What Dense layer ``index`` (from 1) computed, as host NumPy arrays.

    ``x`` (the activation of the layer below, a⁰ = the input), ``z``, ``a``,
    ``grad_a`` (∂C/∂a, from the loss or the layer above), ``delta`` (∂C/∂z),
    ``grad_b`` (∂C/∂b) and ``grad_W`` (∂C/∂W).
    """

    def __init__(self, index, layer, **arrays):
        self.index, self.activation, self.fan_in, self.fan_out = index, layer.activation, layer.fan_in, layer.fan_out
        for name, value in arrays.items():
            setattr(self, name, value)

    def __repr__(self):
        return f"<LayerTrace {self.index}: Dense {self.fan_in}→{self.fan_out} {self.activation}>"


class Trace:
    """The result of ``xn.trace``: ``loss`` (a float), ``layers`` (LayerTrace, input to output), ``output``.

    Prints as a table, each line labelled with its equation (BP1–BP4).
    """

    def __init__(self, net, loss, value, layers, output, target):
        self.net_name, self.backend, self.dtype = _shape_name(net), net.backend.name, net.dtype
        self.loss_name, self.loss, self.layers, self.output, self.target = loss.name, value, layers, output, target

    def gradients(self):
        """[∂W1, ∂b1, ∂W2, ∂b2, ...]: the order of ``net.get_weights()`` and ``xn.backprop``."""
        return [g for layer in self.layers for g in (layer.grad_W, layer.grad_b)]

    def __str__(self):
        n = len(self.output)
        lines = [f"{self.net_name} on {self.backend} ({self.dtype}), {n} sample{'s' * (n != 1)}: "
                 f"{self.loss_name} loss C = {self.loss:.6g}", "", "forward pass: z = a W + b, a = σ(z)",
                 *_row("", "a⁰ = x (the input)", self.layers[0].x)]
        for t in self.layers:
            l, below = _sup(t.index), _sup(t.index - 1)
            lines.append(f"  layer {t.index}  Dense {t.fan_in}→{t.fan_out}, σ = {t.activation}")
            lines += _row("", f"z{l} = a{below}W{l} + b{l}", t.z)
            lines += _row("", f"a{l} = {t.activation}(z{l})", t.a)
        lines += ["", *_row("", "target y", self.target)]
        lines += ["", "backward pass: δ = ∂C/∂z, from the output (BP1) back to the input (BP2)"]
        last = len(self.layers)
        for t in reversed(self.layers):
            l, below, above = _sup(t.index), _sup(t.index - 1), _sup(t.index + 1)
            lines.append(f"  layer {t.index}")
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
    """Run one forward and one backward pass of ``net`` on (X, y) and record every Dense layer.

    Dropout is off (``training=False``), so the trace is deterministic; for a
    net without dropout its gradients are those of ``xn.backprop``. Returns a
    ``Trace``; ``print(xn.trace(...))`` shows the table.
    """
    loss = losses.get(loss)
    X, T = prepare(net, loss, X, y)
    backend = net.backend
    out, passes = X, []
    for layer in net.layers:
        out, backward = layer.forward(out, training=False)
        passes.append((layer, backward))
    value, grad = loss(backend, out, T)  # ∂C/∂output: where BP1 starts
    host = backend.to_numpy
    records = []
    for i in reversed(range(len(passes))):
        layer, backward = passes[i]
        grad_a = grad
        grad = backward(grad_a, need_grad_x=i > 0)
        saved = getattr(backward, "saved", None)
        if saved is None:  # a layer with nothing to show (Dropout)
            continue
        # δ = ∂C/∂a ⊙ σ'(z): the same kernel the base dense_backward multiplies by.
        delta = backend.activation_backward(grad_a, saved["z"], saved["a"], layer.activation, layer.alpha)
        records.append((layer, {"x": host(saved["x"]), "z": host(saved["z"]), "a": host(saved["a"]),
                                "grad_a": host(grad_a), "delta": host(delta),
                                "grad_b": host(layer.grads["b"]), "grad_W": host(layer.grads["W"])}))
    records.reverse()
    layers = [LayerTrace(k, layer, **{name: np.array(a, copy=True) for name, a in arrays.items()})
              for k, (layer, arrays) in enumerate(records, 1)]
    return Trace(net, loss, backend.scalar(value), layers, host(out).copy(), host(T).copy())


def _shape_name(net):
    sizes = [net.n_inputs] + [layer.fan_out for layer in net.layers if hasattr(layer, "fan_out")]
    return f"{type(net).__name__} {'→'.join(map(str, sizes))}"


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
