"""Networks: a Sequential stack of layers, and the MLP built from layer sizes."""
import numbers

import numpy as np

from . import backends, checkpoint, kernels, layers as layers_mod
from .errors import CheckpointError, ConfigError, ShapeError, lookup
from .validation import as_numbers, check_finite, check_seed, check_X


class Sequential:
    """Layers applied in order, with parameters on one backend.

    >>> import xpnet as xn
    >>> net = xn.Sequential([xn.layers.Dense(2, 16, activation="relu"),
    ...                      xn.layers.Dropout(0.1),
    ...                      xn.layers.Dense(16, 2)], seed=0)
    >>> net.predict([[0.0, 1.0]]).shape
    (1, 2)
    """

    def __init__(self, layers, seed=0, dtype="float32", backend=None):
        self.layers = list(layers)
        if not self.layers or not all(isinstance(layer, layers_mod.Layer) for layer in self.layers):
            raise ConfigError(f"Sequential needs a non-empty list of xn.layers objects, got {layers!r}")
        dense = [layer for layer in self.layers if isinstance(layer, layers_mod.Dense)]
        if not dense:
            raise ConfigError("a network needs at least one Dense layer")
        for below, above in zip(dense, dense[1:]):
            if below.fan_out != above.fan_in:
                raise ShapeError(f"Dense layers do not chain: {below.fan_out} outputs feed a layer "
                                 f"expecting {above.fan_in} inputs")
        self.n_inputs, self.n_outputs = dense[0].fan_in, dense[-1].fan_out
        self.seed = check_seed(seed)
        self.backend = backends.get_backend(backend)
        self.backend.dtype(dtype)  # raises ConfigError for anything but float32/float64
        self.dtype = dtype
        self._first_trainable = next(i for i, layer in enumerate(self.layers) if layer.param_names)
        rng = np.random.default_rng(seed)
        for layer in self.layers:
            layer.build(self.backend, dtype, rng)
        self.reseed(seed)

    def reseed(self, seed):
        """Restart every dropout generator from ``seed`` (each layer its own stream)."""
        for i, layer in enumerate(self.layers):
            if isinstance(layer, layers_mod.Dropout):
                layer.seed(int(np.random.SeedSequence([seed or 0, i]).generate_state(1)[0]))

    # ---- forward -------------------------------------------------------------------

    def forward(self, X, training=False):
        """The network's output for X (host or backend array), as a backend array."""
        X = self.backend.asarray(check_X(X, self.n_inputs), dtype=self.backend.dtype(self.dtype))
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
        for i, backward in reversed(list(enumerate(backwards))):
            # No layer below the first trainable one needs ∂C/∂x: skip that product.
            grad = backward(grad, need_grad_x=i > self._first_trainable)
        return value

    def predict(self, X, batch_size=4096):
        """Outputs for X as a host NumPy array, computed in batches, dropout off."""
        if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"predict batch_size must be an integer ≥ 1, got {batch_size!r}")
        X = check_X(X, self.n_inputs)
        n = X.shape[0]
        if n == 0:
            return np.zeros((0, self.n_outputs), dtype=self.dtype)
        return np.concatenate([self.backend.to_numpy(self.forward(X[i:min(i + batch_size, n), ...]))
                               for i in range(0, n, batch_size)])

    def evaluate(self, X, y, loss="mse"):
        """{"loss": mean loss, "accuracy": ... (classifiers)} on (X, y), dropout off."""
        from . import losses
        from .gradients import prepare
        from .training import evaluate

        loss = losses.get(loss)
        value, accuracy = evaluate(self, loss, *prepare(self, loss, X, y))
        return {"loss": value} if accuracy is None else {"loss": value, "accuracy": accuracy}

    # ---- parameters ----------------------------------------------------------------

    def parameters(self):
        """Parameter arrays on the backend, in the order of get_weights()."""
        return [layer.params[name] for layer in self.layers for name in layer.param_names]

    def gradients(self):
        """Gradient arrays from the last backward pass, in the order of parameters()."""
        return [layer.grads[name] for layer in self.layers for name in layer.param_names]

    def param_names(self):
        """Names "W1", "b1", "W2", ... in the order of parameters()."""
        dense = [layer for layer in self.layers if layer.param_names]
        return [f"{name}{i}" for i, layer in enumerate(dense, 1) for name in layer.param_names]

    def get_weights(self):
        """[W1, b1, W2, b2, ...] as host NumPy arrays; W has shape (fan_in, fan_out)."""
        return [self.backend.to_numpy(p).copy() for p in self.parameters()]

    def set_weights(self, weights):
        """Replace every parameter; count, shapes and finite real values are checked before anything changes."""
        current, names = self.parameters(), self.param_names()
        weights = list(weights)
        if len(weights) != len(current):
            raise ShapeError(f"set_weights expected {len(current)} arrays ({', '.join(names)}), got {len(weights)}")
        weights = [as_numbers(self._to_host(w), f"set_weights: {name}") for name, w in zip(names, weights)]
        for name, w, p in zip(names, weights, current):
            if w.shape != tuple(p.shape):
                raise ShapeError(f"set_weights: {name} must have shape {tuple(p.shape)}, got {w.shape}")
            check_finite(w, f"set_weights: {name}")
        weights = iter(weights)
        for layer in self.layers:
            for name in layer.param_names:
                layer.params[name] = self.backend.asarray(np.array(next(weights)), dtype=self.backend.dtype(self.dtype))

    def _to_host(self, w):
        return self.backend.to_numpy(w) if self.backend.is_native(w) else w

    def count_params(self):
        return sum(int(np.prod(p.shape)) for p in self.parameters())

    def copy(self, dtype=None, backend=None):
        """An independent copy, optionally in another dtype or on another backend."""
        config = dict(self.config(), dtype=dtype or self.dtype)
        net = build(config, backend or self.backend)
        net.set_weights(self.get_weights())
        return net

    def to(self, backend):
        """Move the parameters to another backend (name or Backend); returns self.

        Leaving a GPU backend gives the device memory its pool cached back to the device.
        """
        weights = self.get_weights()
        old, self.backend = self.backend, backends.get_backend(backend)
        for layer in self.layers:
            layer.backend = self.backend
            layer.grads = {}
            if isinstance(layer, layers_mod.Dropout):
                layer.rng = self.backend.rng(0)
        self.reseed(self.seed)
        self.set_weights(weights)
        if old is not self.backend:
            old.free_memory()  # after the old arrays are dropped, so their blocks are free to return
        return self

    # ---- training -------------------------------------------------------------------

    def compile(self, loss, optimizer, gradient="backprop", max_norm=None, clip_norm=None, eps=1e-3,
                method="central"):
        """A training step for this net: ``step(X, y)`` returns the loss; ``step.repeat(X, y, n)``.

        Each backend returns its fastest step (the plain layer-by-layer one by default).
        ``clip_norm`` clips the global gradient norm before each update.
        """
        from . import losses, optim

        return self.backend.compile_step(self, losses.get(loss), optim.get(optimizer), gradient=gradient,
                                         max_norm=max_norm, clip_norm=clip_norm, eps=eps, method=method)

    def fit(self, X, y, loss="mse", optimizer="sgd", epochs=1, batch_size="auto", **kwargs):
        """Train; returns a History. See ``xpnet.training.fit`` for every argument."""
        from .training import fit

        return fit(self, X, y, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size, **kwargs)

    # ---- checkpoints -----------------------------------------------------------------

    def config(self):
        return {"class": "Sequential", "layers": [{"type": type(layer).__name__, **layer.config()}
                                                  for layer in self.layers],
                "seed": self.seed, "dtype": self.dtype}

    def save(self, path, extra=None):
        """Write a .npz checkpoint (atomic: a temporary file renamed into place).

        ``extra`` is a JSON-able dict stored alongside (the command line keeps the
        loss and the input scaling there); ``xpnet.checkpoint.load`` returns it.
        """
        checkpoint.save(path, self.config(), dict(zip(self.param_names(), self.get_weights())), extra=extra)

    def summary(self):
        lines = [f"{type(self).__name__} on {self.backend.name}, {self.dtype}, {self.count_params()} parameters"]
        lines += [f"  {layer!r}" for layer in self.layers]
        return "\n".join(lines)

    def __repr__(self):
        return f"<{type(self).__name__} {self.n_inputs}→{self.n_outputs}, {len(self.layers)} layers, " \
               f"backend={self.backend.name!r}, dtype={self.dtype}>"


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

    def __init__(self, sizes, activation="tanh", output_activation=None, init="auto", dtype="float32",
                 seed=0, backend=None, alpha=0.01, dropout=0.0):
        sizes = list(sizes) if isinstance(sizes, (list, tuple)) else sizes
        if not isinstance(sizes, list) or len(sizes) < 2:
            raise ConfigError(f"MLP sizes must be a list of at least 2 layer widths like [2, 16, 1], got {sizes!r}")
        output_activation = output_activation or "identity"
        for name in (activation, output_activation):
            lookup("activation", name, kernels.ACTIVATIONS)
        stack = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
            last = i == len(sizes) - 2
            act = output_activation if last else activation
            stack.append(layers_mod.Dense(fan_in, fan_out, activation=act, alpha=alpha, init=init))
            if dropout and not last:
                stack.append(layers_mod.Dropout(dropout))
        self.sizes = sizes
        self._config = {"sizes": sizes, "activation": activation, "output_activation": output_activation,
                        "init": init if isinstance(init, str) else stack[0].init.config(),
                        "alpha": alpha, "dropout": dropout}
        super().__init__(stack, seed=seed, dtype=dtype, backend=backend)

    def config(self):
        config = super().config()
        config.update({"class": "MLP", **self._config})
        return config


def load(path, backend=None):
    """Rebuild a network saved with ``net.save(path)`` onto ``backend``.

    >>> import xpnet as xn, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "net.npz")
    >>> xn.MLP([2, 3, 1]).save(path)
    >>> xn.load(path, backend="numpy").sizes
    [2, 3, 1]
    """
    config, weights, _ = checkpoint.load(path, expected=lambda header: param_specs(header["config"], path))
    try:
        net = build(config, backend)
    except (KeyError, TypeError, ValueError) as e:  # ConfigError, ShapeError, ... are ValueErrors too
        raise CheckpointError(f"{path}: the header does not describe a network xpnet can build ({e})") from None
    try:
        net.set_weights([weights[name] for name in net.param_names()])
    except ValueError as e:
        raise CheckpointError(f"{path}: the weights cannot be used: {e}") from None
    return net


def param_specs(config, path="checkpoint"):
    """{"W1": (shape, dtype), "b1": ...} of the network ``config`` describes, found without building it."""
    try:
        if config["class"] == "MLP":
            sizes = config["sizes"]
        else:
            dense = [layer for layer in config["layers"] if layer["type"] == "Dense"]
            sizes = [dense[0]["fan_in"]] + [layer["fan_out"] for layer in dense]
            if any(a["fan_out"] != b["fan_in"] for a, b in zip(dense, dense[1:])):
                raise ValueError("Dense layers that do not chain")
        dtype = config["dtype"]
        if not (isinstance(sizes, list) and len(sizes) >= 2 and dtype in ("float32", "float64")
                and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes)):
            raise ValueError(f"sizes {sizes!r:.80}, dtype {dtype!r:.20}")
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise CheckpointError(f"{path}: the header does not describe a network xpnet can build "
                              f"({type(e).__name__}: {e})") from None
    specs = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:]), 1):
        specs[f"W{i}"], specs[f"b{i}"] = ((fan_in, fan_out), dtype), ((fan_out,), dtype)
    return specs


def build(config, backend=None):
    """A freshly initialised network from ``net.config()``."""
    if config["class"] == "MLP":
        return MLP(config["sizes"], activation=config["activation"], output_activation=config["output_activation"],
                   init=config["init"], dtype=config["dtype"], seed=config["seed"], backend=backend,
                   alpha=config["alpha"], dropout=config["dropout"])
    if config["class"] != "Sequential":
        raise ValueError(f"unknown network class {config['class']!r}")
    stack = [layers_mod.LAYERS[spec.pop("type")](**spec) for spec in (dict(s) for s in config["layers"])]
    return Sequential(stack, seed=config["seed"], dtype=config["dtype"], backend=backend)
