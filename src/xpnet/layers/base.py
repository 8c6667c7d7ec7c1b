"""The Layer protocol every layer follows, xpnet's own and a user's, and the registry of layer names.

A layer is built when a network takes it in: the network attaches its
backend and dtype, then calls ``build(input_shape, rng)`` with the shape of
one sample (the batch axis excluded), and the layer creates its parameters
with ``add_param`` and returns its output shape. ``forward(x, training)``
returns ``(y, backward)``: ``backward(grad_y, need_grad_x=True)`` is a
closure over what the forward pass computed; it leaves ∂C/∂θ in
``self.grads`` and returns ∂C/∂x (None when ``need_grad_x`` is False).

What networks, steps, trace and checkpoints may use is listed in ``Layer``;
nothing else of a layer is read from outside its own file.
"""
import numpy as np

from ..errors import CheckpointError, ConfigError

REGISTRY: dict[str, type] = {}


def register(cls):
    """Class decorator: make ``cls`` loadable from checkpoints by its class name (a redefinition replaces it)."""
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise ConfigError(f"xn.layers.register takes a subclass of xn.layers.Layer, got {cls!r}")
    REGISTRY[cls.__name__] = cls
    return cls


def get(name):
    """The registered layer class called ``name``, else CheckpointError saying how to register it."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise CheckpointError(f"unknown layer type {name!r:.80}: known are {', '.join(sorted(REGISTRY))}. A layer "
                              f"of your own loads once its class is defined with @xn.layers.register above it")
    return REGISTRY[name]


class Layer:
    """Base class of every layer: subclass it, set ``param_names``, write ``build`` and ``forward``.

    The protocol, as networks, steps, trace and checkpoints use it:

    - ``param_names``: trainable arrays, in the order ``get_weights()`` lists them;
      ``buffer_names``: saved and moved but not trained (e.g. running means).
    - ``params``, ``grads``, ``buffers``: dicts of backend arrays by name.
    - ``build(input_shape, rng) -> output_shape``; ``forward(x, training) -> (y, backward)``.
    - ``config()``: JSON-able constructor arguments; ``register`` makes the class loadable.
    - ``stochastic``: True for a layer that draws random numbers in training; ``seed(s)`` restarts them.
    - ``input_shape`` / ``output_shape``: one sample's shapes, set when built.
    - ``synchronise(allreduce)``: data-parallel training hands every layer a function that sums a 1-D
      array over the ranks; a layer whose forward pass needs the whole batch (BatchNorm) keeps it.
    - ``fused_op()``: how an MLP-only fast step may compile the layer, or None.
    - ``self.backend`` / ``self.xp`` / ``self.dtype``: set by the network before ``build``.
    """

    param_names: tuple[str, ...] = ()
    buffer_names: tuple[str, ...] = ()
    stochastic = False

    def __init__(self):
        self.backend, self.dtype = None, None
        self.params, self.grads, self.buffers = {}, {}, {}
        self.input_shape = self.output_shape = None

    @property
    def xp(self):
        """The array namespace of the layer's backend."""
        return self.backend.xp

    def attach(self, backend, dtype):
        """Put the layer on ``backend`` with ``dtype`` (the network calls this before ``build`` and in ``to``).

        A backend of None builds shapes only: ``add_param`` then keeps host arrays as they are.
        """
        self.backend, self.dtype = backend, dtype
        self.grads = {}

    def config(self):
        """The constructor arguments, as JSON-able values (saved in checkpoints)."""
        return {}

    def default_input_shape(self):
        """The input shape the layer's own arguments imply (Dense(fan_in, ...)), or None."""
        return None

    def build(self, input_shape, rng):
        """Create the parameters for inputs of ``input_shape`` (one sample), drawing from ``rng``
        (a host NumPy generator); return the output shape. The default keeps the shape and has no parameters."""
        return input_shape

    def forward(self, x, training=False):
        """(y, backward) for a batch x."""
        raise NotImplementedError(f"{type(self).__name__} must define forward(x, training)")

    def add_param(self, name, value):
        """Make ``value`` (host data) the trainable parameter ``name``, on the backend in the network's dtype."""
        self.params[name] = self._place(name, value, self.param_names, "param_names")

    def add_buffer(self, name, value):
        """Make ``value`` (host data) the buffer ``name``: saved and moved with the layer, not trained."""
        self.buffers[name] = self._place(name, value, self.buffer_names, "buffer_names")

    def _place(self, name, value, declared, attribute):
        if name not in declared:
            raise ConfigError(f"{type(self).__name__}: {name!r} is not in its {attribute} {tuple(declared)}")
        value = np.asarray(value, dtype=np.float64)
        if self.backend is None:  # building shapes only
            return value
        # A copy of the caller's data, row-major as the kernels read it: a conv W built as a transposed view
        # stayed column-major, which cost a copy of W every step and the optimiser's flat update.
        return self.backend.asarray(np.array(value, order="C"), dtype=self.backend.dtype(self.dtype))

    def seed(self, seed):
        """Restart the layer's random numbers from ``seed`` (only stochastic layers draw any)."""

    def synchronise(self, allreduce):
        """Keep ``allreduce(flat)`` (the 1-D array summed over every data-parallel rank; None: this process
        alone) if the layer's statistics span the batch, and return True; most layers see one sample at a
        time and return False. A layer that keeps it calls it in every training forward and backward pass."""
        return False

    def fused_op(self):
        """What an MLP-only fast step may compile this layer to: ``("dense", activation, alpha)`` for
        a = σ(x W + b) with params W (fan_in, fan_out) and b; ``("identity",)`` for a layer that changes
        nothing in training; None for anything else (the default)."""
        return None

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"
