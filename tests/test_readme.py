"""The README tells the truth: its Python runs, its commands run, its map of BP1–BP4 points at real code."""
import ast
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

import xpnet as xn
from xpnet.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
QUICKSTART = '''```bash
python -m pip install -e . && python -m xpnet train --data spirals
python -m pip install -e ".[dev]" -c .ci/constraints.txt && python -m pytest -n auto
```'''
CODE_REF = re.compile(r"`(src/xpnet/[\w/]+\.py):([\w.]+)`")


def blocks(language):
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M)


def test_the_two_commands_come_first():
    assert README.startswith("# xpnet\n\n" + QUICKSTART)


def test_python_snippets_run_in_order(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib", reason="the tour draws plots (pip install -e '.[plot]')")
    pytest.importorskip("sklearn", reason="the tour uses the estimators (pip install -e '.[sklearn]')")
    pytest.importorskip("mpi4py", reason="Scaling out trains with distributed=True (pip install -e '.[mpi]')")
    monkeypatch.chdir(tmp_path)
    snippets = [code for code in blocks("python") if 'xn.use("cupy")' not in code]  # GPU-only: test_cupy_gpu.py
    assert len(snippets) >= 5
    namespace = {}
    for k, code in enumerate(snippets):
        exec(compile(code, f"README.md python block {k + 1}", "exec"), namespace)
    assert "BP1" in capsys.readouterr().out  # print(t) showed the trace table
    for name in ("spirals.npz", "boundary.png", "curves.png", "race.png", "spirals-dp.npz"):
        assert (tmp_path / name).stat().st_size > 0, name
    # what the comments claim
    assert namespace["search"].best_params_ == {"mlpclassifier__hidden_layer_sizes": (32,)}
    assert namespace["search"].best_score_ == pytest.approx(0.98, abs=0.01)
    assert namespace["t"].layers[0].delta.shape == (1, 2)


def test_command_lines_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib", reason="the commands draw plots (pip install -e '.[plot]')")
    monkeypatch.chdir(tmp_path)
    X, y = xn.datasets.moons(n=20, seed=3)
    np.savetxt("moons.csv", np.column_stack([X, y]), delimiter=",")
    lines = [line.split("  #")[0].strip() for code in blocks("bash") for line in code.splitlines()]
    # `xpnet bench` runs for minutes at full size; tests/test_bench.py runs its code paths at tiny sizes.
    # `xpnet playground` serves until Ctrl-C; tests/test_playground.py runs it with the server replaced.
    commands = [shlex.split(line)[1:] for line in lines if line.startswith("xpnet ") and
                not line.startswith(("xpnet bench", "xpnet playground"))]
    assert [c[0] for c in commands] == ["info", "train", "predict", "gradcheck", "explain", "race", "info"]
    for argv in commands:
        if argv[0] == "train":
            argv = argv + ["--quiet"]
        assert main(argv) == 0, argv
    assert (tmp_path / "moons.png").exists() and (tmp_path / "race.png").exists()


def resolve(path, qualname):
    """The source of ``qualname`` (e.g. ``Backend.dense_backward``) in ``path``, or None."""
    source = (ROOT / path).read_text(encoding="utf-8")
    scope = ast.parse(source).body
    node = None
    for part in qualname.split("."):
        node = next((n for n in scope if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == part), None)
        if node is None:
            return None
        scope = node.body
    return "\n".join(source.splitlines()[node.lineno - 1:node.end_lineno])  # whole lines: trailing comments too


def test_backprop_map_points_at_the_code_that_does_each_step():
    section = README.split("## How backprop is implemented")[1].split("\n## ")[0]
    refs = CODE_REF.findall(section)
    assert len(refs) >= 6
    for path, qualname in refs:
        assert resolve(path, qualname) is not None, f"{path}:{qualname} does not exist"
    rows = [line for line in section.splitlines() if line.startswith("| BP")]
    assert [row.split("|")[1].strip() for row in rows] == ["BP1", "BP2", "BP3", "BP4"]
    for row in rows:
        tag = row.split("|")[1].strip()
        for path, qualname in CODE_REF.findall(row):
            assert tag in resolve(path, qualname), f"{path}:{qualname} is listed for {tag} but never names it"
