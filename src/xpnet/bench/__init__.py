"""Benchmarks: the articles' finite-difference vs backprop experiment, the scaling law, backends vs PyTorch.

``xpnet bench fd-vs-bp|scaling|backends|all`` runs them (``xpnet bench sklearn``, the estimators against
scikit-learn's own, ``xpnet bench conv``, convnets against PyTorch, and ``xpnet bench distributed``, the
data-parallel scaling over MPI ranks, run only when named; ``register`` adds that command to the CLI);
each lives in its own module with a ``run(...)``
returning a JSON-able dict and a ``table(result)`` in Markdown. Importing
this package imports no benchmark module: they load when a command runs.
"""
import argparse
import json
import sys

BENCHMARKS = ("fd-vs-bp", "scaling", "backends", "sklearn", "conv", "distributed", "all")


def _names(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def register(subparsers):
    """Add the ``bench`` command to the CLI's subparsers."""
    p = subparsers.add_parser(
        "bench", help="time FD vs backprop, the scaling law, backends vs PyTorch, the scikit-learn estimators, and "
                      "MPI data-parallel scaling",
        description="Run the benchmarks: progress on stderr, Markdown tables on stdout. "
                    "`xpnet bench all --json bench.json --plot scaling.png > bench.md` writes the whole report.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("which", choices=BENCHMARKS, help="which benchmark")
    p.add_argument("--backend", type=_names, help="comma-separated backends, e.g. numpy,numba (default: every "
                                                  "usable one but array_api_strict and torch)")
    p.add_argument("--iterations", type=int, default=1_000_000, help="fd-vs-bp: training iterations")
    p.add_argument("--max-seconds", type=float, default=30.0,
                   help="fd-vs-bp and scaling: cap on one measurement; longer runs are shortened (fd-vs-bp: "
                        "extrapolated, marked) or skipped (scaling)")
    p.add_argument("--max-params", type=int, help="scaling: largest parameter count (default: all sizes, ~1e5)")
    p.add_argument("--sizes", type=_names, default=["tiny", "small", "medium"],
                   help="backends: cases among tiny,small,medium,large (large is slow on few cores)")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds each timing lasts at least")
    p.add_argument("--repeats", type=int, default=3,
                   help="timings per measurement (the best counts; fd-vs-bp, backends and conv: round the implementations in turn; "
                        "fd-vs-bp: of each run that is not extrapolated)")
    p.add_argument("--cases", type=_names, default=["conv1d", "lenet5", "conv64"],
                   help="conv: cases among conv1d,lenet5,conv64")
    p.add_argument("--torch-threads", type=int, help="PyTorch threads (default: every core)")
    p.add_argument("--no-torch", action="store_true", help="backends: leave PyTorch out")
    p.add_argument("--twin", action=argparse.BooleanOptionalAction, default=True,
                   help="backends: PyTorch runs net.to_torch(), xpnet's twin with the same weights, and the first-step "
                        "losses are compared (default); --no-twin lets PyTorch initialise its own weights")
    p.add_argument("--no-c", action="store_true", help="fd-vs-bp: leave the C baselines out")
    p.add_argument("--no-cold-start", action="store_true", help="backends: leave the cold-start runs out")
    p.add_argument("--ranks", type=lambda text: [int(n) for n in _names(text)], default=[1, 2],
                   help="distributed: comma-separated MPI rank counts, each run with mpiexec -n N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="write every figure and the machine description to this file")
    p.add_argument("--plot", metavar="PATH", help="scaling: write the log-log plot (PNG; needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run_command)


def run_command(args):
    """Run the benchmarks ``args`` ask for; print the tables; write JSON and plot. Returns the exit code."""
    from ..errors import ConfigError, XpnetError, lookup
    from . import coldstart, common, conv, distributed, estimators, fd_vs_bp, scaling, throughput

    for size in args.sizes:
        lookup("benchmark size", size, throughput.CASES)
    for case in args.cases:
        lookup("conv benchmark case", case, conv.CASES)
    if args.repeats < 1 or args.min_time < 0 or args.max_seconds <= 0:
        raise ConfigError("--repeats must be ≥ 1, --min-time ≥ 0 and --max-seconds > 0")
    log = common.quiet if args.quiet else common.stderr_log
    which = ("fd-vs-bp", "scaling", "backends") if args.which == "all" else (args.which,)
    report = {"machine": common.machine(),
              "options": {k: v for k, v in vars(args).items() if k != "func" and v is not None}}
    tables = ["## xpnet benchmarks", "", *common.machine_lines(report["machine"])]
    if "fd-vs-bp" in which:
        report["fd_vs_bp"] = fd_vs_bp.run(args.backend, iterations=args.iterations, max_seconds=args.max_seconds,
                                          c=not args.no_c, seed=args.seed, log=log, repeats=args.repeats)
        tables += ["", fd_vs_bp.table(report["fd_vs_bp"])]
    if "scaling" in which:
        report["scaling"] = scaling.run(args.backend, max_params=args.max_params, min_time=args.min_time,
                                        repeats=args.repeats, max_seconds=args.max_seconds, seed=args.seed, log=log)
        tables += ["", scaling.table(report["scaling"])]
    if "backends" in which:
        report["backends"] = throughput.run(args.backend, sizes=args.sizes, min_time=args.min_time,
                                            repeats=args.repeats, pytorch=not args.no_torch,
                                            torch_threads=args.torch_threads, seed=args.seed, log=log,
                                            twin=args.twin)
        tables += ["", throughput.table(report["backends"])]
        if not args.no_cold_start:
            report["cold_start"] = coldstart.run(args.backend, log=log)
            tables += ["", coldstart.table(report["cold_start"])]
    if "sklearn" in which:
        report["sklearn"] = estimators.run(args.backend, repeats=args.repeats, log=log)
        tables += ["", estimators.table(report["sklearn"])]
    if "conv" in which:
        report["conv"] = conv.run(args.backend, cases=args.cases, min_time=args.min_time, repeats=args.repeats,
                                  pytorch=not args.no_torch, seed=args.seed, log=log)
        tables += ["", conv.table(report["conv"])]
    if "distributed" in which:
        report["distributed"] = distributed.run(args.backend, ranks=args.ranks, min_time=args.min_time,
                                                repeats=args.repeats, seed=args.seed, log=log)
        tables += ["", distributed.table(report["distributed"])]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        log(f"wrote {args.json}")
    if args.plot:
        if "scaling" not in report:
            log("--plot draws the scaling benchmark, which did not run: no plot")
        else:
            try:
                scaling.plot(report["scaling"], args.plot)
                log(f"wrote {args.plot}")
            except XpnetError as e:  # matplotlib missing: the figures are worth more than the picture
                print(f"xpnet: note: {e}", file=sys.stderr)
    print("\n".join(tables))
    return 0
