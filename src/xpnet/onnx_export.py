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


# layer type → function (onnx, layer, index, input name, output name, to_host) giving (nodes, initializers)
TO_ONNX = {
    "Dense": _dense,
    "Dropout": lambda onnx, layer, i, x, out, w: ([onnx.helper.make_node("Identity", [x], [out])], []),
    "Flatten": lambda onnx, layer, i, x, out, w: ([onnx.helper.make_node("Flatten", [x], [out], axis=1)], []),
    "Reshape": _reshape,
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
