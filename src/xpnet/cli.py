"""The ``xpnet`` command line (also ``python -m xpnet``)."""
import argparse
import sys

import numpy as np

from . import __version__, backends, datasets, errors

DATASETS = ("spirals", "circles", "moons", "xor", "digits", "mnist")


def _int_list(text):
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 2,16,16,2, got {text!r}") from None


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
        try:
            table = np.loadtxt(name, delimiter=",", ndmin=2)
        except (OSError, ValueError) as e:
            raise errors.DataError(f"cannot read {name} as a numeric CSV file (last column = label): {e}") from None
        X, y = table[:, :-1], table[:, -1]
        if not np.all(y == np.round(y)) or y.min() < 0:
            raise errors.DataError(f"{name}: the last column must hold class labels 0, 1, 2, ...")
        y = y.astype(np.int64)
    return X, y, "softmax_ce", int(y.max()) + 1


def cmd_train(args):
    import xpnet as xn

    X, y, loss, n_classes = load_data(args.data, args.seed, args.mnist_path)
    layers = args.layers or [X.shape[1], 16, 16, n_classes or y.shape[1]]
    if layers[0] != X.shape[1]:
        raise errors.ShapeError(f"--layers starts with {layers[0]} inputs, the data has {X.shape[1]} features")
    if args.data == "xor":
        train, val, test = (X, y), None, None
    else:
        train, val, test = datasets.train_val_test_split(X, y, val=0.15, test=0.15, seed=args.seed)
        scaler = datasets.Standardizer().fit(train[0])
        train, val, test = [(scaler.transform(a), b) for a, b in (train, val, test)]
    net = xn.MLP(layers, activation=args.activation, seed=args.seed, backend=args.backend)
    optimizer = xn.optim.get(args.optimizer, lr=args.lr)
    print(f"xpnet {__version__}: {args.data}, {len(train[0])} training samples, {net.summary().splitlines()[0]}",
          file=sys.stderr)
    history = net.fit(*train, loss=loss, optimizer=optimizer, epochs=args.epochs, batch_size=args.batch_size,
                      validation_data=val, progress=not args.quiet, seed=args.seed)
    for name, part in (("train", train), ("validation", val), ("test", test)):
        if part is not None:
            result = net.evaluate(*part, loss=loss)
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.items())
            print(f"{name:>10}: {metrics}")
    if history.interrupted:
        print("interrupted: the net keeps its last completed epoch", file=sys.stderr)
    if args.save:
        net.save(args.save)
        print(f"saved {args.save}", file=sys.stderr)
    return 0


def cmd_info(args):
    import xpnet as xn

    print(f"xpnet {xn.__version__}, Python {sys.version.split()[0]}, NumPy {np.__version__}")
    for row in backends.describe():
        details = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("name", "usable", "reason", "install"))
        status = f"yes  {details}" if row["usable"] else f"no   {row['reason']} ({row['install']})"
        print(f"  {row['name']:<17} {status}")
    print(f"  auto → {backends.resolve('auto')}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="xpnet", description="Neural networks with backprop written by hand.")
    parser.add_argument("--version", action="version", version=f"xpnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train an MLP on built-in data or a CSV file",
                           description="Train an MLP and print train/validation/test metrics.")
    train.add_argument("--data", default="spirals", help=f"one of {', '.join(DATASETS)}, or a CSV path "
                                                         "(last column = class label); default spirals")
    train.add_argument("--mnist-path", help="folder with the MNIST IDX files (for --data mnist)")
    train.add_argument("--layers", type=_int_list, help="layer sizes, e.g. 2,16,16,2 (default: inputs,16,16,classes)")
    train.add_argument("--activation", default="tanh", help="hidden activation (default tanh)")
    train.add_argument("--optimizer", default="adam", help="sgd, rmsprop or adam (default adam)")
    train.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    train.add_argument("--epochs", type=int, default=100, help="default 100")
    train.add_argument("--batch-size", type=int, default=32, help="default 32")
    train.add_argument("--backend", default="auto", help="numpy, numba, cupy, ... or auto (default)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--save", help="write the trained model to this .npz file")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    info = sub.add_parser("info", help="versions, backends and why any is unusable")
    info.set_defaults(func=cmd_info)

    from .bench import register as register_bench  # light: the benchmarks load when `xpnet bench` runs

    register_bench(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except errors.XpnetError as e:
        print(f"xpnet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xpnet: interrupted", file=sys.stderr)
        return 130
