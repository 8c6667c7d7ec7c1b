"""benchmarks/cuda_targets.py without a GPU: it says why and exits cleanly; its arithmetic is right."""
import importlib.util
import pathlib

import pytest

import xpnet as xn

from fakecupy import fake_cupy  # noqa: F401 (fixture)

PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "cuda_targets.py"
spec = importlib.util.spec_from_file_location("cuda_targets", PATH)
assert spec is not None and spec.loader is not None, PATH
cuda_targets = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cuda_targets)


def test_without_a_gpu_it_explains_and_exits_zero(capsys):
    if xn.backends.unavailable_reason("cupy") is None:
        pytest.skip("a GPU is usable here: the benchmark would run for real")
    assert cuda_targets.main(["--quick"]) == 0
    assert capsys.readouterr().out.startswith("cuda_targets: needs CuPy and a CUDA GPU: ")


def test_products_ratios_and_timing():
    assert cuda_targets.product_flops([2, 3, 4], 5) == 2 * 5 * 2 * 3 * 2 + 2 * 5 * 3 * 4 * 3
    rows = [cuda_targets.row("a", 300.0, 100.0, "peer", 3.0), cuda_targets.row("b", 1.0, 2.0, "peer", 1.0),
            cuda_targets.row("c", 5.0, None, "peer", 1.0)]
    assert [(r["ratio"], r["met"]) for r in rows] == [(3.0, True), (0.5, False), (None, None)]
    text = cuda_targets.report(rows)
    assert "3.00  ≥3.00  yes" in text and "0.50  ≥1.00  NO" in text and "missing" in text
    calls, syncs = [], []
    seconds = cuda_targets.timed(lambda: calls.append(1), lambda: syncs.append(1), repeats=4, rounds=2, warmup=1)
    assert len(calls) == 1 + 2 * 4 and len(syncs) == 1 + 2 and seconds >= 0


def test_the_xpnet_side_of_a_target_runs_on_the_fake_gpu(fake_cupy):
    call, synchronize, step = cuda_targets.xpnet_step([4, 8, 3], 6, graphs=False)
    assert cuda_targets.timed(call, synchronize, repeats=2, rounds=1, warmup=1) > 0
    assert step.optimizer.steps == 3 and fake_cupy.calls["synchronize"] == 2


def test_the_conv_rows_run_on_the_fake_gpu(fake_cupy):
    from xpnet.bench import conv

    case = dict(conv.CASES["conv1d"], batch=4)
    call, synchronize = cuda_targets.conv_step(case)
    assert cuda_targets.timed(call, synchronize, repeats=1, rounds=1, warmup=1) > 0
    assert cuda_targets.torch_conv_step(case) is None or xn.backends.unavailable_reason("cupy") is None
