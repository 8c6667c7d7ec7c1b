"""ONNX export of an inference-mode network: one table, ``TO_ONNX``, from layer type to ONNX nodes.

The batch axis is symbolic ("batch"); Dropout is the identity, as in inference.
"""
import numpy as np

from .errors import ConfigError
from .optional import require

OPSET = 20  # Gelu (with its tanh approximation) is an operator from opset 20


def _activation(helper, name, alpha, x, out):
    """The node computing activation ``name`` from x into out ([] for identity: the caller renames)."""
    ops = {"relu": ("Relu", {}), "tanh": ("Tanh", {}), "sigmoid": ("Sigmoid", {}),
           "leaky_relu": ("LeakyRelu", {"alpha": alpha}), "gelu": ("Gelu", {"approximate": "none"}),
           "gelu_tanh": ("Gelu", {"approximate": "tanh"})}
    op, attributes = ops[name]
    return [helper.make_node(op, [x], [out], **attributes)]


def _dense(onnx, layer, i, x, out, weights):
    helper = onnx.helper
    W, b = weights(layer.params["W"]), weights(layer.params["b"])
    initializers = [onnx.numpy_helper.from_array(W, f"{i}.W"), onnx.numpy_helper.from_array(b, f"{i}.b")]
    config = layer.config()
    z = out if config["activation"] == "identity" else f"{i}.z"
    nodes = [helper.make_node("Gemm", [x, f"{i}.W", f"{i}.b"], [z])]  # z = x W + b
    if config["activation"] != "identity":
        nodes += _activation(helper, config["activation"], config["alpha"], z, out)
    return nodes, initializers


def _reshape(onnx, layer, i, x, out, weights):
    shape = onnx.numpy_helper.from_array(np.array([0, *layer.output_shape], dtype=np.int64), f"{i}.shape")
    return [onnx.helper.make_node("Reshape", [x, f"{i}.shape"], [out])], [shape]


def _per_axis(value, ndim):
    """A window argument from a layer's config (an int for 1-D layers, a list for 2-D) as one int per axis."""
    return [value] * ndim if isinstance(value, int) else list(value)


def _conv(onnx, layer, i, x, out, weights):
    helper = onnx.helper
    W, b = weights(layer.params["W"]), weights(layer.params["b"])  # W (C_out, C_in, k...): ONNX's layout too
    initializers = [onnx.numpy_helper.from_array(W, f"{i}.W"), onnx.numpy_helper.from_array(b, f"{i}.b")]
    config, ndim = layer.config(), W.ndim - 2
    z = out if config["activation"] == "identity" else f"{i}.z"
    nodes = [helper.make_node("Conv", [x, f"{i}.W", f"{i}.b"], [z], kernel_shape=list(W.shape[2:]),
                              strides=_per_axis(config["stride"], ndim),
                              pads=_per_axis(config["padding"], ndim) * 2,  # begins, then ends
                              dilations=_per_axis(config["dilation"], ndim))]
    if config["activation"] != "identity":
        nodes += _activation(helper, config["activation"], config["alpha"], z, out)
    return nodes, initializers


def _pool(op):
    def export(onnx, layer, i, x, out, weights):
        config, ndim = layer.config(), len(layer.input_shape) - 1
        extra = {"count_include_pad": 1} if op == "AveragePool" else {}  # padding counts as zeros, as xpnet's
        return [onnx.helper.make_node(op, [x], [out], kernel_shape=_per_axis(config["kernel_size"], ndim),
                                      strides=_per_axis(config["stride"], ndim),
                                      pads=_per_axis(config["padding"], ndim) * 2, **extra)], []

    return export


def _global_avg_pool(onnx, layer, i, x, out, weights):
    helper = onnx.helper
    return [helper.make_node("GlobalAveragePool", [x], [f"{i}.pooled"]),  # (N, C, 1, ...)
            helper.make_node("Flatten", [f"{i}.pooled"], [out], axis=1)], []


def _batch_norm(onnx, layer, i, x, out, weights):
    arrays = {"gamma": layer.params["gamma"], "beta": layer.params["beta"],
              "running_mean": layer.buffers["running_mean"], "running_var": layer.buffers["running_var"]}
    initializers = [onnx.numpy_helper.from_array(weights(a), f"{i}.{name}") for name, a in arrays.items()]
    return [onnx.helper.make_node("BatchNormalization", [x, *(f"{i}.{name}" for name in arrays)], [out],
                                  epsilon=layer.config()["eps"])], initializers


def _layer_norm(onnx, layer, i, x, out, weights):
    initializers = [onnx.numpy_helper.from_array(weights(layer.params[name]), f"{i}.{name}")
                    for name in ("gamma", "beta")]
    return [onnx.helper.make_node("LayerNormalization", [x, f"{i}.gamma", f"{i}.beta"], [out], axis=1,
                                  epsilon=layer.config()["eps"])], initializers


# layer type → function (onnx, layer, index, input name, output name, to_host) giving (nodes, initializers)
TO_ONNX = {
    "Dense": _dense,
    "Dropout": lambda onnx, layer, i, x, out, w: ([onnx.helper.make_node("Identity", [x], [out])], []),
    "Flatten": lambda onnx, layer, i, x, out, w: ([onnx.helper.make_node("Flatten", [x], [out], axis=1)], []),
    "Reshape": _reshape,
    "Conv1D": _conv,
    "Conv2D": _conv,
    "MaxPool1D": _pool("MaxPool"),
    "MaxPool2D": _pool("MaxPool"),
    "AvgPool1D": _pool("AveragePool"),
    "AvgPool2D": _pool("AveragePool"),
    "GlobalAvgPool": _global_avg_pool,
    "BatchNorm": _batch_norm,
    "LayerNorm": _layer_norm,
}


def export_onnx(net, path):
    """Write ``net`` as an ONNX model (inference mode, input "x", output "y", batch axis symbolic)."""
    onnx = require("onnx")
    import onnx.numpy_helper  # noqa: F401,F811  (a submodule the import above does not load)

    dtype = np.dtype(net.dtype)
    elem = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    weights = lambda a: np.asarray(net.backend.to_numpy(a), dtype=dtype)  # noqa: E731
    nodes, initializers, x = [], [], "x"
    for i, layer in enumerate(net.layers):
        kind = type(layer).__name__
        if kind not in TO_ONNX:
            raise ConfigError(f"layer {i} ({kind}) has no ONNX export; export_onnx maps {', '.join(sorted(TO_ONNX))}")
        out = "y" if i == len(net.layers) - 1 else f"{i}.out"
        made, inits = TO_ONNX[kind](onnx, layer, i, x, out, weights)
        nodes += made
        initializers += inits
        x = out
    graph = onnx.helper.make_graph(
        nodes, "xpnet", [onnx.helper.make_tensor_value_info("x", elem, ["batch", *net.input_shape])],
        [onnx.helper.make_tensor_value_info("y", elem, ["batch", *net.output_shape])], initializers)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="xpnet")
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
