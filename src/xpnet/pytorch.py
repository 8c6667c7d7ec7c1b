"""PyTorch twins: an xpnet Sequential from a ``torch.nn.Sequential`` and back, with the same weights.

Two tables say what maps: ``FROM_TORCH`` (torch module type → xpnet layer) and
``TO_TORCH`` (xpnet layer type → torch modules). torch's activations fold into
the Dense or convolution before them; torch.nn.Linear stores W as (fan_out,
fan_in), xpnet's Dense as (fan_in, fan_out), so W crosses transposed. Conv
weights are (C_out, C_in, k...) on both sides, and BatchNorm's running
statistics cross as buffers.

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


def _window(m, name, ndim):
    """A torch module's int-or-tuple argument as an ndim-tuple."""
    value = getattr(m, name)
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * ndim


def _refuse(m, kind, **allowed):
    """ConfigError unless each named attribute of torch module m has the value xpnet supports."""
    for name, value in allowed.items():
        if getattr(m, name, value) != value:  # (AvgPool1d has no divisor_override)
            raise ConfigError(f"{kind}({name}={getattr(m, name)!r}) has no xpnet layer; xpnet's {kind} has "
                              f"{name}={value!r}")


def _conv(ndim):
    def build(m):
        kind = type(m).__name__
        if isinstance(m.padding, str):
            raise ConfigError(f"{kind}(padding={m.padding!r}) has no xpnet layer; give the padding as numbers")
        _refuse(m, kind, groups=1, padding_mode="zeros")
        conv = (layers.Conv1D, layers.Conv2D)[ndim - 1]
        bias = np.zeros(m.out_channels) if m.bias is None else _host(m.bias)
        layer = conv(m.out_channels, _window(m, "kernel_size", ndim), _window(m, "stride", ndim),
                     _window(m, "padding", ndim), _window(m, "dilation", ndim), in_channels=m.in_channels)
        return layer, {"W": _host(m.weight), "b": bias}
    return build


def _pool(xpnet_layer, ndim):
    def build(m):
        kind = type(m).__name__
        if kind.startswith("Max"):
            if _window(m, "dilation", ndim) != (1,) * ndim:
                raise ConfigError(f"{kind}(dilation={m.dilation!r}) has no xpnet layer; xpnet pools undilated")
            _refuse(m, kind, ceil_mode=False, return_indices=False)
        else:
            _refuse(m, kind, ceil_mode=False, count_include_pad=True, divisor_override=None)
        # (torch keeps stride=None as the kernel size)
        return xpnet_layer(_window(m, "kernel_size", ndim), _window(m, "stride", ndim), _window(m, "padding", ndim)), {}
    return build


def _batch_norm(m):
    kind = type(m).__name__
    if m.momentum is None or not m.affine or not m.track_running_stats:
        raise ConfigError(f"{kind}(momentum={m.momentum}, affine={m.affine}, track_running_stats="
                          f"{m.track_running_stats}) has no xpnet layer; xpnet's BatchNorm has a momentum, learns "
                          f"γ and β and keeps running statistics")
    layer = layers.BatchNorm(momentum=m.momentum, eps=m.eps)
    return layer, {"gamma": _host(m.weight), "beta": _host(m.bias), "running_mean": _host(m.running_mean),
                   "running_var": _host(m.running_var)}


def _layer_norm(m):
    if not m.elementwise_affine or m.bias is None:
        raise ConfigError("LayerNorm(elementwise_affine=False or bias=False) has no xpnet layer; xpnet's LayerNorm "
                          "learns γ and β")
    # γ's shape is the normalised shape: from_torch checks it against each sample's once shapes are known
    return layers.LayerNorm(eps=m.eps), {"gamma": _host(m.weight), "beta": _host(m.bias)}


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
    "Conv1d": _conv(1),
    "Conv2d": _conv(2),
    "MaxPool1d": _pool(layers.MaxPool1D, 1),
    "MaxPool2d": _pool(layers.MaxPool2D, 2),
    "AvgPool1d": _pool(layers.AvgPool1D, 1),
    "AvgPool2d": _pool(layers.AvgPool2D, 2),
    "BatchNorm1d": _batch_norm,
    "BatchNorm2d": _batch_norm,
    "LayerNorm": _layer_norm,
}
FOLDS_ACTIVATION = ("Linear", "Conv1d", "Conv2d")  # torch modules whose next activation becomes their layer's


def _dense_to_torch(nn, layer):
    config = layer.config()
    linear = nn.Linear(*layer.params["W"].shape)
    return [linear] + ACTIVATIONS_TO_TORCH[config["activation"]](nn, config["alpha"]), {"W": (linear.weight, True),
                                                                                       "b": (linear.bias, False)}


def _conv_to_torch(nn, layer):
    config = layer.config()  # the window arguments as the layer was given them: an int or one per axis
    conv = getattr(nn, type(layer).__name__.replace("D", "d"))(  # Conv2D → Conv2d
        config["in_channels"], config["out_channels"], config["kernel_size"], config["stride"], config["padding"],
        config["dilation"])
    return [conv] + ACTIVATIONS_TO_TORCH[config["activation"]](nn, config["alpha"]), {"W": (conv.weight, False),
                                                                                     "b": (conv.bias, False)}


def _pool_to_torch(nn, layer):
    config = layer.config()
    kind = type(layer).__name__.replace("D", "d")  # MaxPool2D → MaxPool2d
    return [getattr(nn, kind)(config["kernel_size"], config["stride"], config["padding"])], {}


def _batch_norm_to_torch(nn, layer):
    config, channels = layer.config(), layer.output_shape[0]
    norm = (nn.BatchNorm1d if len(layer.output_shape) <= 2 else nn.BatchNorm2d)(channels, eps=config["eps"],
                                                                              momentum=config["momentum"])
    return [norm], {"gamma": (norm.weight, False), "beta": (norm.bias, False), "running_mean": (norm.running_mean, False),
                    "running_var": (norm.running_var, False)}


def _layer_norm_to_torch(nn, layer):
    norm = nn.LayerNorm(layer.output_shape, eps=layer.config()["eps"])
    return [norm], {"gamma": (norm.weight, False), "beta": (norm.bias, False)}


# xpnet layer type → a function (torch.nn, layer) giving (torch modules, {param or buffer: (torch tensor,
# transposed)}).
TO_TORCH = {
    "Dense": _dense_to_torch,
    "Dropout": lambda nn, layer: ([nn.Dropout(layer.config()["p"])], {}),
    "Flatten": lambda nn, layer: ([nn.Flatten()], {}),
    "Reshape": lambda nn, layer: ([nn.Flatten(), nn.Unflatten(1, layer.output_shape)], {}),
    "Conv1D": _conv_to_torch,
    "Conv2D": _conv_to_torch,
    "MaxPool1D": _pool_to_torch,
    "MaxPool2D": _pool_to_torch,
    "AvgPool1D": _pool_to_torch,
    "AvgPool2D": _pool_to_torch,
    "BatchNorm": _batch_norm_to_torch,
    "LayerNorm": _layer_norm_to_torch,
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
    must follow a Linear or Conv). ``input_shape``: one sample's shape, needed unless a Linear
    comes first. A Linear or Conv without a bias becomes a layer whose bias starts at zero: the
    same outputs, but training then learns that bias, which torch's module would not.
    """
    torch = require("torch")
    if not isinstance(module, torch.nn.Sequential):
        raise ConfigError(f"from_torch takes a torch.nn.Sequential, got {type(module).__module__}."
                          f"{type(module).__name__}; wrap it: torch.nn.Sequential(module)")
    dtypes = {str(p.dtype) for p in module.parameters()} | {
        str(b.dtype) for name, b in module.named_buffers() if not name.endswith("num_batches_tracked")}  # a count
    unsupported = sorted(dtypes - set(DTYPES))
    if unsupported or len(dtypes) > 1:
        raise DataTypeError(f"from_torch: the module's parameters are {', '.join(sorted(dtypes))}; xpnet supports "
                            f"one of {', '.join(DTYPES)} (call module.float() or module.double() first)")
    stack, weights, buffers, norms = [], [], [], []  # norms: each layer's LayerNorm γ from torch, or None
    open_linear = False  # the last layer built is a Dense or conv from torch, still without an activation
    for index, child in _modules(module):
        kind = type(child).__name__
        if kind in ACTIVATIONS_FROM_TORCH:
            if not open_linear:
                raise ConfigError(f"module {index} ({kind}) follows no Linear or Conv without an activation; xpnet "
                                  f"applies activations inside Dense and Conv layers, so each must come right after "
                                  f"one")
            activation, alpha = ACTIVATIONS_FROM_TORCH[kind](child)
            config = stack[-1].config()
            stack[-1] = type(stack[-1])(**{**config, "activation": activation, "alpha": alpha,
                                           "init": "auto"})  # the weights come from torch: init is never used
            open_linear = False
            continue
        open_linear = kind in FOLDS_ACTIVATION
        if kind not in FROM_TORCH:
            raise ConfigError(f"module {index} ({kind}) has no xpnet layer; from_torch maps "
                              f"{', '.join(sorted(FROM_TORCH) + sorted(ACTIVATIONS_FROM_TORCH))}")
        layer, params = FROM_TORCH[kind](child)
        if layer is not None:
            stack.append(layer)
            norms.append(params["gamma"] if kind == "LayerNorm" else None)
            weights += [params[name] for name in layer.param_names]
            buffers += [params[name] for name in layer.buffer_names]
    if not stack:
        raise ConfigError("from_torch: the module has no layer xpnet can build (only Identity modules?)")
    net = Sequential(stack, input_shape=input_shape, seed=seed, dtype=DTYPES[dtypes.pop()] if dtypes else "float32",
                     backend=backend)
    for index, (layer, gamma) in enumerate(zip(net.layers, norms)):
        if gamma is not None and gamma.shape != tuple(layer.output_shape):
            raise ConfigError(f"layer {index}: LayerNorm{gamma.shape} normalises part of each sample's shape "
                              f"{tuple(layer.output_shape)}; xpnet's LayerNorm normalises all of it")
    net.set_weights(weights)
    net.set_buffers(buffers)
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
                value = net.backend.to_numpy(layer.params[name] if name in layer.params else layer.buffers[name])
                parameter.data = torch.from_numpy(np.ascontiguousarray(value.T if transposed else value).copy())
        modules += made
    return torch.nn.Sequential(*modules).to(getattr(torch, net.dtype))
