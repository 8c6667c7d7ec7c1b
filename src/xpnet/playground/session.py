"""One browser tab's playground: its data, its network, and training in a worker thread that sends frames.

A frame goes out when one is due (every ``FRAME_SECONDS`` at most, on a
fixed clock), so drawing costs one forward pass of the GRID × GRID plane per
frame, whatever the epoch rate. The worker runs only while the tab trains:
an idle session holds no thread and uses no CPU.
"""
import base64
import os
import tempfile
import threading
import time

import numpy as np

from .. import callbacks, datasets, errors, losses, network, optim, schedules
from ..trace import trace
from . import controls

FRAME_SECONDS = 0.1
TRAIN_EPOCHS = 10**9  # TRAIN runs until PAUSE
CHUNK = 1000  # epochs per call of fit: its History stays small, and its set-up cost is spread thin
VALIDATION = 0.2  # the fraction of a generated data set held out for the validation curves
LOSS = "softmax_ce"
# The plane goes through the net in slices this small so that its matrix products stay on one BLAS thread, as
# training's do: one big product wakes OpenBLAS's other threads, whose spinning afterwards slowed training 2×.
GRID_BATCH = 256


def make_data(name, size, noise, seed=0):
    """(X, y) of ``size`` points of a 2-class data set on the plane; xor is the four corners with noise."""
    if name == "xor":
        corners, targets = datasets.xor()
        rng = np.random.default_rng(seed)
        X = (np.resize(corners, (size, 2)) - 0.5) * 2.0 + rng.normal(0.0, noise, (size, 2))
        return np.clip(X, -controls.EXTENT, controls.EXTENT), np.resize(targets[:, 0], size).astype(np.int64)
    return getattr(datasets, name)(n=size, noise=noise, seed=seed)


def plane(resolution=controls.GRID):
    """The GRID × GRID points where the boundary is drawn, row by row from the top (y = +EXTENT)."""
    axis = np.linspace(-controls.EXTENT, controls.EXTENT, resolution)
    xx, yy = np.meshgrid(axis, axis[::-1])
    return np.column_stack([xx.ravel(), yy.ravel()])


def learning_rate(name, lr, steps_per_epoch):
    """The page's schedule as an optimiser's lr: a number (constant) or an xn.schedules object from ``lr``."""
    if name == "step":  # halve every 50 epochs
        return schedules.Step(step_size=50 * steps_per_epoch, gamma=0.5, lr=lr)
    if name == "cosine":  # 5 epochs of warm-up, then down to 0 at epoch 200
        return schedules.Cosine(total=200 * steps_per_epoch, warmup=5 * steps_per_epoch, lr=lr)
    if name == "plateau":  # halve when the training loss has not improved for 10 epochs
        return schedules.ReduceOnPlateau(factor=0.5, patience=10, monitor="loss", lr=lr)
    return lr


class Session:
    """The state of one tab. ``post(message)`` must be safe to call from the worker thread."""

    def __init__(self, post, backend="numpy"):
        self.post = post
        self.settings = controls.defaults(backend)
        self.grid = plane()
        self.worker, self.training = None, False
        self.stopping = threading.Event()
        self.generate()
        self.build()

    # ---- state the controls change --------------------------------------------------------

    def generate(self):
        """New points from the data set controls; the last VALIDATION of them are the validation points."""
        s = self.settings
        X, y = make_data(s["dataset"], s["size"], s["noise"])
        order = np.random.default_rng(1).permutation(len(X))
        self.X, self.y = X[order], y[order]
        self.held_out = np.arange(len(X)) >= round(len(X) * (1 - VALIDATION))

    def build(self):
        """A fresh network and optimiser from the controls; the epoch count and curves start again."""
        s = self.settings
        self.net = network.MLP([2, *s["hidden"], 2], activation=s["activation"], dropout=s["dropout"], seed=0,
                               backend=s["backend"])
        self.optimizer = self.make_optimizer()
        self.epoch, self.curves, self.samples_per_sec = 0, [], 0.0

    def make_optimizer(self):
        s = self.settings
        steps_per_epoch = max(-(-int((~self.held_out).sum()) // s["batch_size"]), 1)
        lr = learning_rate(s["schedule"], s["lr"], steps_per_epoch)
        return optim.OPTIMIZERS[s["optimizer"]](lr=lr, weight_decay=s["weight_decay"])

    def set(self, control, value):
        """Apply a checked control value: data controls regenerate the points, network controls rebuild the net."""
        self.settings[control] = value
        if control in ("dataset", "noise", "size"):
            self.generate()
        elif control in ("hidden", "activation", "dropout"):
            self.build()
        elif control == "backend":
            self.net.to(value)
            self.optimizer.to(self.net.backend)
        else:  # optimiser, rate, schedule, batch size, weight decay: the weights stay, the optimiser starts anew
            self.optimizer = self.make_optimizer()

    def add_point(self, x, y, label):
        if len(self.X) >= controls.MAX_POINTS:
            raise controls.ControlError(f"the plane holds at most {controls.MAX_POINTS} points")
        self.X = np.vstack([self.X, [[x, y]]])
        self.y = np.append(self.y, label)
        self.held_out = np.append(self.held_out, False)  # a clicked point is training data

    def clear(self):
        self.X, self.y, self.held_out = np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros(0, bool)

    def points(self):
        return {"type": "points", "points": [[round(float(a), 4), round(float(b), 4), int(c), bool(v)]
                                             for (a, b), c, v in zip(self.X, self.y, self.held_out)]}

    # ---- training ---------------------------------------------------------------------

    @property
    def running(self):
        """True from start() until the worker has trained its last epoch (it may still be sending its last frame)."""
        return self.training

    def start(self, epochs):
        """Train ``epochs`` epochs (TRAIN_EPOCHS: until stop()) in a worker thread; a message if there is no data."""
        if self.running:
            return
        train = ~self.held_out
        if not train.any():
            raise controls.ControlError("there are no training points: pick a data set or click on the plane")
        if self.worker is not None:
            self.worker.join()  # a worker that has trained its last epoch ends at once
        self.stopping.clear()
        self.training = True
        self.worker = threading.Thread(target=self.train, args=(epochs,), name="xpnet-playground", daemon=True)
        self.worker.start()

    def stop(self):
        """Ask the worker to stop after its current epoch and wait for it (call from a thread that may block)."""
        self.stopping.set()
        if self.worker is not None:
            self.worker.join()
        self.worker = None

    def train(self, epochs):
        """The worker: xpnet's own fit, in calls of at most CHUNK epochs, with a callback that stops on request
        and sends a frame when one is due."""
        train, val = ~self.held_out, self.held_out
        X, y = self.X[train], self.y[train]
        validation = (self.X[val], self.y[val]) if val.any() else None
        batch_size = min(self.settings["batch_size"], len(X))
        due = time.perf_counter() + FRAME_SECONDS

        def epoch_end(epoch, logs):
            nonlocal due
            self.epoch += 1
            self.samples_per_sec = logs["samples_per_sec"]
            self.curves.append([self.epoch, *(logs.get(k) for k in ("loss", "accuracy", "val_loss", "val_accuracy"))])
            now = time.perf_counter()
            if now >= due:
                self.post(self.frame())
                due += FRAME_SECONDS * (1 + (now - due) // FRAME_SECONDS)  # the next slot of a 10-per-second clock
            return self.stopping.is_set()

        callback = callbacks.LambdaCallback(on_epoch_end=epoch_end)
        end = self.epoch + epochs
        try:
            while self.epoch < end and not self.stopping.is_set():
                self.net.fit(X, y, loss=LOSS, optimizer=self.optimizer, epochs=min(end - self.epoch, CHUNK),
                             batch_size=batch_size, validation_data=validation, callbacks=[callback],
                             progress=False, seed=self.epoch)
        except errors.XpnetError as e:
            self.post({"type": "error", "message": " ".join(str(e).split())})
        finally:
            self.training = False  # before the last frame, so whoever reads that frame sees training over
            self.post(self.frame(running=False))

    def frame(self, running=True):
        """The boundary (P(class 1) on the plane as bytes 0-255, base64), the new curve points and the counters."""
        probability = losses.get(LOSS).probabilities(self.net.predict(self.grid, batch_size=GRID_BATCH))[:, 1]
        grid = np.round(probability * 255).astype(np.uint8).tobytes()
        curves, self.curves = self.curves, []  # each curve point goes out once
        return {"type": "frame", "running": running, "epoch": self.epoch, "samples_per_sec": self.samples_per_sec,
                "backend": self.net.backend.name, "grid": base64.b64encode(grid).decode("ascii"),
                "curves": curves}

    # ---- seeing and saving -------------------------------------------------------------

    def explain(self, index):
        """xn.trace of one point, as `xpnet explain` prints it (BP1–BP4)."""
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(self.X):
            raise controls.ControlError(f"no point {index!r}: there are {len(self.X)} points")
        x, label = self.X[index:index + 1], self.y[index:index + 1]
        header = f"point {index}: x = ({x[0, 0]:.3g}, {x[0, 1]:.3g}), class {label[0]}\n\n"
        return header + str(trace(self.net, LOSS, x, label))

    def checkpoint(self):
        """The network as an xpnet checkpoint (.npz bytes), written by xpnet's checkpoint code."""
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "playground.npz")
            self.net.save(path, extra={"loss": LOSS, "data": self.settings["dataset"]})
            with open(path, "rb") as f:
                return f.read()
