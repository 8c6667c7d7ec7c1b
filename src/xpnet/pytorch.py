"""PyTorch twins: an xpnet Sequential from a ``torch.nn.Sequential`` and back, with the same weights.

Two tables say what maps: ``FROM_TORCH`` (torch module type → xpnet layer) and
``TO_TORCH`` (xpnet layer type → torch modules). torch's activations fold into
the Dense layer before them; torch.nn.Linear stores W as (fan_out, fan_in),
xpnet's Dense as (fan_in, fan_out), so W crosses transposed.

>>> import torch, xpnet as xn
>>> module = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
>>> net = xn.from_torch(module)
>>> [type(layer).__name__ for layer in net.layers], net.layers[0].activation
(['Dense', 'Dense'], 'tanh')
>>> net.to_torch()
Sequential(
  (0): Linear(in_features=2, out_features=8, bias=True)
  (1): Tanh()
  (2): Linear(in_features=8, out_features=1, bias=True)
)
"""
import numpy as np

from . import layers
from .errors import ConfigError, DataTypeError
from .network import Sequential
from .optional import require

DTYPES = {"torch.float32": "float32", "torch.float64": "float64"}

# torch activation module type → (xpnet activation name, its alpha), folded into the Dense before it.
ACTIVATIONS_FROM_TORCH = {
    "ReLU": lambda m: ("relu", 0.01),
    "Tanh": lambda m: ("tanh", 0.01),
    "Sigmoid": lambda m: ("sigmoid", 0.01),
    "LeakyReLU": lambda m: ("leaky_relu", float(m.negative_slope)),
    "GELU": lambda m: ({"none": "gelu", "tanh": "gelu_tanh"}[m.approximate], 0.01),
}
ACTIVATIONS_TO_TORCH = {
    "identity": lambda nn, alpha: [],
    "relu": lambda nn, alpha: [nn.ReLU()],
    "tanh": lambda nn, alpha: [nn.Tanh()],
    "sigmoid": lambda nn, alpha: [nn.Sigmoid()],
    "leaky_relu": lambda nn, alpha: [nn.LeakyReLU(alpha)],
    "gelu": lambda nn, alpha: [nn.GELU()],
    "gelu_tanh": lambda nn, alpha: [nn.GELU(approximate="tanh")],
}


def _host(tensor):
    return tensor.detach().cpu().double().numpy()


def _linear(m):
    bias = np.zeros(m.out_features) if m.bias is None else _host(m.bias)
    return layers.Dense(m.in_features, m.out_features), {"W": _host(m.weight).T, "b": bias}


def _flatten(m):
    if (m.start_dim, m.end_dim) != (1, -1):
        raise ConfigError(f"Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}) has no xpnet layer; "
                          f"xpnet's Flatten is Flatten(start_dim=1, end_dim=-1)")
    return layers.Flatten(), {}


def _unflatten(m):
    if m.dim != 1:
        raise ConfigError(f"Unflatten(dim={m.dim}) has no xpnet layer; xpnet's Reshape is Unflatten(dim=1, ...)")
    return layers.Reshape(tuple(m.unflattened_size)), {}


# torch module type → a function of the module giving (xpnet layer, {param: host float64 array}); None: no layer.
FROM_TORCH = {
    "Linear": _linear,
    "Dropout": lambda m: (layers.Dropout(m.p), {}),
    "Flatten": _flatten,
    "Unflatten": _unflatten,
    "Identity": lambda m: (None, {}),
}


def _dense_to_torch(nn, layer):
    config = layer.config()
    linear = nn.Linear(*layer.params["W"].shape)
    return [linear] + ACTIVATIONS_TO_TORCH[config["activation"]](nn, config["alpha"]), {"W": (linear.weight, True),
                                                                                       "b": (linear.bias, False)}


# xpnet layer type → a function (torch.nn, layer) giving (torch modules, {param: (torch parameter, transposed)}).
TO_TORCH = {
    "Dense": _dense_to_torch,
    "Dropout": lambda nn, layer: ([nn.Dropout(layer.config()["p"])], {}),
    "Flatten": lambda nn, layer: ([nn.Flatten()], {}),
    "Reshape": lambda nn, layer: ([nn.Flatten(), nn.Unflatten(1, layer.output_shape)], {}),
}


def _modules(module, prefix=""):
    """(index as torch names it, module) of a Sequential, nested Sequentials opened."""
    for name, child in module.named_children():
        if type(child).__name__ == "Sequential":
            yield from _modules(child, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", child


def from_torch(module, input_shape=None, seed=0, backend=None):
    """An xpnet Sequential equal to ``module`` (a torch.nn.Sequential), with its weights, in its dtype.

    Supported modules are the keys of FROM_TORCH and ACTIVATIONS_FROM_TORCH (an activation
    must follow a Linear). ``input_shape``: one sample's shape, needed unless a Linear comes first.
    """
    torch = require("torch")
    if not isinstance(module, torch.nn.Sequential):
        raise ConfigError(f"from_torch takes a torch.nn.Sequential, got {type(module).__module__}."
                          f"{type(module).__name__}; wrap it: torch.nn.Sequential(module)")
    dtypes = {str(p.dtype) for p in module.parameters()} | {str(b.dtype) for b in module.buffers()}
    unsupported = sorted(dtypes - set(DTYPES))
    if unsupported or len(dtypes) > 1:
        raise DataTypeError(f"from_torch: the module's parameters are {', '.join(sorted(dtypes))}; xpnet supports "
                            f"one of {', '.join(DTYPES)} (call module.float() or module.double() first)")
    stack, weights = [], []
    open_linear = False  # the last layer built is a Dense from a Linear, still without an activation
    for index, child in _modules(module):
        kind = type(child).__name__
        if kind in ACTIVATIONS_FROM_TORCH:
            if not open_linear:
                raise ConfigError(f"module {index} ({kind}) follows no Linear without an activation; xpnet applies "
                                  f"activations inside Dense, so each must come right after a Linear")
            activation, alpha = ACTIVATIONS_FROM_TORCH[kind](child)
            config = stack[-1].config()
            stack[-1] = layers.Dense(**{**config, "activation": activation, "alpha": alpha,
                                        "init": "auto"})  # the weights come from torch: init is never used
            open_linear = False
            continue
        open_linear = kind == "Linear"
        if kind not in FROM_TORCH:
            raise ConfigError(f"module {index} ({kind}) has no xpnet layer; from_torch maps "
                              f"{', '.join(sorted(FROM_TORCH) + sorted(ACTIVATIONS_FROM_TORCH))}")
        layer, params = FROM_TORCH[kind](child)
        if layer is not None:
            stack.append(layer)
            weights += [params[name] for name in layer.param_names]
    if not stack:
        raise ConfigError("from_torch: the module has no layer xpnet can build (only Identity modules?)")
    net = Sequential(stack, input_shape=input_shape, seed=seed, dtype=DTYPES[dtypes.pop()] if dtypes else "float32",
                     backend=backend)
    net.set_weights(weights)
    return net


def to_torch(net):
    """A torch.nn.Sequential equal to ``net``, with its weights, in its dtype, on the CPU."""
    torch = require("torch")
    modules = []
    for index, layer in enumerate(net.layers):
        kind = type(layer).__name__
        if kind not in TO_TORCH:
            raise ConfigError(f"layer {index} ({kind}) has no PyTorch twin; to_torch maps {', '.join(sorted(TO_TORCH))}")
        made, params = TO_TORCH[kind](torch.nn, layer)
        with torch.no_grad():
            for name, (parameter, transposed) in params.items():
                value = net.backend.to_numpy(layer.params[name])
                parameter.data = torch.from_numpy(np.ascontiguousarray(value.T if transposed else value).copy())
        modules += made
    return torch.nn.Sequential(*modules).to(getattr(torch, net.dtype))
