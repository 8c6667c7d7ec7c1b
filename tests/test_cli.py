"""The command line: every subcommand, --help everywhere, one-line errors with a non-zero exit code."""
import subprocess
import sys
import warnings

import numpy as np
import pytest

import xpnet as xn
from xpnet import checkpoint
from xpnet.cli import build_parser, main

COMMANDS = ["info", "train", "predict", "gradcheck", "explain", "race", "warmup", "playground"]


def test_train_on_spirals_prints_metrics(capsys):
    assert main(["train", "--data", "spirals", "--epochs", "30", "--quiet", "--backend", "numpy"]) == 0
    captured = capsys.readouterr()
    assert "train: loss" in captured.out and "validation: loss" in captured.out and "test: loss" in captured.out
    accuracy = float(captured.out.split("test: loss")[1].split("accuracy")[1].split()[0])
    assert accuracy >= 0.95
    assert "training samples/s" in captured.err


def test_train_on_csv_and_save(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, X[:, 0] > 0]), delimiter=",")
    assert main(["train", "--data", str(tmp_path / "d.csv"), "--epochs", "5", "--quiet", "--backend", "numpy",
                 "--save", str(tmp_path / "m.npz")]) == 0
    net = xn.load(tmp_path / "m.npz")
    assert net.sizes == [3, 16, 16, 2]
    extra = checkpoint.load(tmp_path / "m.npz")[2]
    assert extra["loss"] == "softmax_ce" and len(extra["standardize"]["mean"]) == 3


def test_train_on_xor_is_full_batch_without_warnings(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["train", "--data", "xor", "--epochs", "20", "--quiet", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert out.strip().startswith("train: loss") and "validation" not in out  # 4 points: no split


def test_predict_uses_the_saved_scaling_and_reports_accuracy(tmp_path, capsys):
    model = tmp_path / "m.npz"
    assert main(["train", "--data", "moons", "--epochs", "20", "--quiet", "--backend", "numpy",
                 "--save", str(model)]) == 0
    X, y = xn.datasets.moons(n=40, seed=7)
    extra = checkpoint.load(model)[2]
    mean, scale = np.array(extra["standardize"]["mean"]), np.array(extra["standardize"]["scale"])
    expected = xn.load(model).predict((X - mean) / scale).argmax(axis=1)
    assert np.any(xn.load(model).predict(X).argmax(axis=1) != expected)  # so the test sees a missing scaling
    np.savetxt(tmp_path / "with_labels.csv", np.column_stack([X, y]), delimiter=",", header="a,b,label", comments="")
    np.savetxt(tmp_path / "features.csv", X, delimiter=",")
    capsys.readouterr()
    assert main(["predict", str(model), str(tmp_path / "with_labels.csv")]) == 0
    captured = capsys.readouterr()
    assert [int(v) for v in captured.out.split()] == expected.tolist()
    reported = float(captured.err.split("accuracy against the last column:")[1])
    assert reported == pytest.approx(np.mean(expected == y)) and reported > 0.9
    assert main(["predict", str(model), str(tmp_path / "features.csv"), "--proba"]) == 0
    proba = np.loadtxt(capsys.readouterr().out.splitlines(), delimiter=",")
    assert proba.shape == (40, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(proba.argmax(axis=1), expected)


def test_predict_with_a_regression_model_prints_values(tmp_path, capsys):
    X, y = xn.datasets.xor()
    net = xn.MLP([2, 3, 1], seed=0)
    net.save(tmp_path / "xor.npz")
    np.savetxt(tmp_path / "x.csv", X, delimiter=",")
    assert main(["predict", str(tmp_path / "xor.npz"), str(tmp_path / "x.csv")]) == 0
    values = [float(v) for v in capsys.readouterr().out.split()]
    np.testing.assert_allclose(values, net.predict(X)[:, 0], rtol=1e-5)
    assert main(["predict", str(tmp_path / "xor.npz"), str(tmp_path / "x.csv"), "--proba"]) == 2
    assert "not probabilities" in capsys.readouterr().err


def test_train_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (pip install -e '.[plot]')")
    out = tmp_path / "train.png"
    assert main(["train", "--data", "circles", "--epochs", "3", "--quiet", "--backend", "numpy",
                 "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_gradcheck_prints_every_layer_and_exits_by_the_tolerance(capsys):
    assert main(["gradcheck", "--layers", "3,5,4,2", "--activation", "gelu", "--loss", "softmax_ce"]) == 0
    out = capsys.readouterr().out
    errors = {}
    for line in out.splitlines():
        if line.strip().startswith("layer"):
            parts = line.replace(":", "").split()
            errors.update({parts[2]: float(parts[3]), parts[4]: float(parts[5])})
    assert sorted(errors) == ["0.W", "0.b", "1.W", "1.b", "2.W", "2.b"]
    assert max(errors.values()) < 1e-6 and "backprop agrees" in out
    assert main(["gradcheck", "--layers", "2,3,1", "--loss", "mse", "--tol", "1e-30"]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_explain_shows_the_xor_sample_and_the_four_equations(capsys):
    assert main(["explain", "--layers", "2,2,1", "--activation", "sigmoid", "--loss", "mse"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("XOR sample 1: x = (0, 1), class 1")
    for tag in ("BP1", "BP2", "BP3", "BP4"):
        assert f"    {tag} " in out
    net = xn.MLP([2, 2, 1], activation="sigmoid", output_activation="sigmoid", dtype="float64", seed=0)
    X, y = xn.datasets.xor()
    assert f"mse loss C = {xn.trace(net, 'mse', X[1:2], y[1:2]).loss:.6g}" in out


def test_race_reports_every_optimiser_on_both_surfaces(capsys):
    assert main(["race", "--steps", "300"]) == 0
    out = capsys.readouterr().out
    assert out.count("rosenbrock:") == 1 and out.count("saddle:") == 1
    for name in ("SGD", "Momentum", "RMSProp", "Adam"):
        assert out.count(f"  {name} ") == 2


@pytest.mark.parametrize("command", COMMANDS)
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: xpnet {command}")


def test_every_command_is_listed_in_the_top_level_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(command in out for command in COMMANDS)
    assert set(COMMANDS) <= set(build_parser()._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("argv, start", [
    (["train", "--activation", "rleu", "--quiet"], "xpnet: error: unknown activation 'rleu'"),
    (["train", "--data", "spiral"], "xpnet: error: unknown data set (or a CSV file path) 'spiral'"),
    (["train", "--epochs", "x"], "xpnet train: error: argument --epochs: invalid int value: 'x'"),
    (["train", "--save", "/no/such/folder/m.npz"], "xpnet: error: cannot write /no/such/folder/m.npz"),
    (["predict", "missing.npz", "x.csv"], "xpnet: error: cannot read checkpoint missing.npz"),
    (["gradcheck", "--layers", "2,x"], "xpnet gradcheck: error: argument --layers: expected comma-separated"),
    (["explain", "--sample", "7"], "xpnet: error: --sample picks one of the 4 XOR points"),
    (["race", "--surface", "rosenbruck"], "xpnet: error: unknown surface 'rosenbruck'"),
    (["nonsense"], "xpnet: error: argument command: invalid choice: 'nonsense'"),
    (["warmup", "--dtype", "float16"], "xpnet: error: --dtype takes float32 and float64, got 'float16'"),
])
def test_errors_are_one_line_and_exit_non_zero(argv, start, capsys):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors exit from inside parse_args
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(start), err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_info_prints_every_key_of_every_backend(monkeypatch, capsys):
    rows = xn.backends.describe()
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for row in rows:
        assert f"  {row['name']} " in out
    assert "blas" in out and "auto →" in out and "optional libraries:" in out
    fake = [{"name": "numba", "usable": True, "reason": "", "install": "", "threading_layer": "tbb", "threads": 2},
            {"name": "cupy", "usable": False, "reason": "no CUDA device", "install": "pip install cupy"}]
    monkeypatch.setattr(xn.backends, "describe", lambda: fake)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "threading_layer tbb, threads 2" in out and "no CUDA device (to fix: pip install cupy)" in out


def test_python_dash_m_runs():
    result = subprocess.run([sys.executable, "-m", "xpnet", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("xpnet ")


def test_export_and_convert(tmp_path, capsys):
    pytest.importorskip("onnx", reason="export needs pip install -e '.[onnx]'")
    pytest.importorskip("safetensors", reason="convert to .safetensors needs pip install -e '.[safetensors]'")
    net = xn.MLP([2, 4, 1], activation="relu", seed=0)
    net.save(tmp_path / "m.npz", extra={"loss": "mse"})
    assert main(["export", str(tmp_path / "m.npz"), str(tmp_path / "m.onnx")]) in (0, None)
    assert (tmp_path / "m.onnx").stat().st_size > 0
    assert main(["convert", str(tmp_path / "m.npz"), str(tmp_path / "m.safetensors")]) in (0, None)
    back = xn.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(back.get_weights()[0], net.get_weights()[0])
    assert checkpoint.load(tmp_path / "m.safetensors")[2] == {"loss": "mse"}
