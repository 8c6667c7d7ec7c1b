"""Every bad input tried, as the code a user would write, and what it must give.

tests/test_errors.py runs each row; docs/errors.md is this list rendered with
the messages the rows really produce. After changing a row or a message,
rewrite the page with:

    PYTHONPATH=src python tests/error_cases.py > docs/errors.md
"""
import importlib.util
import os
import re
import tempfile
import warnings
from collections import namedtuple
from pathlib import Path

import numpy as np

import xpnet as xn

# Run before every row, in a fresh namespace; `tmp` is an empty scratch folder.
PRELUDE = """\
import numpy as np, xpnet as xn
from xpnet import checkpoint
X, y = np.zeros((4, 2)), np.array([0, 1, 1, 0])
net = xn.MLP([2, 3, 2], seed=0)
good = tmp / "good.npz"; xn.MLP([2, 64, 1], seed=0).save(good)"""

Case = namedtuple("Case", "group name code error builtin fragment needs exact")


def C(group, name, code, error, builtin, fragment, needs=(), exact=True):
    """A row; ``exact=False`` when the message quotes text from Python or another library, which may change."""
    return Case(group, name, code, error, builtin, fragment, needs, exact)


E = xn.errors

CASES = [
    # ---- data -------------------------------------------------------------------------------
    C("Data", "X and y of different lengths", 'net.fit(X, y[:3], loss="softmax_ce")', E.ShapeError, ValueError,
      "same number of samples, got 4 and 3"),
    C("Data", "wrong feature count (predict)", "net.predict(np.zeros((4, 3)))", E.ShapeError, ValueError,
      "3 features per sample, the network expects 2"),
    C("Data", "wrong feature count (fit)", 'net.fit(np.zeros((4, 5)), y, loss="softmax_ce")', E.ShapeError,
      ValueError, "5 features per sample, the network expects 2"),
    C("Data", "1-D X", "net.predict(np.zeros(2))", E.ShapeError, ValueError, "must be 2-D (samples, features), got shape (2,)"),
    C("Data", "3-D X", "net.predict(np.zeros((1, 2, 2)))", E.ShapeError, ValueError, "got shape (1, 2, 2)"),
    C("Data", "3-D y", "net.fit(X, np.zeros((4, 2, 1)))", E.ShapeError, ValueError, "got shape (4, 2, 1)"),
    C("Data", "targets of the wrong width", "net.fit(X, np.zeros((4, 3)))", E.ShapeError, ValueError,
      "shape (n, 2) for a network with 2 output(s), got (4, 3)"),
    C("Data", "object array", "net.predict(np.array([[1.0, None]], dtype=object))", E.DataTypeError, TypeError,
      "got dtype object"),
    C("Data", "string array", 'net.predict(np.array([["1", "2"]]))', E.DataTypeError, TypeError, "got dtype <U1"),
    C("Data", "complex array", "net.predict(np.zeros((1, 2), dtype=complex))", E.DataTypeError, TypeError,
      "got dtype complex128"),
    C("Data", "ragged rows", "net.predict([[1.0, 2.0], [1.0]])", E.DataTypeError, TypeError, "rectangular", exact=False),
    C("Data", "string labels", 'net.fit(X, np.array(["a", "b", "b", "a"]), loss="softmax_ce")', E.DataTypeError,
      TypeError, "y must hold real numbers"),
    C("Data", "NaN in X", 'net.fit(np.array([[0, np.nan]] * 4), y, loss="softmax_ce")', E.DataError, ValueError,
      "X must be finite, got nan at index (0, 1)"),
    C("Data", "inf in X", "net.predict(np.array([[np.inf, 0.0]]))", E.DataError, ValueError,
      "X must be finite, got inf at index (0, 0)"),
    C("Data", "NaN in y", "xn.MLP([2, 1]).fit(X, np.array([0, np.nan, 1, 0]))", E.DataError, ValueError,
      "y must be finite, got nan at index (1,)"),
    C("Data", "inf in y", "xn.MLP([2, 1]).fit(X, np.array([0, 1, np.inf, 0]))", E.DataError, ValueError,
      "y must be finite, got inf"),
    C("Data", "empty data", "net.fit(np.zeros((0, 2)), np.zeros(0))", E.DataError, ValueError, "0 samples"),
    C("Data", "label ≥ k for softmax_ce", 'net.fit(X, np.array([0, 1, 2, 0]), loss="softmax_ce")', E.DataError,
      ValueError, "must lie in [0, 2) for 2 outputs, got values in [0, 2]"),
    C("Data", "negative label for softmax_ce", 'net.fit(X, np.array([0, -1, 1, 0]), loss="softmax_ce")',
      E.DataError, ValueError, "got values in [-1, 1]"),
    C("Data", "non-integer label for softmax_ce", 'net.fit(X, np.array([0, 0.5, 1, 0]), loss="softmax_ce")',
      E.DataError, ValueError, "whole numbers, got e.g. 0.5"),
    C("Data", "BCE target outside [0, 1]", 'xn.MLP([2, 1]).fit(X, np.array([0, 2, 1, 0]), loss="bce")',
      E.DataError, ValueError, "must lie in [0, 1], got values in [0, 2]"),
    C("Data", "BCE-with-logits target outside [0, 1]",
      'xn.MLP([2, 1]).fit(X, np.array([0, 1, -1, 0]), loss="bce_logits")', E.DataError, ValueError,
      "got values in [-1, 1]"),
    C("Data", "softmax_ce on one output", 'xn.MLP([2, 1]).fit(X, y, loss="softmax_ce")', E.ConfigError, ValueError,
      "at least 2 outputs"),
    C("Data", "validation_data that is not a pair", 'net.fit(X, y, loss="softmax_ce", validation_data=X)',
      E.ConfigError, ValueError, "pair (X_val, y_val), got ndarray"),
    C("Data", "validation_data with the wrong features",
      'net.fit(X, y, loss="softmax_ce", validation_data=(np.zeros((2, 3)), y[:2]))', E.ShapeError, ValueError,
      "3 features per sample, the network expects 2"),
    C("Data", "validation_split outside [0, 1)", 'net.fit(X, y, loss="softmax_ce", validation_split=1.0)',
      E.ConfigError, ValueError, "validation_split must be in [0, 1), got 1.0"),
    # ---- training settings -------------------------------------------------------------------
    C("Training settings", "batch_size 0", 'net.fit(X, y, loss="softmax_ce", batch_size=0)', E.ConfigError,
      ValueError, "batch_size must be an integer ≥ 1, got 0"),
    C("Training settings", "negative batch_size", 'net.fit(X, y, loss="softmax_ce", batch_size=-8)', E.ConfigError,
      ValueError, "got -8"),
    C("Training settings", "fractional batch_size", 'net.fit(X, y, loss="softmax_ce", batch_size=2.5)',
      E.ConfigError, ValueError, "got 2.5"),
    C("Training settings", "batch_size larger than the data (clipped, training goes on)",
      'net.fit(X, y, loss="softmax_ce", batch_size=64, progress=False)', UserWarning, Warning,
      "batch_size=64 is larger than the 4 training samples; using 4"),
    C("Training settings", "negative epochs", 'net.fit(X, y, loss="softmax_ce", epochs=-1)', E.ConfigError,
      ValueError, "epochs must be an integer ≥ 0, got -1"),
    C("Training settings", "fractional epochs", 'net.fit(X, y, loss="softmax_ce", epochs=1.5)', E.ConfigError,
      ValueError, "got 1.5"),
    C("Training settings", "lr = 0", "xn.optim.SGD(lr=0)", E.ConfigError, ValueError,
      "lr must be a finite number > 0, got 0"),
    C("Training settings", "negative lr", "xn.optim.Adam(lr=-0.1)", E.ConfigError, ValueError, "got -0.1"),
    C("Training settings", "NaN lr", 'xn.optim.RMSProp(lr=float("nan"))', E.ConfigError, ValueError, "got nan"),
    C("Training settings", "lr given as text", 'xn.optim.SGD(lr="0.1")', E.ConfigError, ValueError, "got '0.1'"),
    C("Training settings", "momentum ≥ 1", "xn.optim.SGD(lr=0.1, momentum=1.5)", E.ConfigError, ValueError,
      "momentum must be a number in [0.0, 1.0), got 1.5"),
    C("Training settings", "Nesterov without momentum", "xn.optim.SGD(lr=0.1, nesterov=True)", E.ConfigError,
      ValueError, "needs momentum > 0"),
    C("Training settings", "max_norm ≤ 0", 'net.fit(X, y, loss="softmax_ce", max_norm=0)', E.ConfigError,
      ValueError, "max_norm must be a positive number or None, got 0"),
    C("Training settings", "clip_norm ≤ 0", 'net.fit(X, y, loss="softmax_ce", clip_norm=-1.0)', E.ConfigError,
      ValueError, "clip_norm must be a positive number or None, got -1.0"),
    C("Training settings", "NaN clip_norm", 'net.compile("mse", "sgd", clip_norm=float("nan"))', E.ConfigError,
      ValueError, "got nan"),
    C("Training settings", "early-stopping patience 0", 'net.fit(X, y, loss="softmax_ce", early_stopping=0)',
      E.ConfigError, ValueError, "patience must be a positive integer, got 0"),
    C("Training settings", "early stopping on val_loss without validation data",
      'net.fit(X, y, loss="softmax_ce", early_stopping=xn.EarlyStopping(monitor="val_loss"))', E.ConfigError,
      ValueError, "needs validation_data or validation_split"),
    C("Training settings", "schedule with a negative rate", "xn.optim.SGD(lr=xn.schedules.Step(step_size=10, lr=-0.1))",
      E.ConfigError, ValueError, "lr must be a finite number > 0, got -0.1"),
    C("Training settings", "schedule with a non-finite rate", 'xn.schedules.Cosine(total=100, min_lr=float("inf"))',
      E.ConfigError, ValueError, "min_lr must be a finite number ≥ 0, got inf"),
    C("Training settings", "callable schedule returning a negative rate",
      "xn.optim.Adam(lr=lambda step: -0.01)", E.ConfigError, ValueError,
      "must return a finite number ≥ 0, got -0.01 at step 0"),
    C("Training settings", "warmup longer than the schedule", "xn.schedules.Cosine(total=100, warmup=200)",
      E.ConfigError, ValueError, "warmup must be at most total=100 steps, got 200"),
    C("Training settings", "unknown monitor name", 'xn.schedules.ReduceOnPlateau(monitor="val_los")', E.ConfigError,
      ValueError, "monitor must be one of 'loss', 'val_loss', 'accuracy', 'val_accuracy', got 'val_los'"),
    C("Training settings", "plateau on val_loss without validation data",
      'net.fit(X, y, loss="softmax_ce", optimizer=xn.optim.SGD(lr=xn.schedules.ReduceOnPlateau()))',
      E.ConfigError, ValueError, "ReduceOnPlateau on val_loss needs validation_data or validation_split"),
    C("Training settings", "callback with none of the methods", 'net.fit(X, y, loss="softmax_ce", callbacks=[print])',
      E.ConfigError, ValueError, "callbacks[0] (builtin_function_or_method) has none of the methods"),
    C("Training settings", "callbacks not in a list",
      'net.fit(X, y, loss="softmax_ce", callbacks=xn.callbacks.CSVLogger(tmp / "log.csv"))', E.ConfigError,
      ValueError, "callbacks must be a list of callback objects, got CSVLogger"),
    C("Training settings", "negative seed", 'net.fit(X, y, loss="softmax_ce", seed=-1)', E.ConfigError, ValueError,
      "seed must be an integer ≥ 0, got -1"),
    C("Training settings", "seed given as text", 'xn.MLP([2, 1], seed="42")', E.ConfigError, ValueError,
      "got '42'"),
    C("Training settings", "checkpoint every 0 epochs",
      'net.fit(X, y, loss="softmax_ce", checkpoint=tmp / "run", every=0)', E.ConfigError, ValueError,
      "every must be an integer ≥ 1, got 0"),
    C("Training settings", "checkpoint folder that is not a path", 'net.fit(X, y, loss="softmax_ce", checkpoint=5)',
      E.ConfigError, ValueError, "folder path or None, got 5"),
    C("Training settings", "predict batch_size 0", "net.predict(X, batch_size=0)", E.ConfigError, ValueError,
      "got 0"),
    C("Training settings", "negative number of repeated steps", 'net.compile("mse", "sgd").repeat(X, np.eye(2)[y], -1)',
      E.ConfigError, ValueError, "n ≥ 0, got -1"),
    # ---- names and layers -------------------------------------------------------------------------
    C("Names and layers", "unknown activation", 'xn.MLP([2, 2], activation="rleu")', E.ConfigError, ValueError,
      "Did you mean 'relu'?"),
    C("Names and layers", "unknown loss", 'net.fit(X, y, loss="softmax")', E.ConfigError, ValueError,
      "Did you mean 'softmax_ce'?"),
    C("Names and layers", "unknown optimiser", 'net.fit(X, y, optimizer="adamw")', E.ConfigError, ValueError,
      "Did you mean 'adam'?"),
    C("Names and layers", "unknown initialiser", 'xn.MLP([2, 2], init="he_normal")', E.ConfigError, ValueError,
      "Did you mean 'he_uniform'?"),
    C("Names and layers", "unknown backend", 'xn.use("numbaa")', E.ConfigError, ValueError, "Did you mean 'numba'?"),
    C("Names and layers", "unknown gradient method", 'net.compile("mse", "sgd", gradient="finite_differences")',
      E.ConfigError, ValueError, "Did you mean 'finite_difference'?"),
    C("Names and layers", "unsupported dtype", 'xn.MLP([2, 2], dtype="float16")', E.ConfigError, ValueError,
      "dtype must be one of ('float32', 'float64'), got 'float16'"),
    C("Names and layers", "Dropout p = 1", "xn.layers.Dropout(1.0)", E.ConfigError, ValueError,
      "Dropout p must be a number in [0, 1), got 1.0"),
    C("Names and layers", "Dropout p < 0", "xn.MLP([2, 8, 1], dropout=-0.1)", E.ConfigError, ValueError, "got -0.1"),
    C("Names and layers", "Dropout p given as text", 'xn.layers.Dropout("0.5")', E.ConfigError, ValueError,
      "got '0.5'"),
    C("Names and layers", "fewer than two layer sizes", "xn.MLP([2])", E.ConfigError, ValueError,
      "at least 2 layer widths"),
    C("Names and layers", "a layer of width 0", "xn.layers.Dense(2, 0)", E.ConfigError, ValueError,
      "fan_out must be a positive integer, got 0"),
    C("Names and layers", "layers that do not chain", "xn.Sequential([xn.layers.Dense(2, 3), xn.layers.Dense(4, 1)])",
      E.ShapeError, ValueError, "layer 1 (Dense) cannot take input of shape (3,): Dense expects 4 input features (fan_in), got input shape (3,)"),
    C("Names and layers", "a layer that cannot take its input shape",
      "xn.Sequential([xn.layers.Flatten(), xn.layers.Dense(65, 3)], input_shape=(1, 8, 8))", E.ShapeError, ValueError,
      "layer 1 (Dense) cannot take input of shape (64,): Dense expects 65 input features (fan_in), got input shape "
      "(64,)"),
    C("Names and layers", "a network whose input shape is unknown", "xn.Sequential([xn.layers.Dense(3)])",
      E.ConfigError, ValueError, "the network's input shape is unknown: pass Sequential(..., input_shape=(...))",
      exact=False),
    C("Names and layers", "saving a layer class that is not registered",
      'xn.Sequential([type("Mine", (xn.layers.Dropout,), {})(0.1), xn.layers.Dense(2)], input_shape=(3,))'
      '.save(tmp / "u.npz")', E.CheckpointError, ValueError, "its class Mine is not registered. Put "
      "@xn.layers.register above the class definition", exact=False),
    C("Names and layers", "loading a layer type that is not registered",
      'checkpoint.save(tmp / "k.npz", {"class": "Sequential", "layers": [{"type": "Mine"}], "input_shape": [3], '
      '"seed": 0, "dtype": "float32"}, {}); xn.load(tmp / "k.npz")', E.CheckpointError, ValueError,
      "unknown layer type 'Mine'", exact=False),
    C("Names and layers", "set_weights with too few arrays", "net.set_weights(net.get_weights()[:3])", E.ShapeError,
      ValueError, "expected 4 arrays (0.W, 0.b, 1.W, 1.b), got 3"),
    C("Names and layers", "set_weights with a wrong shape", "net.set_weights([w.T for w in net.get_weights()])",
      E.ShapeError, ValueError, "0.W must have shape (2, 3), got (3, 2)"),
    C("Names and layers", "set_weights with NaN", "net.set_weights([w * np.nan for w in net.get_weights()])",
      E.DataError, ValueError, "0.W must be finite"),
    # ---- convolution, pooling and normalisation layers ---------------------------------------------
    C("Conv layers", "wrong rank for a Conv2D", "xn.Sequential([xn.layers.Conv2D(4, 3)], input_shape=(1, 8))",
      E.ShapeError, ValueError, "layer 0 (Conv2D) cannot take input of shape (1, 8): Conv2D takes samples of shape "
      "(channels, height, width), got (1, 8) (2-D; 3-D expected)"),
    C("Conv layers", "a kernel larger than the image", "xn.Sequential([xn.layers.Conv2D(4, 5)], input_shape=(1, 3, 3))",
      E.ShapeError, ValueError, "layer 0 (Conv2D) cannot take input of shape (1, 3, 3): Conv2D: a window spanning "
      "(5, 5) does not fit in the input (3, 3) with padding (0, 0)"),
    C("Conv layers", "a pooling window larger than the signal",
      "xn.Sequential([xn.layers.MaxPool1D(4)], input_shape=(2, 3))", E.ShapeError, ValueError,
      "MaxPool1D: a window spanning (4,) does not fit in the input (3,) with padding (0,)"),
    C("Conv layers", "channel mismatch", "xn.Sequential([xn.layers.Conv1D(4, 3, in_channels=3)], input_shape=(2, 10))",
      E.ShapeError, ValueError, "layer 0 (Conv1D) cannot take input of shape (2, 10): Conv1D expects 3 input channels "
      "(in_channels), got input shape (2, 10)"),
    C("Conv layers", "padding as large as the kernel", "xn.layers.Conv2D(4, 3, padding=3)", E.ConfigError, ValueError,
      "Conv2D padding 3 must be smaller than the kernel's span (3, 3) (kernel_size 3, dilation 1)"),
    C("Conv layers", "pooling padding over half the window", "xn.layers.MaxPool2D(2, padding=2)", E.ConfigError,
      ValueError, "MaxPool2D padding 2 must be at most half of kernel_size 2 (as in PyTorch)"),
    C("Conv layers", "a non-integer kernel size", "xn.layers.Conv2D(4, 2.5)", E.ConfigError, ValueError,
      "Conv2D kernel_size must be a positive integer or a pair of them, got 2.5"),
    C("Conv layers", "a pair for a 1-D layer", "xn.layers.Conv1D(4, 3, stride=(1, 2))", E.ConfigError, ValueError,
      "Conv1D stride must be a positive integer, got (1, 2)"),
    C("Conv layers", "BatchNorm on 4-D samples", "xn.Sequential([xn.layers.BatchNorm()], input_shape=(1, 2, 2, 2))",
      E.ShapeError, ValueError, "BatchNorm takes samples of shape (C,), (C, L) or (C, H, W), got (1, 2, 2, 2)"),
    C("Conv layers", "BatchNorm training on one value per channel",
      "xn.Sequential([xn.layers.BatchNorm()], input_shape=(3,)).fit(np.ones((1, 3)), np.ones((1, 3)))", E.ShapeError,
      ValueError, "BatchNorm needs more than 1 value per channel in training, got a batch of shape (1, 3)"),
    # ---- backends and devices --------------------------------------------------------------------
    C("Backends and devices", "a backend that is not installed", 'xn.use("cupy")', E.BackendUnavailableError,
      ImportError, "To fix: pip install -e '.[cuda13]'", needs=("no cupy",), exact=False),
    C("Backends and devices", "an option the backend does not take", 'xn.get_backend("numpy", device="gpu")',
      E.ConfigError, ValueError, "bad options for backend 'numpy'", exact=False),
    C("Backends and devices", "a bfloat16 torch tensor (shared through DLPack)",
      "import torch; net.predict(torch.zeros(3, 2, dtype=torch.bfloat16))", E.DataTypeError, TypeError,
      "cannot share torch.Tensor (torch.bfloat16) through DLPack (Unsupported dtype in DLTensor); xpnet computes in "
      "float32 or float64 (ints and bools are converted)", needs=("torch",), exact=False),
    C("Backends and devices", "an array on another device",
      'on1 = xn.MLP([2, 1], backend=xn.get_backend("array_api_strict", device="device1")); '
      'on1.predict(xn.get_backend("array_api_strict", device="device2").asarray(np.zeros((3, 2))))',
      E.DeviceError, TypeError, "the network on array_api_strict.Device('device1')", needs=("array_api_strict",)),
    C("Backends and devices", "a torch module that is not Sequential",
      "import torch; xn.from_torch(torch.nn.Linear(2, 3))", E.ConfigError, ValueError,
      "from_torch takes a torch.nn.Sequential, got torch.nn.modules.linear.Linear; wrap it: "
      "torch.nn.Sequential(module)", needs=("torch",)),
    C("Backends and devices", "a torch module xpnet has no layer for",
      "import torch; xn.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Softplus()))", E.ConfigError,
      ValueError, "module 1 (Softplus) has no xpnet layer", needs=("torch",)),
    C("Backends and devices", "a torch convolution xpnet cannot mirror",
      "import torch; xn.from_torch(torch.nn.Sequential(torch.nn.Conv2d(2, 2, 3, groups=2)), input_shape=(2, 8, 8))",
      E.ConfigError, ValueError, "Conv2d(groups=2) has no xpnet layer; xpnet's Conv2d has groups=1",
      needs=("torch",)),
    C("Backends and devices", "a torch LayerNorm over part of each sample",
      "import torch; xn.from_torch(torch.nn.Sequential(torch.nn.LayerNorm(8)), input_shape=(2, 8))",
      E.ConfigError, ValueError, "layer 0: LayerNorm(8,) normalises part of each sample's shape (2, 8); xpnet's "
      "LayerNorm normalises all of it", needs=("torch",)),
    C("Backends and devices", "a float16 torch module",
      "import torch; xn.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 3)).half())", E.DataTypeError, TypeError,
      "the module's parameters are torch.float16; xpnet supports one of torch.float32, torch.float64 (call "
      "module.float() or module.double() first)", needs=("torch",)),
    # ---- the playground (what the page sends, checked by xpnet.playground.controls) ---------------------
    C("Playground", "a hidden layer wider than 256 units",
      'from xpnet.playground import controls; controls.check("hidden", [16, 300])', E.ConfigError, ValueError,
      "hidden layers have 1 to 256 units each, got 300"),
    C("Playground", "more than 8 hidden layers",
      'from xpnet.playground import controls; controls.check("hidden", [4] * 9)', E.ConfigError, ValueError,
      "hidden must be a list of at most 8 layer widths, got [4, 4, 4, 4, 4, 4, 4, 4, 4]"),
    C("Playground", "a learning rate out of range", 'from xpnet.playground import controls; controls.check("lr", 0)',
      E.ConfigError, ValueError, "lr must be a number from 1e-05 to 10, got 0"),
    C("Playground", "a point outside the plane", "from xpnet.playground import controls; controls.point(2.0, 0.0, 1)",
      E.ConfigError, ValueError, "a point's x must be a number from -1.6 to 1.6, got 2.0"),
    # ---- numerics ---------------------------------------------------------------------------------
    C("Numerics", "a loss that overflows to NaN in a mini-batch",
      'xn.MLP([2, 8, 1], activation="relu", seed=0).fit(np.full((8, 2), 1e3), np.full(8, 1e3), '
      'optimizer=xn.optim.SGD(1.0), epochs=30, batch_size=4, progress=False)', E.DivergenceError, FloatingPointError,
      "the training loss became nan in epoch 2, batch 2 of 2; the net and optimiser keep the state they had after "
      "epoch 1"),
    C("Numerics", "a learning rate so large the weights overflow",
      'xn.MLP([2, 8, 1], activation="relu", seed=0).fit(np.full((8, 2), 1e3), np.full(8, 1e3), '
      'optimizer=xn.optim.SGD(10.0), epochs=30, progress=False)', E.DivergenceError, FloatingPointError,
      "last update of epoch 3 (batch 1 of 1); the net and optimiser keep the state they had after epoch 2"),
    # ---- checkpoints ------------------------------------------------------------------------------
    C("Checkpoints", "a suffix that matches no format", 'net.save(tmp / "model.pt")', E.ConfigError, ValueError,
      "its suffix matches no checkpoint format; xpnet writes .npz and .safetensors files"),
    C("Checkpoints", "a safetensors file without an xpnet header",
      'import safetensors.numpy; safetensors.numpy.save_file({"w": np.zeros(2)}, tmp / "hf.safetensors"); '
      'xn.load(tmp / "hf.safetensors")', E.CheckpointError, ValueError,
      "is a safetensors file but not an xpnet checkpoint (its __metadata__ has no __xpnet_header__)",
      needs=("safetensors",)),
    C("Checkpoints", "missing file", 'xn.load(tmp / "nothing.npz")', E.CheckpointError, ValueError,
      "cannot read checkpoint tmp/nothing.npz: No such file or directory"),
    C("Checkpoints", "a folder", "xn.load(tmp)", E.CheckpointError, ValueError, "Is a directory"),
    C("Checkpoints", "empty file", '(tmp / "e.npz").write_bytes(b""); xn.load(tmp / "e.npz")', E.CheckpointError,
      ValueError, "tmp/e.npz is empty"),
    C("Checkpoints", "not a zip file", '(tmp / "g.npz").write_bytes(b"hello" * 100); xn.load(tmp / "g.npz")',
      E.CheckpointError, ValueError, "not a readable xpnet checkpoint (corrupt or truncated?): BadZipFile"),
    C("Checkpoints", "truncated file", '(tmp / "t.npz").write_bytes(good.read_bytes()[:900]); xn.load(tmp / "t.npz")',
      E.CheckpointError, ValueError, "corrupt or truncated?"),
    C("Checkpoints", "a flipped bit in the weights",
      'data = bytearray(good.read_bytes()); data[data.index(b"0.W.npy") + 300] ^= 1; '
      '(tmp / "f.npz").write_bytes(data); xn.load(tmp / "f.npz")', E.CheckpointError, ValueError, "Bad CRC-32"),
    C("Checkpoints", "a .npz from elsewhere", 'np.savez(tmp / "o.npz", a=np.zeros(3)); xn.load(tmp / "o.npz")',
      E.CheckpointError, ValueError, "a .npz but not an xpnet checkpoint (no __xpnet_header__ entry)"),
    C("Checkpoints", "a pickled object inside",
      'np.savez(tmp / "p.npz", __xpnet_header__=np.array([{}], dtype=object)); xn.load(tmp / "p.npz")',
      E.CheckpointError, ValueError, "only a pickle can load"),
    C("Checkpoints", "a header that is not JSON",
      'np.savez(tmp / "j.npz", __xpnet_header__=np.frombuffer(b"{oops", np.uint8)); xn.load(tmp / "j.npz")',
      E.CheckpointError, ValueError, "JSONDecodeError", exact=False),
    C("Checkpoints", "a header of another format",
      'np.savez(tmp / "h.npz", __xpnet_header__=np.frombuffer(b\'{"format": "keras"}\', np.uint8)); '
      'xn.load(tmp / "h.npz")', E.CheckpointError, ValueError,
      "header format is 'keras', expected 'xpnet-checkpoint'"),
    C("Checkpoints", "a header that describes no network",
      'checkpoint.save(tmp / "c.npz", {"class": "MLP", "sizes": [2, -3], "dtype": "float32"}, {}); '
      'xn.load(tmp / "c.npz")', E.CheckpointError, ValueError, "does not describe a network xpnet can build"),
    C("Checkpoints", "weights of the wrong shape",
      'checkpoint.save(tmp / "s.npz", net.config(), dict(zip(net.param_names(), [w.T for w in net.get_weights()]))); '
      'xn.load(tmp / "s.npz")', E.CheckpointError, ValueError, "array 0.W is (3, 2) float32, expected (2, 3) float32"),
    C("Checkpoints", "weights of the wrong dtype",
      'checkpoint.save(tmp / "d.npz", net.config(), {k: w.astype(np.float64) for k, w in '
      'zip(net.param_names(), net.get_weights())}); xn.load(tmp / "d.npz")', E.CheckpointError, ValueError,
      "array 0.W is (2, 3) float64, expected (2, 3) float32"),
    C("Checkpoints", "a missing weight array",
      'checkpoint.save(tmp / "m.npz", net.config(), dict(zip(net.param_names()[:3], net.get_weights()))); '
      'xn.load(tmp / "m.npz")', E.CheckpointError, ValueError, "missing array 1.b; expected (2,) float32"),
    C("Checkpoints", "NaN weights",
      'w = net.get_weights(); w[0][0, 0] = np.nan; '
      'checkpoint.save(tmp / "n.npz", net.config(), dict(zip(net.param_names(), w))); xn.load(tmp / "n.npz")',
      E.CheckpointError, ValueError, "0.W must be finite, got nan at index (0, 0)"),
    C("Checkpoints", "resume from a missing file", 'net.fit(X, y, loss="softmax_ce", resume=tmp / "no.npz")',
      E.CheckpointError, ValueError, "cannot read checkpoint tmp/no.npz"),
    C("Checkpoints", "resume from a folder with no checkpoints", 'net.fit(X, y, loss="softmax_ce", resume=tmp)',
      E.CheckpointError, ValueError, "no checkpoint in tmp"),
    C("Checkpoints", "resume from a saved network (no training state)",
      'net.save(tmp / "w.npz"); net.fit(X, y, loss="softmax_ce", resume=tmp / "w.npz")', E.CheckpointError,
      ValueError, "holds a network but no training state"),
    C("Checkpoints", "resume with another network",
      'net.fit(X, y, loss="softmax_ce", checkpoint=tmp / "run"); '
      'xn.MLP([2, 5, 2]).fit(X, y, loss="softmax_ce", resume=tmp / "run")', E.CheckpointError, ValueError,
      "was written for another network: MLP[Dense(2, 3, tanh, 0.01), Dense(3, 2, identity, 0.01)] float32"),
    C("Checkpoints", "resume with other settings",
      'net.fit(X, y, loss="softmax_ce", checkpoint=tmp / "run"); '
      'net.fit(X, y, loss="softmax_ce", batch_size=2, resume=tmp / "run")', E.ConfigError, ValueError,
      "batch_size=4 there, 2 here"),
]


def skip_reason(case):
    """Why ``case`` cannot run here, or None."""
    for need in case.needs:
        if need == "no cupy" and "cupy" in xn.backends.available():
            return "cupy is installed here, so no backend is missing"
        if need == "safetensors":  # a library, not a backend
            if importlib.util.find_spec("safetensors") is None:
                return "needs safetensors: pip install -e '.[safetensors]'"
            continue
        if need != "no cupy" and xn.backends.unavailable_reason(need) is not None:
            return f"needs the {need} backend: {xn.backends.unavailable_reason(need)}"
    return None


def run(case, tmp):
    """The exception (or warning) ``case`` raises, and its message with the scratch folder written as ``tmp``."""
    namespace = {"tmp": Path(tmp)}
    exec(PRELUDE, namespace)
    got = None
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        try:
            exec(case.code, namespace)
        except Exception as e:  # noqa: BLE001  (what came out is what we check)
            got = e
    if got is None:
        got = next((w.message for w in caught if isinstance(w.message, case.error)), None)
    message = "" if got is None else str(got).replace(str(Path(tmp)), "tmp")
    return got, message


def render():
    """docs/errors.md: every case, grouped, with the message it gives on this machine."""
    lines = ["# Errors: every bad input tried, and what you get", "",
             "Every error xpnet raises on purpose is an `xn.errors.XpnetError` and also the built-in exception",
             "a Python user would catch (`ValueError`, `TypeError`, `ImportError`, `FloatingPointError`). Each row",
             "below is run, on the numpy backend, by `tests/test_errors.py`, which checks the class and that the",
             "message is the one shown here (rows marked * quote Python or another library, so only their xpnet",
             "part is checked); `tests/error_cases.py` holds the list and rewrites this page. Each row runs after:",
             "",
             "```python", PRELUDE, "```", ""]
    group = None
    with tempfile.TemporaryDirectory() as tmp, xn.use("numpy"):  # as the tests run them
        for case in CASES:
            if case.group != group:
                group = case.group
                lines += ["", f"## {group}", "", "| bad input | code | error | also a | message |",
                          "|---|---|---|---|---|"]
            reason = skip_reason(case)
            if reason:
                raise SystemExit(f"cannot render {case.name!r}: {reason}")
            workdir = Path(tmp) / f"case{CASES.index(case)}"
            workdir.mkdir()
            got, message = run(case, workdir)
            if not isinstance(got, case.error):
                raise SystemExit(f"{case.name!r} gave {got!r}, expected {case.error.__name__}")
            lines.append("| " + " | ".join([escape(case.name) + ("" if case.exact else " *"), f"`{escape(case.code)}`",
                                             case.error.__name__,
                                             case.builtin.__name__, escape(message)]) + " |")
    return "\n".join(lines) + "\n"


def escape(text):
    return text.replace("|", "\\|").replace("\n", " ")


def documented(path):
    """{bad input: (error, also a, message)} from the rendered page."""
    rows = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 5 and cells[0] not in ("bad input", "---"):
            rows[cells[0].removesuffix(" *")] = (cells[2], cells[3], cells[4])
    return rows


DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"

if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    print(render(), end="")
