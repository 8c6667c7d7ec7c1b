"""benchmarks/gpu_check.sh on a machine without a GPU: its arguments, its one-line refusal, the wheels step offline.

What it does on a GPU (the steps, the report) runs only there; the test
timeouts of tests/conftest.py, which it relies on, are checked here.
"""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run(*args, path=None, **env):
    """(exit code, stdout, stderr, seconds) of the script, with this test's Python as its python3."""
    environ = {**os.environ, "PYTHON": sys.executable, **env}
    if path is not None:
        environ["PATH"] = f"{path}{os.pathsep}{environ['PATH']}"
    start = time.monotonic()
    done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=environ, timeout=60,
                          cwd=ROOT)
    return done.returncode, done.stdout, done.stderr, time.monotonic() - start


def fake_nvidia_smi(folder, output):
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\necho '{output}'\n")
    tool.chmod(0o755)
    return folder


def test_help_and_bad_arguments():
    code, out, _, _ = run("--help")
    assert code == 0 and out.startswith("usage: bash benchmarks/gpu_check.sh [OUTDIR]")
    for args, message in ((["--bogus"], "unknown option --bogus"), (["a", "b"], "one OUTDIR only"),
                          (["--fetch-wheels", "out"], "--fetch-wheels takes no OUTDIR")):
        code, out, err, _ = run(*args)
        assert code == 2 and message in err and out == ""
    code, _, err, _ = run(PYTHON="no-such-python3")
    assert code == 2 and "no no-such-python3 on the PATH" in err


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi: the no-GPU path "
                                                                    "cannot be shown here")
def test_without_a_gpu_it_says_why_in_one_line_and_exits_3(tmp_path):
    code, out, err, seconds = run(str(tmp_path / "out"))
    assert (code, err) == (3, "") and seconds < 30
    assert out.splitlines() == ["gpu_check.sh: no GPU here: nvidia-smi is not on the PATH (no NVIDIA driver)"]
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell script stands in for nvidia-smi")
def test_a_driver_without_a_usable_gpu_is_refused_with_cupys_reason(tmp_path, monkeypatch):
    from xpnet.backends import cupy_backend

    reason = cupy_backend.probe()
    if reason is None:
        pytest.skip("CuPy works here: the refusal cannot be shown")
    path = fake_nvidia_smi(tmp_path, "NVIDIA H100, 580.65, 81559 MiB")
    code, out, _, seconds = run(str(tmp_path / "out"), path=path)
    assert code == 3 and seconds < 30
    assert out.splitlines() == [f"gpu_check.sh: no usable GPU here: {reason}"]
    empty = fake_nvidia_smi(tmp_path, "")
    code, out, _, _ = run(path=empty)
    assert code == 3 and out.startswith("gpu_check.sh: no GPU here: nvidia-smi lists none")


def test_fetching_wheels_without_a_package_index_fails_and_says_so(tmp_path):
    before = sorted((ROOT / "wheels").glob("*")) if (ROOT / "wheels").exists() else None
    code, _, err, _ = run("--fetch-wheels", PIP_NO_INDEX="1", PIP_FIND_LINKS=str(tmp_path))
    assert code == 2 and "pip download failed" in err
    after = sorted((ROOT / "wheels").glob("*")) if (ROOT / "wheels").exists() else None
    assert after in (before, [])  # nothing added (an empty folder may be left)
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "wheels/x.whl"])
    assert ignored.returncode == 0, "wheels/ must be ignored by git"


def test_a_gpu_test_that_hangs_is_stopped_by_the_suites_timeout(tmp_path):
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    assert "GPU_TEST_TIMEOUT = 120" in conftest
    (tmp_path / "conftest.py").write_text(conftest.replace("GPU_TEST_TIMEOUT = 120", "GPU_TEST_TIMEOUT = 1"))
    (tmp_path / "test_hang.py").write_text(
        "import time, pytest\n"
        "@pytest.mark.gpu\ndef test_hangs():\n    time.sleep(30)\n"
        "def test_unmarked_tests_have_no_limit():\n    time.sleep(1.5)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert time.monotonic() - start < 20
    assert "1 failed, 1 passed" in done.stdout, done.stdout[-2000:]
    assert "test_hangs ran longer than 1 s" in done.stdout


def test_the_backend_switch_limits_the_backend_fixture(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
               str(ROOT / "tests" / "test_kernels.py"), "-k", "test_one_hot_and_take_rows"]
    ids = {}
    for setting in ("numpy,cupy", ""):
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                              env=dict(env, XPNET_TEST_BACKENDS=setting))
        ids[setting] = sorted(line.split("[")[1].rstrip("]") for line in done.stdout.splitlines() if "[" in line)
    assert ids["numpy,cupy"] == ["cupy", "numpy"]
    assert len(ids[""]) == 5
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=dict(env, XPNET_TEST_BACKENDS="cuda"))
    assert done.returncode != 0 and "unknown backend(s) ['cuda']" in done.stdout + done.stderr


STAND_IN = """#!/bin/bash
# python3 for gpu_check.sh: a probe that finds a GPU, and steps that pass, fail and skip on cue.
case "$*" in
  *"probe()"*) echo; exit 0 ;;
  *"-m pytest"*"-m gpu -x"*) echo "==== 5 passed in 1.00s ====" ;;
  *"-m pytest"*"-k spirals"*) echo "1 skipped in 0.10s" ;;
  *"-m pytest"*"--ignore"*) echo "E   AssertionError: cupy differs"; echo "==== 1 failed, 7 passed in 2.00s ===="; exit 1 ;;
  *"-m pytest"*"two_mpi_processes"*) echo "1 passed in 0.20s" ;;
  *cuda_targets.py*) echo "ratio 1.2" ;;
  *"bench backends"*) echo '{"rows": []}' > "${@: -1}"; echo "| backend |" ;;
  *) exec "$REAL_PYTHON" "$@" ;;
esac
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell stand-ins")
def test_the_report_has_a_line_per_step_and_the_failures_last_lines(tmp_path):
    python = tmp_path / "python3"
    python.write_text(STAND_IN)
    python.chmod(0o755)
    path = fake_nvidia_smi(tmp_path, "NVIDIA H200, 580.65, 143771 MiB")
    out = tmp_path / "report"
    code, stdout, _, seconds = run(str(out), path=path, PYTHON=str(python), REAL_PYTHON=sys.executable)
    assert code == 1 and seconds < 60  # a step failed
    lines = stdout.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["PASS", "FAIL", "SKIP", "PASS", "PASS", lines[5].split()[0]]
    assert re.search(r"\(\d+ s, cupy-suite.log: 1 failed, 7 passed in 2.00s\)$", lines[1]), lines[1]
    report = (out / "report.md").read_text()
    assert "nvidia-smi: NVIDIA H200, 580.65, 143771 MiB" in report and "backends:" in report  # xpnet info
    assert "| pytest -m gpu -x | PASS: 5 passed in 1.00s |" in report
    assert "| 20-epoch spirals fit, cupy = numpy in float64 | SKIP: 1 skipped in 0.10s |" in report
    assert "### core suite on cupy (XPNET_TEST_BACKENDS=cupy): last lines of cupy-suite.log" in report
    assert "AssertionError: cupy differs" in report
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and {"report.md", "gpu-tests.log", "bench.json"} <= set(files)
