"""The benchmark code (xpnet.bench) at tiny sizes: every path runs and fills its JSON; the fits are right;
the C baselines compute what xpnet computes."""
import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet as xn
from xpnet.bench import cbaseline, coldstart, common, fd_vs_bp, scaling, throughput
from xpnet.cli import main

HAS_CC = cbaseline.compiler() is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_cc = pytest.mark.skipif(not HAS_CC, reason="no C compiler (cc or $CC) to build the C baselines")


def assert_filled(value, path="result"):
    """Every leaf of a JSON-able result is a real value: no None, no empty string, no NaN or inf."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert_filled(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_filled(item, f"{path}[{i}]")
    else:
        assert value is not None and value != "", f"{path} is empty"
        assert not isinstance(value, float) or math.isfinite(value), f"{path} = {value}"


# ---- the scaling-law fit ------------------------------------------------------------------

@pytest.mark.parametrize("slope", [0.5, 1.0, 2.0, 3.0])
def test_loglog_fit_recovers_the_slope_of_a_power_law(slope):
    P = np.array([9, 49, 161, 577, 2177, 8449, 33281, 99073], float)
    slope_fit, intercept = scaling.loglog_fit(P, 3e-7 * P**slope)
    assert slope_fit == pytest.approx(slope, abs=1e-12)
    assert 10**intercept == pytest.approx(3e-7, rel=1e-9)
    noisy = 3e-7 * P**slope * np.random.default_rng(0).uniform(0.9, 1.1, P.size)  # ±10 % timing noise
    assert scaling.loglog_fit(P, noisy)[0] == pytest.approx(slope, abs=0.05)


def test_fits_report_the_slope_over_all_sizes_and_over_the_larger_half():
    P = [10, 100, 1000, 10_000, 100_000, 1_000_000]
    # backprop-like: a fixed overhead that the P-proportional work overtakes at the larger sizes
    bp = [1e-6 + 1e-9 * p for p in P]
    points = [{"backend": "numpy", "method": "fd", "params": p, "seconds_per_gradient": 1e-8 * p**2} for p in P]
    points += [{"backend": "numpy", "method": "bp", "params": p, "seconds_per_gradient": t} for p, t in zip(P, bp)]
    fd_fit, bp_fit = scaling.fits(points)
    assert (fd_fit["method"], fd_fit["points"]) == ("fd", 6)
    assert fd_fit["slope"] == pytest.approx(2.0) and fd_fit["slope_upper"] == pytest.approx(2.0)
    assert bp_fit["upper_from_params"] == 10_000
    assert bp_fit["slope"] < 0.7 < 0.95 < bp_fit["slope_upper"] < 1.0


def test_crossover_interpolated_inside_the_sizes_and_extrapolated_outside():
    fd = lambda p: 1e-6 * p**2  # noqa: E731  meets bp at P = 100
    bp = lambda p: 1e-4 * p  # noqa: E731
    inside = [10, 50, 300, 1000]
    P, how = scaling.crossover(inside, [fd(p) for p in inside], [bp(p) for p in inside])
    assert P == pytest.approx(100) and how.startswith("interpolated")
    outside = [1000, 10_000, 100_000]
    P, how = scaling.crossover(outside, [fd(p) for p in outside], [bp(p) for p in outside])
    assert P == pytest.approx(100) and how.startswith("extrapolated") and "slower at every" in how
    assert scaling.crossover(outside, [2 * bp(p) for p in outside], [bp(p) for p in outside])[0] is None


def test_scaling_runs_at_tiny_sizes_and_fills_its_json():
    result = scaling.run(["numpy"], max_params=200, min_time=0.001, repeats=1, max_seconds=30)
    assert [s["params"] for s in result["sizes"]] == [9, 49, 161]
    assert len(result["points"]) == 6 and not result["skipped"]
    assert {(f["backend"], f["method"]) for f in result["fits"]} == {("numpy", "bp"), ("numpy", "fd")}
    assert len(result["crossovers"]) == 1
    assert_filled(result)
    assert "| 2-2-1 | 9 |" in scaling.table(result)


def test_scaling_skips_sizes_projected_over_the_time_cap():
    result = scaling.run(["numpy"], max_params=200, min_time=0.001, repeats=1, max_seconds=1e-9)
    assert [p["params"] for p in result["points"]] == [9, 9]  # each method measures its smallest size, then stops
    assert [(s["method"], s["params"]) for s in result["skipped"]] == [("bp", 49), ("bp", 161), ("fd", 49), ("fd", 161)]
    assert all("projected" in s["reason"] for s in result["skipped"])


def test_scaling_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot needs the 'plot' extra (matplotlib)")
    result = scaling.run(["numpy"], max_params=60, min_time=0.001, repeats=1)
    path = scaling.plot(result, tmp_path / "scaling.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- the articles' experiment --------------------------------------------------------------

def test_measure_runs_everything_under_the_cap_and_extrapolates_over_it():
    calls = []

    def run(n):  # a fake implementation: 10 ms per iteration, its MSE the iteration count
        calls.append(n)
        return 0.01 * n, float(n)

    assert fd_vs_bp.measure(run, 8, max_seconds=1.0) == (8, pytest.approx(0.08), 8.0, False)
    calls.clear()
    n, seconds, mse, extrapolated = fd_vs_bp.measure(run, 1000, max_seconds=1.0)
    assert (n, mse, extrapolated) == (100, 100.0, True) and seconds == pytest.approx(1.0)
    assert calls == [1, 2, 4, 8, 100]  # probes until one lasts 50 ms, then the capped run


def test_repeats_go_round_the_implementations_in_turn_and_keep_the_fastest():
    calls = []

    def measured(name, seconds, later, extrapolated=False):
        """(row after its first run, run) of a fake implementation whose later runs take ``later`` seconds."""
        times = iter(later)

        def run(n):
            calls.append(name)
            return next(times), float(n)
        return fd_vs_bp.row(name, "s", "bp", 100, (100, seconds, 1.0, extrapolated)), run

    rows = fd_vs_bp.repeat_in_turn([measured("a", 0.9, [0.7, 0.8]), measured("b", 0.5, [0.6, 0.4]),
                                    measured("c", 2.0, [], extrapolated=True)], 100, repeats=3, log=common.quiet)
    assert calls == ["a", "b", "a", "b"]  # round by round; the extrapolated row ran once
    assert [r["seconds"] for r in rows] == [0.7, 0.4, 2.0]
    assert rows[1]["ns_per_iteration"] == pytest.approx(4e6)


def test_best_per_call_in_turn_goes_round_the_runs_and_keeps_each_ones_fastest():
    calls = []
    per_call = {"a": iter([0.1, 0.3, 0.2]), "b": iter([0.05, 0.04, 0.01, 0.09])}  # autorange's, then 2 rounds

    def timer(name):
        def run(n):
            calls.append((name, n))
            return n * next(per_call[name])
        return run

    best = common.best_per_call_in_turn([timer("a"), timer("b")], min_time=0.1, repeats=3)
    # a's autorange stops at n = 1 (0.1 s), b's at n = 3 (0.05 s at n = 1, then 3 × 0.04); then round by round
    assert calls == [("a", 1), ("b", 1), ("b", 3), ("a", 1), ("b", 3), ("a", 1), ("b", 3)]
    assert best == pytest.approx([0.1, 0.01])


def test_fd_vs_bp_runs_at_tiny_sizes_and_fills_its_json():
    result = fd_vs_bp.run(["numpy"], iterations=40, c=HAS_CC)
    rows = result["rows"]
    assert [(r["implementation"], r["method"]) for r in rows[:3]] == [("xpnet numpy", m) for m in fd_vs_bp.METHODS]
    assert len(rows) == (9 if HAS_CC else 3)
    for r in rows:
        assert r["iterations_run"] == 40 and not r["extrapolated"]
        assert r["ns_per_iteration"] == pytest.approx(1e9 * r["seconds"] / 40)
        assert r["fd_bp_ratio"] == 1.0 if r["method"] == "bp" else r["fd_bp_ratio"] > 0
    assert_filled(result)
    text = fd_vs_bp.table(result)
    assert "8.08" in text and "1.67" in text and "4.8" in text  # the article's figures beside ours


@needs_cc
@pytest.mark.parametrize("method", list(fd_vs_bp.METHODS))
def test_c_baselines_reach_xpnets_float32_mse_from_the_same_weights(method):
    iterations = 1500
    X, y = xn.datasets.xor()
    net = fd_vs_bp.xor_net("numpy")
    weights = net.get_weights()
    start_mse = net.evaluate(X, y, loss="mse")["loss"]
    net.compile("mse", xn.optim.SGD(lr=1.0), **fd_vs_bp.METHODS[method]).repeat(X, y, iterations)
    xpnet_mse = net.evaluate(X, y, loss="mse")["loss"]
    assert xpnet_mse < 0.5 * start_mse  # it trained, so equal MSEs mean equal trajectories
    for program in cbaseline.PROGRAMS:
        seconds, c_mse = cbaseline.run(cbaseline.build(program), method, iterations, weights, fd_vs_bp.SIZES,
                                       eps=fd_vs_bp.EPS)
        assert abs(c_mse - xpnet_mse) < 1e-4, (program, c_mse, xpnet_mse)
        assert seconds > 0


@needs_cc
def test_c_baseline_says_what_went_wrong():
    executable = cbaseline.build("fixed")
    with pytest.raises(cbaseline.BaselineError, match="9 weights"):
        cbaseline.run(executable, "bp", 10, [np.zeros(3)], [2, 2, 1])
    with pytest.raises(ValueError, match="2-2-1"):
        cbaseline.run(executable, "bp", 10, [np.zeros(9)], [2, 3, 1])


# ---- backends vs PyTorch, cold start -------------------------------------------------------

def test_backends_run_at_tiny_sizes_and_fill_their_json():
    result = throughput.run(["numpy"], sizes=("tiny", "small"), min_time=0.001, repeats=1, pytorch=HAS_TORCH)
    ways = [(r["case"], r["implementation"], r["way"]) for r in result["rows"]]
    expected = [(c, "xpnet numpy", w) for c in ("tiny", "small") for w in ("step", "repeat", "epoch")]
    assert [w for w in ways if w[1] == "xpnet numpy"] == expected
    for r in result["rows"]:
        assert r["samples_per_s"] == pytest.approx(throughput.CASES[r["case"]]["batch"] / r["seconds_per_step"])
    for case in result["cases"]:
        assert case["flops_per_step"] == sum(3 * 2 * case["batch"] * a * b
                                             for a, b in zip(case["layers"], case["layers"][1:]))
    if HAS_TORCH:
        assert all("vs_pytorch" in r for r in result["rows"])
        assert sum(r["implementation"].startswith("pytorch") for r in result["rows"]) == 4
        for case in result["cases"]:  # the peer computes the same thing from the same weights
            losses = case["first_step_loss"]
            assert losses["pytorch"] == pytest.approx(losses["xpnet"], rel=1e-5)
    else:
        assert result["skipped"][0]["what"] == "pytorch"
    assert_filled(result)
    assert "| tiny | xpnet numpy | step |" in throughput.table(result)


def test_large_case_is_skipped_when_memory_is_short(monkeypatch):
    monkeypatch.setattr(throughput, "memory_available", lambda: 2**30)
    result = throughput.run(["numpy"], sizes=("large",), pytorch=False)
    assert result["rows"] == [] and result["skipped"][-1]["what"] == "large"
    assert "GiB" in result["skipped"][-1]["reason"]


def test_cold_start_reports_import_and_first_step_and_import_does_not_load_numba():
    result = coldstart.run(["numpy"])
    assert [(r["backend"], r["cache"]) for r in result["rows"]] == [("numpy", "cold"), ("numpy", "warm")]
    for r in result["rows"]:
        assert 0 < r["import_seconds"] < r["process_seconds"] and r["first_step_seconds"] > 0
        assert r["numba_loaded_by_import"] is False
    assert_filled(result)


# ---- choosing backends, the command line ---------------------------------------------------

def test_default_backends_leave_out_the_correctness_tool_and_torch_tensors():
    chosen = common.select_backends()
    assert "numpy" in chosen and "array_api_strict" not in chosen and "torch" not in chosen
    assert common.select_backends(["numpy", "array_api_strict"]) == ["numpy", "array_api_strict"]
    with pytest.raises(xn.errors.ConfigError, match="Did you mean 'numpy'"):
        common.select_backends(["numpi"])


def test_cli_bench_all_writes_json_plot_and_tables(tmp_path, capsys):
    out, png = tmp_path / "bench.json", tmp_path / "scaling.png"
    assert main(["bench", "all", "--backend", "numpy", "--iterations", "30", "--max-params", "60", "--sizes", "tiny",
                 "--min-time", "0.001", "--repeats", "1", "--no-cold-start", "--json", str(out), "--plot", str(png),
                 "--seed", "1"]) == 0
    captured = capsys.readouterr()
    report = json.loads(out.read_text())
    assert set(report) == {"machine", "options", "fd_vs_bp", "scaling", "backends"}
    assert report["machine"]["cores"] >= 1 and report["machine"]["blas"]
    assert report["options"]["seed"] == 1
    assert_filled(report)
    for title in ("### The articles' experiment", "### Scaling", "### Backends vs PyTorch", "- BLAS:"):
        assert title in captured.out
    assert "[bench] fd-vs-bp xpnet numpy bp" in captured.err  # progress, one line per measurement
    assert png.exists() or importlib.util.find_spec("matplotlib") is None


def test_cli_bench_rejects_an_unknown_size(capsys):
    assert main(["bench", "backends", "--sizes", "tiny,hueg"]) == 2
    assert "unknown benchmark size 'hueg'" in capsys.readouterr().err


def test_the_cli_loads_no_benchmark_module_until_bench_runs():
    code = ("import sys, xpnet.cli; xpnet.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith('xpnet.bench.') or m in ('torch', 'matplotlib')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ---- data-parallel scaling over MPI ranks ---------------------------------------------------------

def test_distributed_benchmark_runs_on_one_and_two_ranks_and_fills_its_json():
    from xpnet.bench import distributed

    if importlib.util.find_spec("mpi4py") is None or distributed.mpiexec() is None:
        pytest.skip("needs mpi4py and mpiexec (pip install -e '.[mpi]')")
    case = {"layers": [6, 8, 3], "batch": 10, "batches": 2}
    result = distributed.run(["numpy"], ranks=(1, 2), min_time=0.001, repeats=1, case=case)
    assert_filled(result)
    one, two = result["rows"]
    assert (one["ranks"], two["ranks"], one["rows_per_rank"], two["rows_per_rank"]) == (1, 2, 10, 5)
    assert one["speedup"] == 1 and two["efficiency"] == pytest.approx(two["steps_per_s"] / one["steps_per_s"] / 2)
    n_bytes = 4 * (6 * 8 + 8 + 8 * 3 + 3 + 1)  # every parameter and the loss, float32
    assert result["case"]["buffer_bytes"] == n_bytes and (one["bytes_per_rank"], two["bytes_per_rank"]) == (0, n_bytes)
    assert "bus_bandwidth" not in one and two["bus_bandwidth"] == pytest.approx(n_bytes / two["allreduce_seconds"])
    assert two["transport"] == "mpi" and "plain" in two["step"]
    text = distributed.table(result)
    assert "| numpy | 2 | 5 |" in text and "2(N−1)/N · B" in text


def test_bench_distributed_command_prints_the_scaling_table(tmp_path, capsys):
    from xpnet.bench import distributed

    if importlib.util.find_spec("mpi4py") is None or distributed.mpiexec() is None:
        pytest.skip("needs mpi4py and mpiexec (pip install -e '.[mpi]')")
    out = tmp_path / "dp.json"
    assert main(["bench", "distributed", "--backend", "numpy", "--ranks", "1", "--min-time", "0.001",
                 "--repeats", "1", "--quiet", "--json", str(out)]) == 0
    assert "### Data-parallel scaling (784-256-256-10, global batch 128" in capsys.readouterr().out
    assert [row["ranks"] for row in json.loads(out.read_text())["distributed"]["rows"]] == [1]


def test_the_pytorch_model_is_the_twin_unless_told_otherwise():
    torch = pytest.importorskip("torch", reason="the PyTorch rows need torch")
    net = throughput.make_net(throughput.CASES["tiny"], "numpy", 0)
    X = np.random.default_rng(0).standard_normal((4, net.n_inputs))
    twin = throughput.torch_model(net, torch.device("cpu"))
    np.testing.assert_allclose(twin(torch.from_numpy(X).float()).detach().numpy(), net.predict(X), rtol=1e-5,
                               atol=1e-6)
    own = throughput.torch_model(net, torch.device("cpu"), twin=False)
    assert not np.allclose(own(torch.from_numpy(X).float()).detach().numpy(), net.predict(X))


@pytest.mark.parametrize("gradient", ["backprop", "finite_difference"])
def test_the_compile_profile_script_reports_the_first_step(gradient):
    pytest.importorskip("numba")
    script = Path(__file__).parent.parent / "benchmarks" / "compile_profile.py"
    result = subprocess.run([sys.executable, str(script), "--gradient", gradient], capture_output=True, text=True,
                            check=True)
    assert re.match(r"import [\d.]+ s, build [\d.]+ s, first step [\d.]+ s, \d+ functions compiled", result.stdout)


def test_reports_name_the_cpus_generation_and_vector_unit(tmp_path):
    """Two VMs may both call their CPU "AMD EPYC"; family, model and AVX-512 or AVX2 tell them apart."""
    from xpnet.bench.common import cpu_name

    info = tmp_path / "cpuinfo"
    block = "processor\t: {}\nmodel name\t: AMD EPYC\ncpu family\t: {}\nmodel\t\t: {}\nflags\t\t: fpu {}\n"
    info.write_text(block.format(0, 26, 2, "avx2 avx512f") + "\n" + block.format(1, 26, 2, "avx2 avx512f"))
    assert cpu_name(info) == "AMD EPYC (family 26 model 2, AVX-512)"
    info.write_text(block.format(0, 23, 49, "avx avx2 fma"))
    assert cpu_name(info) == "AMD EPYC (family 23 model 49, AVX2)"
    info.write_text("model name\t: Some CPU\n")
    assert cpu_name(info) == "Some CPU"
    import platform

    assert cpu_name(tmp_path / "missing") == (platform.processor() or platform.machine())  # no /proc/cpuinfo
