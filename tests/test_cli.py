import subprocess
import sys

import numpy as np

from xpnet.cli import main


def test_train_on_spirals_prints_metrics(capsys):
    assert main(["train", "--data", "spirals", "--epochs", "30", "--quiet", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "train: loss" in out and "test: loss" in out
    accuracy = float(out.split("test: loss")[1].split("accuracy")[1].split()[0])
    assert accuracy >= 0.95


def test_train_on_csv_and_save(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, X[:, 0] > 0]), delimiter=",")
    assert main(["train", "--data", str(tmp_path / "d.csv"), "--epochs", "5", "--quiet", "--backend", "numpy",
                 "--save", str(tmp_path / "m.npz")]) == 0
    assert (tmp_path / "m.npz").exists()


def test_errors_are_one_line_and_exit_non_zero(capsys):
    assert main(["train", "--activation", "rleu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xpnet: error: unknown activation 'rleu'") and "Traceback" not in err
    assert err.count("\n") == 1


def test_info_lists_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "auto →" in out


def test_python_dash_m_runs():
    result = subprocess.run([sys.executable, "-m", "xpnet", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("xpnet ")
