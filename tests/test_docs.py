"""The documentation site tells the truth: every page's Python runs, in order, and the site builds strictly."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# errors.md's one block is the prelude of its rows, which tests/test_errors.py runs.
PAGES = sorted(p.name for p in DOCS.glob("*.md")
               if p.name != "errors.md" and re.search(r"^```python$", p.read_text(encoding="utf-8"), re.M))
NEEDS = {"distributed.md": "mpi4py"}  # what a page's examples import beyond the core


def python_blocks(page):
    return re.findall(r"^```python\n(.*?)^```", (DOCS / page).read_text(encoding="utf-8"), flags=re.S | re.M)


def test_the_pages_with_examples_are_the_ones_expected():
    assert PAGES == ["backends.md", "cuda.md", "distributed.md", "index.md", "layers.md", "reliability.md",
                     "training.md", "tutorial.md"]


@pytest.mark.parametrize("page", PAGES)
def test_python_examples_run_in_order(page, tmp_path, monkeypatch):
    if page in NEEDS:
        pytest.importorskip(NEEDS[page])
    monkeypatch.chdir(tmp_path)
    blocks = [code for code in python_blocks(page) if 'xn.use("cupy")' not in code]  # GPU-only: test_cupy_gpu.py
    if not blocks:
        pytest.skip(f"{page} has only GPU examples")
    namespace = {}
    for k, code in enumerate(blocks):
        exec(compile(code, f"docs/{page} python block {k + 1}", "exec"), namespace)


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    if shutil.which("mkdocs") is None and not _has_module("mkdocs"):
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "reference" / "index.html").exists()


def _has_module(name):
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def test_every_xpnet_command_the_docs_name_exists():
    """`xpnet <command>` and `xpnet bench <name>` in the README and the pages name real commands."""
    from xpnet import bench, cli

    commands = set(cli.build_parser()._subparsers._group_actions[0].choices)  # argparse keeps them here
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        fenced = "\n".join(re.findall(r"^```\w*\n(.*?)^```", text, flags=re.S | re.M))
        named = re.findall(r"^\s*(?:python -m )?xpnet ([a-z][\w-]*)", fenced, flags=re.M)
        for name in named + re.findall(r"`(?:python -m )?xpnet ([a-z][\w-]*)", text):
            assert name in commands, f"{page.name}: xpnet {name} is not a command"
        for name in re.findall(r"xpnet bench ([a-z][\w-]*)", text):
            assert name in bench.BENCHMARKS, f"{page.name}: xpnet bench {name} is not a benchmark"
