"""The ``xpnet`` command line (also ``python -m xpnet``): info, train, predict, gradcheck, explain, race, warmup,
playground.

Every command has ``--help``. Errors are one line on stderr and a non-zero
exit code: 2 for a bad command or input, 1 when ``gradcheck`` finds
backprop and finite differences disagree.
"""
import argparse
import importlib.metadata
import math
import os
import sys
import time

import numpy as np

from . import __version__, allocator, backends, checkpoint, datasets, errors, network

DATASETS = ("spirals", "circles", "moons", "xor", "digits", "mnist")
LOSS_NAMES = ("mse", "bce", "bce_logits", "softmax_ce")
OPTIONAL = {"numba": "numba", "scipy": "scipy", "matplotlib": "matplotlib", "scikit-learn": "scikit-learn",
            "torch": "torch", "array-api-strict": "array-api-strict", "cupy": ("cupy-cuda13x", "cupy-cuda12x"),
            "mpi4py": "mpi4py"}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point at --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _int_list(text):
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 2,16,16,2, got {text!r}") from None


def read_csv(path):
    """A 2-D float array from a numeric CSV file; a first line of column names is skipped."""
    if not os.path.isfile(path):
        raise errors.DataError(f"no such file: {path}")
    try:
        return np.loadtxt(path, delimiter=",", ndmin=2)
    except ValueError as first:
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2, skiprows=1)
        except ValueError:
            raise errors.DataError(f"cannot read {path} as a numeric CSV file: {first}") from None


def load_data(name, seed, mnist_path=None):
    """(X, y, loss name, n_classes) for a built-in data set or a CSV file (last column = label)."""
    if name == "xor":
        X, y = datasets.xor()
        return X, y, "mse", None
    if name in ("spirals", "circles", "moons"):
        X, y = getattr(datasets, name)(seed=seed)
    elif name == "digits":
        X, y = datasets.digits()
    elif name == "mnist":
        X, y = datasets.mnist(mnist_path or ".")
    else:
        if not os.path.exists(name) and not name.endswith(".csv"):
            errors.lookup("data set (or a CSV file path)", name, dict.fromkeys(DATASETS))
        table = read_csv(name)
        X, y = table[:, :-1], table[:, -1]
        if not np.all(y == np.round(y)) or y.min() < 0:
            raise errors.DataError(f"{name}: the last column must hold class labels 0, 1, 2, ...")
        y = y.astype(np.int64)
    return X, y, "softmax_ce", int(y.max()) + 1


def random_problem(sizes, loss, n, seed):
    """n random inputs for a net of ``sizes`` and targets that suit ``loss`` (for gradcheck and explain)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0]))
    if loss == "softmax_ce":
        return X, rng.integers(0, sizes[-1], n)
    if loss in ("bce", "bce_logits"):
        return X, rng.integers(0, 2, (n, sizes[-1])).astype(float)
    return X, rng.standard_normal((n, sizes[-1]))


def _check_writable(path):
    folder = os.path.dirname(os.path.abspath(path)) if path else None
    if folder and not os.path.isdir(folder):
        raise errors.ConfigError(f"cannot write {path}: the folder {folder} does not exist")


def _say(*parts):
    print(*parts, file=sys.stderr)


# ---- info ---------------------------------------------------------------------------


def cmd_info(args):
    print(f"xpnet {__version__}, Python {sys.version.split()[0]}, NumPy {np.__version__}")
    print("backends:")
    for row in backends.describe():
        details = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("name", "usable", "reason", "install"))
        status = f"yes  {details}" if row["usable"] else f"no   {row['reason']} (to fix: {row['install']})"
        print(f"  {row['name']:<17} {status}")
    print(f"  auto → {backends.resolve('auto')}")
    found = []
    for label, dists in OPTIONAL.items():
        for dist in (dists,) if isinstance(dists, str) else dists:
            try:
                found.append(f"{label} {importlib.metadata.version(dist)}")
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        else:
            found.append(f"{label} -")
    print(f"optional libraries: {', '.join(found)}")
    return 0


# ---- train and predict ----------------------------------------------------------------


def cmd_train(args):
    import xpnet as xn

    for path in (args.save, args.plot):  # fail before training, not after
        _check_writable(path)
    if args.plot:
        from . import plot

        plot.require()
    X, y, loss, n_classes = load_data(args.data, args.seed, args.mnist_path)
    image = image_shape(args.data, X) if args.model == "lenet" else None
    layers = args.layers or [X.shape[1], 16, 16, n_classes or y.shape[1]]
    if layers[0] != X.shape[1]:
        raise errors.ShapeError(f"--layers starts with {layers[0]} inputs, the data has {X.shape[1]} features")
    scaler = None
    if args.data == "xor":
        train, val, test = (X, y), None, None
    else:
        train, val, test = datasets.train_val_test_split(X, y, val=0.15, test=0.15, seed=args.seed)
        scaler = datasets.Standardizer().fit(train[0])
        train, val, test = [(scaler.transform(a), b) for a, b in (train, val, test)]
    if image is None:
        net = xn.MLP(layers, activation=args.activation, seed=args.seed, backend=args.backend)
    else:  # the same standardised pixels, as (samples, 1, height, width) images
        train, val, test = [(a.reshape(-1, *image), b) for a, b in (train, val, test)]
        net = xn.models.lenet(image, classes=n_classes, activation=args.activation, seed=args.seed,
                              backend=args.backend)
    optimizer = xn.optim.get(args.optimizer, lr=args.lr)
    _say(f"xpnet {__version__}: {args.data}, {len(train[0])} training samples, {net.summary().splitlines()[0]}")
    batch_size = min(args.batch_size, len(train[0]))  # xor has 4 samples: full batch, no warning
    history = net.fit(*train, loss=loss, optimizer=optimizer, epochs=args.epochs, batch_size=batch_size,
                      validation_data=val, progress=not args.quiet, seed=args.seed)
    for name, part in (("train", train), ("validation", val), ("test", test)):
        if part is not None:
            result = net.evaluate(*part, loss=loss)
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.items())
            print(f"{name:>10}: {metrics}")
    if history.history.get("samples_per_sec"):
        _say(f"{np.median(history.history['samples_per_sec']):,.0f} training samples/s (median over epochs)")
    if history.interrupted:
        _say("interrupted: the net keeps its last completed epoch")
    if args.save:
        extra = {"loss": loss, "data": args.data}
        if scaler is not None:
            extra["standardize"] = {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()}
        net.save(args.save, extra=extra)
        _say(f"saved {args.save}")
    if args.plot:
        plot.training(net, history, X, y, path=args.plot, transform=scaler.transform if scaler else None)
        _say(f"wrote {args.plot}")
    return 0


def image_shape(data, X):
    """(1, side, side) for the square grey images of digits and mnist; ConfigError for other data."""
    side = math.isqrt(X.shape[1])
    if data not in ("digits", "mnist") or side * side != X.shape[1]:
        raise errors.ConfigError(f"--model lenet takes images (--data digits or mnist), got --data {data}")
    return (1, side, side)


def cmd_predict(args):
    import xpnet as xn

    net = xn.load(args.model, backend=args.backend)
    extra = checkpoint.load(args.model)[2]
    table = read_csv(args.data)
    labels = None
    if table.shape[1] == net.n_inputs + 1:
        table, labels = table[:, :-1], table[:, -1]
    elif table.shape[1] != net.n_inputs:
        raise errors.ShapeError(f"{args.data} has {table.shape[1]} columns; the model takes {net.n_inputs} "
                                f"features (optionally followed by a label column)")
    if "standardize" in extra:  # the scaling `xpnet train` fitted on its training data
        table = (table - np.array(extra["standardize"]["mean"])) / np.array(extra["standardize"]["scale"])
    loss = xn.losses.get(extra.get("loss") or ("softmax_ce" if net.n_outputs > 1 else "mse"))
    outputs = net.predict(table)
    if args.proba:
        rows = loss.probabilities(outputs)
    elif loss.classifier:
        rows = outputs.argmax(axis=1) if net.n_outputs > 1 else (loss.probabilities(outputs)[:, 0] > 0.5)
        rows = rows.astype(np.int64)[:, None]
    else:
        rows = outputs
    for row in rows:
        print(",".join(f"{v:.6g}" if rows.dtype.kind == "f" else str(v) for v in row))
    if labels is not None and loss.classifier and not args.proba:
        _say(f"accuracy against the last column: {np.mean(rows[:, 0] == labels):.4f}")
    return 0


# ---- seeing backprop ------------------------------------------------------------------


def cmd_gradcheck(args):
    import xpnet as xn

    output = args.output_activation or ("sigmoid" if args.loss == "bce" else "identity")
    net = xn.MLP(args.layers, activation=args.activation, output_activation=output, dtype="float64",
                 seed=args.seed, backend=args.backend)
    X, y = random_problem(args.layers, args.loss, args.samples, args.seed)
    result = xn.gradcheck(net, args.loss, X, y, eps=args.eps)
    print(f"gradcheck: MLP {'→'.join(map(str, args.layers))}, {args.activation} hidden, {output} output, "
          f"{args.loss}, {args.samples} random samples, float64 on {net.backend.name}")
    print(f"backprop against central finite differences (eps {args.eps:g}); error = max|Δ| / max|gradient|")
    for k in range(len(args.layers) - 1):
        print(f"  layer {k}:  {k}.W {result[f'{k}.W']:.2e}   {k}.b {result[f'{k}.b']:.2e}")
    worst = max(result.values())
    verdict = "backprop agrees" if worst <= args.tol else "FAILED: backprop and finite differences disagree"
    print(f"largest error {worst:.2e} ({'≤' if worst <= args.tol else '>'} tolerance {args.tol:g}): {verdict}")
    return 0 if worst <= args.tol else 1


def cmd_explain(args):
    import xpnet as xn

    if args.model == "lenet":  # one 8×8 digit through xn.models.lenet: the conv layers' z, δ and ∂W
        X, target = datasets.digits(images=True)
        net = xn.models.lenet((1, 8, 8), activation=args.activation, dtype="float64", seed=args.seed,
                              backend=args.backend)
        print(f"digit {args.sample} of the digits data (an 8×8 image, class {target[args.sample]})\n")
        print(xn.trace(net, "softmax_ce", X[args.sample:args.sample + 1] / 16.0, target[args.sample:args.sample + 1]))
        return 0
    output = args.output_activation or ("sigmoid" if args.loss in ("mse", "bce") else "identity")
    net = xn.MLP(args.layers, activation=args.activation, output_activation=output, init=args.init,
                 dtype="float64", seed=args.seed, backend=args.backend)
    if args.layers[0] == 2:
        X, target = datasets.xor()
        if not 0 <= args.sample < 4:
            raise errors.ConfigError(f"--sample picks one of the 4 XOR points: 0, 1, 2 or 3, got {args.sample}")
        x, label = X[args.sample:args.sample + 1], int(target[args.sample, 0])
        y = np.array([label]) if args.loss == "softmax_ce" else np.full((1, args.layers[-1]), float(label))
        print(f"XOR sample {args.sample}: x = ({x[0, 0]:g}, {x[0, 1]:g}), class {label}\n")
    else:
        x, y = random_problem(args.layers, args.loss, 1, args.seed)
        print(f"one random sample (seed {args.seed})\n")
    print(xn.trace(net, args.loss, x, y))
    return 0


def cmd_export(args):
    network.load(args.model, backend="numpy").export_onnx(args.out)
    print(f"wrote {args.out} (ONNX, inference mode, batch axis symbolic)")


def cmd_convert(args):
    config, arrays, extra = checkpoint.load(args.model)
    checkpoint.save(args.out, config, arrays, extra=extra)
    print(f"wrote {args.out}")


def cmd_race(args):
    from . import race

    surfaces = list(race.SURFACES) if args.surface == "all" else [args.surface]
    for name in surfaces:
        errors.lookup("surface", name, race.SURFACES)
    _check_writable(args.plot)
    if args.plot:
        from . import plot

        plot.require()
    paths = {name: race.race(name, steps=args.steps, backend=args.backend) for name in surfaces}
    for name, runs in paths.items():
        surface = race.SURFACES[name]
        print(f"{name}: {surface.formula}; start {surface.start}, {args.steps} steps")
        for (label, optimizer), p in zip(surface.optimizers().items(), runs.values()):
            distances = [race.distance_to_minimum(surface, q) for q in p]
            reached = next((i for i, d in enumerate(distances) if d < args.within), None)
            when = f"within {args.within:g} of a minimum at step {reached}" if reached is not None else \
                f"never within {args.within:g} of a minimum"
            settings = ", ".join(f"{k} {v:g}" for k, v in optimizer.config().items() if k in ("lr", "momentum") and v)
            print(f"  {label:<9} {settings:<22} ends at ({p[-1, 0]:+.4f}, {p[-1, 1]:+.4f}), "
                  f"f = {surface.value(np, *p[-1]):.3g}; {when}")
    if args.plot:
        plot.races(paths, path=args.plot)
        _say(f"wrote {args.plot}")
    return 0


def cmd_playground(args):
    from . import optional

    for module in ("starlette", "uvicorn"):
        optional.require(module)
    if not 0 < args.port < 65536:
        raise errors.ConfigError(f"--port must be a port number from 1 to 65535, got {args.port}")
    from .playground import controls, server

    try:
        backend = controls.check("backend", backends.resolve(args.backend))
    except controls.ControlError as e:
        raise errors.BackendUnavailableError(f"--backend {e}") from None
    if args.host is not None:
        _say(f"warning: serving on {args.host}: anyone who can reach it can use this machine's CPU through the "
             "playground, which has no login; the default 127.0.0.1 serves this machine only")
    host = args.host or "127.0.0.1"
    print(f"xpnet playground on {backend}: http://{host}:{args.port}/  (Ctrl-C stops)", flush=True)
    server.serve(host, args.port, backend)
    return 0


# ---- the parser -------------------------------------------------------------------------


def cmd_warmup(args):
    from .steps import warmup

    if "numba" not in backends.available():
        raise errors.BackendUnavailableError("xpnet warmup compiles numba's steps, and numba is not usable here: "
                                             "pip install -e '.[numba]'")
    for dtype in args.dtype:
        if dtype not in warmup.DTYPES:
            raise errors.ConfigError(f"--dtype takes float32 and float64, got {dtype!r}")
    if args.jobs is not None and args.jobs < 1:
        raise errors.ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    start = time.perf_counter()
    count = warmup.warmup(args.dtype, args.jobs, log=_say)
    print(f"compiled {count} sets (the fused step's variants and the layers' kernels) in "
          f"{time.perf_counter() - start:.3g} s")
    return 0


def _net_arguments(cmd, layers, activation, loss):
    cmd.add_argument("--layers", type=_int_list, default=layers, help=f"layer sizes (default {layers_text(layers)})")
    cmd.add_argument("--activation", default=activation, help=f"hidden activation (default {activation})")
    cmd.add_argument("--loss", default=loss, choices=LOSS_NAMES, help=f"default {loss}")
    cmd.add_argument("--backend", default="numpy", help="numpy, numba, torch, ... (default numpy)")
    cmd.add_argument("--seed", type=int, default=0, help="seeds the weights and the data (default 0)")


def layers_text(layers):
    return ",".join(map(str, layers))


def build_parser():
    parser = Parser(prog="xpnet", description="Neural networks with backprop written by hand.")
    parser.add_argument("--version", action="version", version=f"xpnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    info = sub.add_parser("info", help="versions, backends (usable or why not), devices, BLAS",
                          description="Versions, every backend with usable yes/no and the reason, and its details.")
    info.set_defaults(func=cmd_info)

    train = sub.add_parser("train", help="train an MLP on built-in data or a CSV file",
                           description="Train an MLP and print train/validation/test metrics "
                                       "(70/15/15 split, inputs standardised on the training part).")
    train.add_argument("--data", default="spirals", help=f"one of {', '.join(DATASETS)}, or a CSV path "
                                                         "(last column = class label); default spirals")
    train.add_argument("--mnist-path", help="folder with the MNIST IDX files (for --data mnist)")
    train.add_argument("--model", default="mlp", choices=("mlp", "lenet"),
                       help="mlp (default; sized by --layers) or lenet, the convnet of xn.models.lenet (images only)")
    train.add_argument("--layers", type=_int_list, help="layer sizes, e.g. 2,16,16,2 (default: inputs,16,16,classes)")
    train.add_argument("--activation", default="tanh", help="hidden activation (default tanh)")
    train.add_argument("--optimizer", default="adam", help="sgd, rmsprop or adam (default adam)")
    train.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    train.add_argument("--epochs", type=int, default=100, help="default 100")
    train.add_argument("--batch-size", type=int, default=32, help="default 32")
    train.add_argument("--backend", default="auto", help="numpy, numba, cupy, ... or auto (default)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--save", metavar="MODEL.npz", help="write the trained model (and its input scaling) here")
    train.add_argument("--plot", metavar="OUT.png", help="write the decision boundary and the training curves here")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser("predict", help="predict with a saved model, one line per CSV row",
                             description="Print one prediction per row of a CSV file: the class, its probabilities "
                                         "(--proba) or the output values. A trailing label column is used to "
                                         "report accuracy.")
    predict.add_argument("model", help="a model saved by `xpnet train --save` or net.save()")
    predict.add_argument("data", help="CSV file, one sample per row")
    predict.add_argument("--proba", action="store_true", help="print class probabilities instead of classes")
    predict.add_argument("--backend", default="numpy", help="default numpy")
    predict.set_defaults(func=cmd_predict)

    gradcheck = sub.add_parser("gradcheck", help="backprop against finite differences, layer by layer",
                               description="Compare backprop with central finite differences in float64 on "
                                           "random data; exit code 1 if they disagree.")
    _net_arguments(gradcheck, [2, 8, 8, 2], "tanh", "softmax_ce")
    gradcheck.add_argument("--output-activation", help="default sigmoid for bce, identity otherwise")
    gradcheck.add_argument("--samples", type=int, default=8, help="random samples (default 8)")
    gradcheck.add_argument("--eps", type=float, default=1e-6, help="finite-difference step (default 1e-6)")
    gradcheck.add_argument("--tol", type=float, default=1e-6, help="largest relative error allowed (default 1e-6)")
    gradcheck.set_defaults(func=cmd_gradcheck)

    explain = sub.add_parser("explain", help="show one forward and backward pass, equation by equation",
                             description="Print z, a, δ, ∂b and ∂W of every layer for one sample, labelled "
                                         "BP1–BP4 (xn.trace). A net with 2 inputs gets an XOR point.")
    _net_arguments(explain, [2, 2, 1], "sigmoid", "mse")
    explain.add_argument("--output-activation", help="default sigmoid for mse and bce, identity otherwise")
    explain.add_argument("--init", default="auto", help="weight initialiser (default auto)")
    explain.add_argument("--sample", type=int, default=1, help="which XOR point, 0-3 (default 1: (0, 1) → 1); "
                                                               "with --model lenet, which digit image")
    explain.add_argument("--model", default="mlp", choices=("mlp", "lenet"),
                         help="mlp (default, sized by --layers) or lenet on one digit image")
    explain.set_defaults(func=cmd_explain)

    export = sub.add_parser("export", help="write a saved model as ONNX (needs pip install -e '.[onnx]')")
    export.add_argument("model", help="a saved model (.npz or .safetensors)")
    export.add_argument("out", help="the ONNX file to write, e.g. model.onnx")
    export.set_defaults(func=cmd_export)

    convert = sub.add_parser("convert", help="rewrite a saved model in another format (.npz, .safetensors)")
    convert.add_argument("model", help="a saved model (.npz or .safetensors)")
    convert.add_argument("out", help="the file to write; its suffix picks the format")
    convert.set_defaults(func=cmd_convert)

    race = sub.add_parser("race", help="SGD, momentum, RMSProp and Adam on Rosenbrock and a saddle",
                          description="Run xpnet's optimisers on 2-parameter surfaces from one start point.")
    race.add_argument("--surface", default="all", help="rosenbrock, saddle or all (default)")
    race.add_argument("--steps", type=int, default=2000, help="default 2000")
    race.add_argument("--within", type=float, default=0.05, help="distance that counts as arrived (default 0.05)")
    race.add_argument("--backend", default="numpy", help="default numpy")
    race.add_argument("--plot", metavar="OUT.png", help="draw the paths over the surfaces' contours")
    race.set_defaults(func=cmd_race)

    warm = sub.add_parser("warmup", help="compile numba's training steps ahead of time, into numba's cache",
                          description="Compile every variant of numba's fused training step, and the kernels "
                                      "that layer-by-layer steps (convnets) call, in float32 and float64, "
                                      "into numba's on-disk cache, so that no later run waits for a compile: for "
                                      "container images and CI. It takes a while (256 variants a dtype: 16 minutes "
                                      "for float32 on a 2-core AMD EPYC) and prints a line per compile. "
                                      "NUMBA_CACHE_DIR says where the cache lives.")
    warm.add_argument("--jobs", type=int, help="processes compiling side by side (default: every core)")
    warm.add_argument("--dtype", type=lambda text: [t.strip() for t in text.split(",") if t.strip()],
                      default=["float32", "float64"], help="comma-separated, default float32,float64")
    warm.set_defaults(func=cmd_warmup)

    play = sub.add_parser("playground", help="train in a browser: the boundary, the curves and BP1–BP4 live",
                          description="Serve the playground page on this machine: pick data (click to add points), "
                                      "the network and the optimiser, train on an xpnet backend and watch the "
                                      "decision boundary and the curves; paused, click a point to see its trace. "
                                      "Needs pip install -e '.[playground]'.")
    play.add_argument("--port", type=int, default=8765, help="default 8765")
    play.add_argument("--backend", default="numpy", help="the backend a new tab starts on (default numpy)")
    play.add_argument("--host", help="the address to serve on (default 127.0.0.1, this machine only; "
                                     "any other prints a warning)")
    play.set_defaults(func=cmd_playground)

    from .bench import register as register_bench  # light: the benchmarks load when `xpnet bench` runs

    register_bench(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if os.environ.get("XPNET_MALLOC", "heap") != "default":  # see xpnet.allocator: no page faults per step
        allocator.reuse_freed_memory()
    try:
        return args.func(args)
    except errors.XpnetError as e:
        message = " ".join(str(e).split())
    except BrokenPipeError:  # `xpnet predict ... | head`: stop quietly, as the Python docs advise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:  # a file we could not write: --save or --plot into a missing folder, say
        message = f"{e.strerror or e}: {e.filename}" if e.filename else str(e)
    except KeyboardInterrupt:
        print("xpnet: interrupted", file=sys.stderr)
        return 130
    print(f"xpnet: error: {message}", file=sys.stderr)
    return 2
