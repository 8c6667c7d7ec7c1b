"""What drawing costs: training throughput of the playground's worker (frames on) against ``fit`` alone.

The worker trains the page's default network (spirals, 500 points, 2-16-16-2 tanh,
Adam, batch 32) with xpnet's fit and, every 100 ms, computes a frame (the 60×60
boundary, curve points, counters) and JSON-encodes it as the server does. At full
size it trains 500 epochs each way, best of 5, and prints the overhead and the
frame rate; the goal is an overhead under 20 %::

    python -m pytest benchmarks/test_playground.py --bench-size=full -s
"""
import json
import time

import pytest

pytest.importorskip("starlette", reason="the playground needs pip install -e '.[playground]'")
from xpnet.playground.session import LOSS, Session  # noqa: E402


def fit_alone(session, epochs):
    """Seconds for ``epochs`` epochs of fit on the session's data, with its settings, and no frames."""
    train, val = ~session.held_out, session.held_out
    start = time.perf_counter()
    session.net.fit(session.X[train], session.y[train], loss=LOSS, optimizer=session.optimizer, epochs=epochs,
                    batch_size=session.settings["batch_size"], validation_data=(session.X[val], session.y[val]),
                    progress=False, seed=0)
    return time.perf_counter() - start


def with_frames(session, epochs, sent):
    """Seconds for ``epochs`` epochs of the playground's worker, every frame encoded as the server sends it."""
    session.post = lambda message: sent.append(json.dumps(message))
    start = time.perf_counter()
    session.train(epochs)
    return time.perf_counter() - start


def test_frames_cost_little_against_fit_alone(backend, full):
    epochs, repeats = (500, 5) if full else (5, 1)  # interleaved, best of each: other load on the machine hits both
    alone, drawn, rates = [], [], []
    for _ in range(repeats):
        alone.append(fit_alone(Session(None, backend), epochs))
        sent: list = []
        session = Session(None, backend)
        drawn.append(with_frames(session, epochs, sent))
        frames = [json.loads(m) for m in sent if '"type": "frame"' in m]
        assert session.epoch == epochs and sum(len(f["curves"]) for f in frames) == epochs  # every epoch drawn
        assert frames[-1]["running"] is False
        rates.append((len(frames) - 1) / drawn[-1])  # the last frame is the one sent on stopping
    overhead = min(drawn) / min(alone) - 1
    print(f"\nplayground on {backend}, {epochs} epochs: fit alone {min(alone):.3f} s, with frames {min(drawn):.3f} s "
          f"(overhead {overhead:+.1%}), {max(rates):.1f} frames/s")
    if full:
        assert overhead < 0.20
        assert max(rates) >= 9.0
