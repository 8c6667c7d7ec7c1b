"""Networks: a Sequential stack of layers with inferred shapes, and the MLP built from layer sizes."""
from __future__ import annotations

import math
import numbers
import os
from typing import Any, Sequence

import numpy as np

from . import backends, checkpoint, kernels, layers as layers_mod
from .errors import CheckpointError, ConfigError, ShapeError, lookup
from .validation import as_numbers, check_finite, check_seed, check_X, prepare


class Sequential:
    """Layers applied in order, with parameters on one backend.

    ``input_shape`` is one sample's shape (the batch axis excluded), e.g. ``(1, 28, 28)``;
    it may be left out when the first layer implies it (``Dense(2, 16)``). Every
    layer's shape is inferred when the network is built; parameters are named
    ``"<layer index>.<param>"`` (``"0.W"``, ``"2.b"``), as a PyTorch state_dict.

    >>> import xpnet as xn
    >>> net = xn.Sequential([xn.layers.Dense(2, 16, activation="relu"),
    ...                      xn.layers.Dropout(0.1),
    ...                      xn.layers.Dense(16, 2)], seed=0)
    >>> net.predict([[0.0, 1.0]]).shape
    (1, 2)
    >>> xn.Sequential([xn.layers.Flatten(), xn.layers.Dense(10)], input_shape=(1, 8, 8)).param_names()
    ['1.W', '1.b']
    """

    def __init__(self, layers: Sequence[layers_mod.Layer], input_shape: int | Sequence[int] | None = None,
                 seed: int | None = 0, dtype: str = "float32", backend: Any = None) -> None:
        self.layers = list(layers)
        if not self.layers or not all(isinstance(layer, layers_mod.Layer) for layer in self.layers):
            raise ConfigError(f"Sequential needs a non-empty list of xn.layers.Layer objects, got {layers!r}")
        if len({id(layer) for layer in self.layers}) != len(self.layers):
            raise ConfigError("Sequential got the same layer object twice; make one layer per position")
        self.input_shape = check_shape(input_shape if input_shape is not None else
                                       self.layers[0].default_input_shape())
        self.seed = check_seed(seed)
        self.backend = backends.get_backend(backend)
        self.backend.dtype(dtype)  # raises ConfigError for anything but float32/float64
        self.dtype = dtype
        self.output_shape = infer_shapes(self.layers, self.input_shape, np.random.default_rng(seed), self.backend,
                                         dtype)
        trainable = [i for i, layer in enumerate(self.layers) if layer.param_names]
        self._first_trainable = trainable[0] if trainable else len(self.layers)
        self.reseed(seed)

    @property
    def n_inputs(self) -> int:
        """Features per sample for 1-D inputs; the number of values per sample otherwise."""
        return math.prod(self.input_shape)

    @property
    def n_outputs(self) -> int:
        """Outputs per sample (the losses take (samples, outputs))."""
        return math.prod(self.output_shape)

    def reseed(self, seed: int | None) -> None:
        """Restart every stochastic layer's generator from ``seed`` (each layer its own stream)."""
        for i, layer in enumerate(self.layers):
            if layer.stochastic:
                layer.seed(int(np.random.SeedSequence([seed or 0, i]).generate_state(1)[0]))

    # ---- forward -------------------------------------------------------------------

    def forward(self, X: Any, training: bool = False) -> Any:
        """The network's output for X (host or backend array), as a backend array."""
        X = self.backend.asarray(check_X(X, self.input_shape), dtype=self.backend.dtype(self.dtype))
        return self.forward_prepared(X, training)

    __call__ = forward

    def forward_prepared(self, X, training=False):
        """Forward pass on an already checked backend array."""
        for layer in self.layers:
            X, _ = layer.forward(X, training)
        return X

    def forward_backward(self, X, target, loss):
        """One forward and one backward pass on backend arrays; gradients land in each layer's ``grads``.

        Returns the loss as a 0-d backend array.
        """
        out, backwards = X, []
        for layer in self.layers:
            out, backward = layer.forward(out, training=True)
            backwards.append(backward)
        value, grad = loss(self.backend, out, target)  # BP1 starts from ∂C/∂output
        for i in reversed(range(self._first_trainable, len(backwards))):
            # Below the first layer with parameters nothing needs ∂C/∂x: skip those products and layers.
            grad = backwards[i](grad, need_grad_x=i > self._first_trainable)
        return value

    def predict(self, X: Any, batch_size: int = 4096) -> np.ndarray:
        """Outputs for X as a host NumPy array, computed in batches, dropout off."""
        if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"predict batch_size must be an integer ≥ 1, got {batch_size!r}")
        X = check_X(X, self.input_shape)
        n = X.shape[0]
        if n == 0:
            return np.zeros((0, *self.output_shape), dtype=self.dtype)
        return np.concatenate([self.backend.to_numpy(self.forward(X[i:min(i + batch_size, n), ...]))
                               for i in range(0, n, batch_size)])

    def evaluate(self, X: Any, y: Any, loss: Any = "mse") -> dict[str, float]:
        """{"loss": mean loss, "accuracy": ... (classifiers)} on (X, y), dropout off."""
        from . import losses
        from .training import evaluate

        loss = losses.get(loss)
        value, accuracy = evaluate(self, loss, *prepare(self, loss, X, y))
        return {"loss": value} if accuracy is None else {"loss": value, "accuracy": accuracy}

    # ---- parameters ----------------------------------------------------------------

    def parameters(self) -> list[Any]:
        """Parameter arrays on the backend, in the order of get_weights()."""
        return [layer.params[name] for layer in self.layers for name in layer.param_names]

    def gradients(self) -> list[Any]:
        """Gradient arrays from the last backward pass, in the order of parameters()."""
        return [layer.grads[name] for layer in self.layers for name in layer.param_names]

    def param_names(self) -> list[str]:
        """Names "0.W", "0.b", "2.W", ... ("<layer index>.<param>") in the order of parameters()."""
        return [f"{i}.{name}" for i, layer in enumerate(self.layers) for name in layer.param_names]

    def buffer_names(self) -> list[str]:
        """Names "<layer index>.<buffer>" of the arrays saved and moved with the net but not trained."""
        return [f"{i}.{name}" for i, layer in enumerate(self.layers) for name in layer.buffer_names]

    def buffers(self) -> list[Any]:
        """Buffer arrays on the backend, in the order of buffer_names()."""
        return [layer.buffers[name] for layer in self.layers for name in layer.buffer_names]

    def state(self) -> dict[str, np.ndarray]:
        """{name: host NumPy copy} of every parameter and buffer: what a checkpoint holds."""
        arrays = self.parameters() + self.buffers()
        return {name: self.backend.to_numpy(a).copy() for name, a in zip(self.param_names() + self.buffer_names(),
                                                                             arrays)}

    def get_weights(self) -> list[np.ndarray]:
        """Every parameter as a host NumPy array, in layer order ([W, b, W, b, ...] for an MLP; W is (fan_in, fan_out))."""
        return [self.backend.to_numpy(p).copy() for p in self.parameters()]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Replace every parameter; count, shapes and finite real values are checked before anything changes."""
        self._replace("set_weights", weights, self.parameters(), self.param_names(), finite=True,
                      slots=lambda layer: [(name, layer.add_param) for name in layer.param_names])

    def set_buffers(self, buffers: Sequence[Any]) -> None:
        """Replace every buffer (in buffer_names() order); count and shapes are checked first."""
        self._replace("set_buffers", buffers, self.buffers(), self.buffer_names(), finite=False,
                      slots=lambda layer: [(name, layer.add_buffer) for name in layer.buffer_names])

    def _replace(self, what, values, current, names, finite, slots):
        """Check ``values`` against the ``current`` arrays (count, shape, and finiteness if asked), then hand each
        to its layer through ``slots(layer)``: (name, add_param or add_buffer) pairs, in layer order."""
        values = list(values)
        if len(values) != len(current):
            raise ShapeError(f"{what} expected {len(current)} arrays ({', '.join(names)}), got {len(values)}")
        host = [as_numbers(self._to_host(v), f"{what}: {name}") for name, v in zip(names, values)]
        for name, v, old in zip(names, host, current):
            if v.shape != tuple(old.shape):
                raise ShapeError(f"{what}: {name} must have shape {tuple(old.shape)}, got {v.shape}")
            if finite:
                check_finite(v, f"{what}: {name}")
        arrays = iter(host)
        for layer in self.layers:
            for name, add in slots(layer):
                add(name, next(arrays))

    def _to_host(self, w):
        return self.backend.to_numpy(w) if self.backend.is_native(w) else w

    def count_params(self) -> int:
        return sum(int(np.prod(p.shape)) for p in self.parameters())

    def copy(self, dtype: str | None = None, backend: Any = None) -> Sequential:
        """An independent copy, optionally in another dtype or on another backend."""
        config = dict(self.config(), dtype=dtype or self.dtype)
        net = build(config, backend or self.backend)
        net.set_weights(self.get_weights())
        net.set_buffers([self.backend.to_numpy(b) for b in self.buffers()])
        return net

    def to(self, backend: Any) -> Sequential:
        """Move the parameters to another backend (name or Backend); returns self.

        Leaving a GPU backend gives the device memory its pool cached back to the device.
        """
        weights, buffers = self.get_weights(), [self.backend.to_numpy(b).copy() for b in self.buffers()]
        old, self.backend = self.backend, backends.get_backend(backend)
        for layer in self.layers:
            layer.attach(self.backend, self.dtype)
        self.reseed(self.seed)
        self.set_weights(weights)
        self.set_buffers(buffers)
        if old is not self.backend:
            old.free_memory()  # after the old arrays are dropped, so their blocks are free to return
        return self

    # ---- training -------------------------------------------------------------------

    def compile(self, loss: Any, optimizer: Any, gradient: str = "backprop", max_norm: float | None = None,
                clip_norm: float | None = None, eps: float = 1e-3, method: str = "central") -> Any:
        """A training step for this net: ``step(X, y)`` returns the loss; ``step.repeat(X, y, n)``.

        Each backend returns its fastest step (the plain layer-by-layer one by default).
        ``clip_norm`` clips the global gradient norm before each update.
        """
        from . import losses, optim, steps

        return steps.compile(self, losses.get(loss), optim.get(optimizer), gradient=gradient,
                             max_norm=max_norm, clip_norm=clip_norm, eps=eps, method=method)

    def fit(self, X, y, loss="mse", optimizer="sgd", epochs=1, batch_size="auto", *, validation_data=None,
            validation_split=0.0, shuffle=True, early_stopping=None, callbacks=None, max_norm=None, clip_norm=None,
            gradient="backprop", progress=True, seed=0, checkpoint=None, every=1, resume=None, distributed=False):
        """Train; returns a History. ``xpnet.training.fit`` says what each argument does."""
        from .training import fit

        return fit(self, X, y, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
                   validation_data=validation_data, validation_split=validation_split, shuffle=shuffle,
                   early_stopping=early_stopping, callbacks=callbacks, max_norm=max_norm, clip_norm=clip_norm,
                   gradient=gradient, progress=progress, seed=seed, checkpoint=checkpoint, every=every, resume=resume,
                   distributed=distributed)

    # ---- checkpoints -----------------------------------------------------------------

    def config(self):
        return {"class": "Sequential", "layers": [layer_spec(layer) for layer in self.layers],
                "input_shape": list(self.input_shape), "seed": self.seed, "dtype": self.dtype}

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        """Write a .npz checkpoint (atomic: a temporary file renamed into place).

        ``extra`` is a JSON-able dict stored alongside (the command line keeps the
        loss and the input scaling there); ``xpnet.checkpoint.load`` returns it.
        """
        checkpoint.save(path, self.config(), self.state(), extra=extra)

    def to_torch(self) -> Any:
        """The twin torch.nn.Sequential, with these weights (needs PyTorch: ``pip install -e '.[torch]'``)."""
        from . import pytorch  # pytorch builds networks: imported here, not at the top, to break the cycle

        return pytorch.to_torch(self)

    def export_onnx(self, path: str | os.PathLike) -> None:
        """Write this network as an ONNX model for inference, batch axis symbolic (``pip install -e '.[onnx]'``)."""
        from . import onnx_export  # optional: imports onnx only when asked

        onnx_export.export_onnx(self, path)

    def summary(self) -> str:
        """A table as Keras prints it: each layer, its output shape (None: the batch) and its parameter count."""
        rows = [("Layer", "Output shape", "Params"), ("input", str((None, *self.input_shape)), "")]
        for i, layer in enumerate(self.layers):
            count = sum(int(np.prod(layer.params[name].shape)) for name in layer.param_names)
            activation = layer.config().get("activation")
            name = f"{i}: {type(layer).__name__}" + (f" ({activation})" if activation else "")
            rows.append((name, str((None, *layer.output_shape)), f"{count:,}"))
        widths = [max(len(row[k]) for row in rows) for k in range(3)]
        line = lambda row: f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}".rstrip()  # noqa: E731
        rule = "-" * (sum(widths) + 4)
        return "\n".join([f"{type(self).__name__} on {self.backend.name}, {self.dtype}", line(rows[0]), rule,
                          *map(line, rows[1:]), rule, f"{self.count_params():,} parameters"])

    def __repr__(self):
        shape = lambda s: s[0] if len(s) == 1 else s  # noqa: E731
        return f"<{type(self).__name__} {shape(self.input_shape)}→{shape(self.output_shape)}, " \
               f"{len(self.layers)} layers, backend={self.backend.name!r}, dtype={self.dtype}>"


class MLP(Sequential):
    """A multilayer perceptron from layer sizes, e.g. ``[2, 16, 16, 2]``.

    Hidden layers use ``activation``; the output layer ``output_activation``
    (None: identity, logits for softmax_ce / bce_logits). ``dropout`` > 0 adds a
    Dropout after each hidden layer.

    >>> import xpnet as xn
    >>> net = xn.MLP([2, 8, 8, 2], activation="relu", seed=0)
    >>> net.count_params()
    114
    """

    def __init__(self, sizes: Sequence[int], activation: str = "tanh", output_activation: str | None = None,
                 init: Any = "auto", dtype: str = "float32", seed: int | None = 0, backend: Any = None,
                 alpha: float = 0.01, dropout: float = 0.0) -> None:
        sizes = list(sizes) if isinstance(sizes, (list, tuple)) else sizes
        output_activation = output_activation or "identity"
        stack = mlp_layers(sizes, activation, output_activation, init, alpha, dropout)
        self.sizes = sizes
        self._config = {"sizes": sizes, "activation": activation, "output_activation": output_activation,
                        "init": init if isinstance(init, str) else stack[0].init.config(),
                        "alpha": alpha, "dropout": dropout}
        super().__init__(stack, seed=seed, dtype=dtype, backend=backend)

    def config(self):
        config = super().config()
        config.update({"class": "MLP", **self._config})
        del config["input_shape"]  # sizes[0] says it
        return config


def mlp_layers(sizes, activation, output_activation, init, alpha, dropout):
    """The Dense (and Dropout) layers of an MLP with these layer widths."""
    if not isinstance(sizes, list) or len(sizes) < 2:
        raise ConfigError(f"MLP sizes must be a list of at least 2 layer widths like [2, 16, 1], got {sizes!r}")
    for name in (activation, output_activation):
        lookup("activation", name, kernels.ACTIVATIONS)
    stack = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        last = i == len(sizes) - 2
        stack.append(layers_mod.Dense(fan_in, fan_out, activation=output_activation if last else activation,
                                      alpha=alpha, init=init))
        if dropout and not last:
            stack.append(layers_mod.Dropout(dropout))
    return stack


def check_shape(shape):
    """One sample's shape as a tuple of positive ints, or ConfigError."""
    if shape is None:
        raise ConfigError("the network's input shape is unknown: pass Sequential(..., input_shape=(...)) "
                          "(one sample's shape, without the batch axis) or start with Dense(fan_in, fan_out)")
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if not (isinstance(shape, (tuple, list)) and shape and all(isinstance(d, numbers.Integral)
                                                               and not isinstance(d, bool) and d >= 1 for d in shape)):
        raise ConfigError(f"a shape must be a tuple of positive integers (batch axis excluded), got {shape!r}")
    return tuple(int(d) for d in shape)


def infer_shapes(layers, input_shape, rng, backend, dtype):
    """Build every layer in order on ``backend`` (None: shapes only, nothing moved to a device); returns the
    output shape. A layer that cannot take its input is a ShapeError naming it, its index and the shapes."""
    shape = input_shape
    for i, layer in enumerate(layers):
        layer.attach(backend, dtype)
        try:
            out = layer.build(shape, rng)
        except (ShapeError, ConfigError) as e:
            raise type(e)(f"layer {i} ({type(layer).__name__}) cannot take input of shape {shape}: {e}") from None
        try:
            out = check_shape(out)
        except ConfigError:
            raise ShapeError(f"layer {i} ({type(layer).__name__}).build returned {out!r} for input shape {shape}; "
                             f"it must return the output shape, a tuple of positive integers") from None
        layer.input_shape, layer.output_shape = shape, out
        shape = out
    return shape


def layer_spec(layer):
    """A layer as a checkpoint names it: its registered type and its config."""
    name = type(layer).__name__
    if layers_mod.REGISTRY.get(name) is not type(layer):
        raise CheckpointError(f"layer {layer!r} cannot be saved: its class {name} is not registered. "
                              f"Put @xn.layers.register above the class definition")
    return {"type": name, **layer.config()}


def load(path: str | os.PathLike, backend: Any = None) -> Sequential:
    """Rebuild a network saved with ``net.save(path)`` onto ``backend``.

    Checkpoints of xpnet 0.1 (parameters named W1, b1, ...) load too.

    >>> import xpnet as xn, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "net.npz")
    >>> xn.MLP([2, 3, 1]).save(path)
    >>> xn.load(path, backend="numpy").sizes
    [2, 3, 1]
    """
    names = {}  # the name each array has in this file, by its name in the network

    def expected(header):
        specs = param_specs(header["config"], path)
        if str(header.get("version", "")).startswith("0.1."):  # xpnet 0.1 numbered parameters by trainable layer
            names.update(legacy_names(header["config"], specs))
        return {names.get(name, name): spec for name, spec in specs.items()}

    config, arrays, _ = checkpoint.load(path, expected=expected)
    try:
        net = build(config, backend)
    except (KeyError, TypeError, ValueError) as e:  # ConfigError, ShapeError, ... are ValueErrors too
        raise CheckpointError(f"{path}: the header does not describe a network xpnet can build ({e})") from None
    try:
        net.set_weights([arrays[names.get(name, name)] for name in net.param_names()])
        net.set_buffers([arrays[names.get(name, name)] for name in net.buffer_names()])
    except ValueError as e:
        raise CheckpointError(f"{path}: the weights cannot be used: {e}") from None
    return net


class _ShapeOnlyRng:
    """Stands in for a NumPy generator while shapes are inferred: draws are zero-strided views, never allocated."""

    @staticmethod
    def _zeros(size):
        return np.broadcast_to(np.float64(0.0), () if size is None else size)

    def normal(self, loc=0.0, scale=1.0, size=None):
        return self._zeros(size)

    def uniform(self, low=0.0, high=1.0, size=None):
        return self._zeros(size)

    def standard_normal(self, size=None, dtype=None):
        return self._zeros(size)

    def random(self, size=None, dtype=None):
        return self._zeros(size)

    def integers(self, low, high=None, size=None, dtype=None, endpoint=False):
        return 0


def param_specs(config, path="checkpoint"):
    """{"0.W": (shape, dtype), ...} of every parameter and buffer of the network ``config`` describes,
    found by inferring shapes only: nothing as large as the weights is allocated."""
    try:
        dtype = config["dtype"]
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype {dtype!r:.20}")
        stack = config_layers(config)
        shape = check_shape(config.get("input_shape") or stack[0].default_input_shape())
        infer_shapes(stack, shape, _ShapeOnlyRng(), None, dtype)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise CheckpointError(f"{path}: the header does not describe a network xpnet can build "
                              f"({type(e).__name__}: {e})") from None
    return {f"{i}.{name}": (tuple(arrays[name].shape), dtype) for i, layer in enumerate(stack)
            for arrays, names in ((layer.params, layer.param_names), (layer.buffers, layer.buffer_names))
            for name in names}


def legacy_names(config, specs):
    """{"0.W": "W1", "0.b": "b1", "2.W": "W2", ...}: xpnet 0.1 numbered parameters by trainable layer from 1."""
    trainable = sorted({int(name.split(".")[0]) for name in specs}, key=int)
    number = {index: k for k, index in enumerate(trainable, 1)}
    return {name: f"{name.split('.', 1)[1]}{number[int(name.split('.')[0])]}" for name in specs}


def config_layers(config):
    """Fresh (unbuilt) layers from a network's config."""
    if config["class"] == "MLP":
        return mlp_layers(config["sizes"], config["activation"], config["output_activation"], config["init"],
                          config["alpha"], config["dropout"])
    if config["class"] != "Sequential":
        raise ValueError(f"unknown network class {config['class']!r:.40}")
    if not isinstance(config["layers"], list) or not config["layers"]:
        raise ValueError("no layers")
    return [layers_mod.get(spec["type"])(**{k: v for k, v in spec.items() if k != "type"})
            for spec in config["layers"]]


def build(config, backend=None):
    """A freshly initialised network from ``net.config()``."""
    if config["class"] == "MLP":
        return MLP(config["sizes"], activation=config["activation"], output_activation=config["output_activation"],
                   init=config["init"], dtype=config["dtype"], seed=config["seed"], backend=backend,
                   alpha=config["alpha"], dropout=config["dropout"])
    return Sequential(config_layers(config), input_shape=config.get("input_shape"), seed=config["seed"],
                      dtype=config["dtype"], backend=backend)
