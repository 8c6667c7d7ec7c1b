"""ONNX export runs in onnxruntime and gives net.predict's outputs (float32, 1e-5) for every layer type."""
import numpy as np
import pytest

import xpnet as xn
from xpnet import onnx_export

pytest.importorskip("onnx", reason="the export needs onnx (pip install -e '.[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="running the export needs onnxruntime (pip install -e '.[onnx]')")

ACTIVATIONS = ["identity", "relu", "tanh", "sigmoid", "leaky_relu", "gelu", "gelu_tanh"]


def run(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": X})[0]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_layer_type_and_activation_matches_predict(tmp_path, activation):
    net = xn.Sequential([xn.layers.Flatten(), xn.layers.Dense(6, activation=activation, alpha=0.2),
                         xn.layers.Dropout(0.3), xn.layers.Reshape((3, 2)), xn.layers.Flatten(),
                         xn.layers.Dense(2)], input_shape=(2, 3), seed=1)
    assert set(onnx_export.TO_ONNX) >= {type(layer).__name__ for layer in net.layers}
    net.export_onnx(tmp_path / "m.onnx")
    for n in (1, 7):  # the batch axis is symbolic
        X = np.random.default_rng(n).standard_normal((n, 2, 3)).astype(np.float32)
        got = run(tmp_path / "m.onnx", X)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, net.predict(X), rtol=1e-5, atol=1e-5)


def test_every_registered_xpnet_layer_has_an_export():
    own = {name for name, cls in xn.layers.REGISTRY.items() if cls.__module__.startswith("xpnet.")}
    assert own <= set(onnx_export.TO_ONNX), f"no ONNX export for {sorted(own - set(onnx_export.TO_ONNX))}"


def test_an_unsupported_layer_is_named(tmp_path):
    @xn.layers.register
    class Halve(xn.layers.Layer):
        def forward(self, x, training=False):
            return x / 2, lambda grad_y, need_grad_x=True: grad_y / 2

    with pytest.raises(xn.errors.ConfigError, match=r"layer 1 \(Halve\) has no ONNX export; export_onnx maps .*Dense"):
        xn.Sequential([xn.layers.Dense(2, 2), Halve()]).export_onnx(tmp_path / "h.onnx")
    assert list(tmp_path.iterdir()) == []
