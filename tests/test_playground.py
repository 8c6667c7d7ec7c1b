"""The playground's server: the session protocol, every control's checks, and clean-up when a tab closes."""
import base64
import gc
import threading
import time
import weakref

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the playground needs pip install -e '.[playground]'")
pytest.importorskip("uvicorn", reason="the playground needs pip install -e '.[playground]'")
from starlette.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

import xpnet as xn  # noqa: E402
from xpnet.cli import main  # noqa: E402
from xpnet.playground import controls, server  # noqa: E402


@pytest.fixture
def app():
    return server.create_app("numpy")


@pytest.fixture
def tab(app):
    """An open tab, after its three opening messages; ``tab.opening`` holds them."""
    with TestClient(app).websocket_connect("/ws") as ws:
        ws.opening = [ws.receive_json() for _ in range(3)]
        yield ws


def until(ws, kind, **fields):
    """The next message of type ``kind`` (with these field values), skipping the others."""
    while True:
        message = ws.receive_json()
        if message["type"] == kind and all(message.get(k) == v for k, v in fields.items()):
            return message


def workers(settle=0.0):
    """The training threads alive, after waiting up to ``settle`` seconds for them to end."""
    deadline = time.monotonic() + settle
    while True:
        alive = [t for t in threading.enumerate() if t.name == "xpnet-playground"]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.01)


# ---- the protocol -----------------------------------------------------------------------------


def test_a_tab_opens_with_its_settings_the_backends_the_points_and_a_frame(tab):
    hello, points, frame = tab.opening
    assert hello["type"] == "hello" and set(hello["settings"]) == set(controls.CONTROLS)
    assert hello["settings"]["backend"] == "numpy" and hello["limits"]["max_points"] == 5000
    rows = {row["name"]: row for row in hello["backends"]}
    assert set(rows) == set(xn.backends.REGISTRY)
    for name, row in rows.items():  # the reasons `xpnet info` gives
        assert row["usable"] == (name in xn.backends.available())
        assert row["reason"] == (xn.backends.unavailable_reason(name) or "")
    assert points["type"] == "points" and len(points["points"]) == 500
    assert sum(p[3] for p in points["points"]) == 100  # a fifth held out for validation
    assert frame["type"] == "frame" and frame["epoch"] == 0 and not frame["running"]
    grid = np.frombuffer(base64.b64decode(frame["grid"]), np.uint8)
    assert grid.size == controls.GRID ** 2 and grid.min() < grid.max()


def test_step_trains_one_epoch_and_sends_its_curve_point(tab):
    tab.send_json({"type": "step"})
    frame = until(tab, "frame", running=False)
    assert frame["epoch"] == 1 and frame["backend"] == "numpy" and frame["samples_per_sec"] > 0
    [[epoch, loss, accuracy, val_loss, val_accuracy]] = frame["curves"]
    assert epoch == 1 and 0 < loss < 1 and 0 <= accuracy <= 1 and val_loss > 0 and 0 <= val_accuracy <= 1


def test_train_streams_frames_until_pause(tab):
    tab.send_json({"type": "train"})
    frames = [until(tab, "frame", running=True) for _ in range(3)]
    epochs = [f["epoch"] for f in frames]
    assert epochs == sorted(set(epochs)) and all(f["curves"] for f in frames)
    assert len(workers()) == 1
    tab.send_json({"type": "pause"})
    last = until(tab, "frame", running=False)
    assert last["epoch"] >= epochs[-1]
    assert not workers(settle=5)  # its last frame goes out just before the thread ends


def test_a_control_change_is_acknowledged_and_applied(app, tab):
    [session] = app.state.sessions
    tab.send_json({"type": "set", "control": "hidden", "value": [4, 3]})
    assert until(tab, "ok") == {"type": "ok", "control": "hidden", "value": [4, 3]}
    assert until(tab, "frame")["epoch"] == 0
    assert session.net.sizes == [2, 4, 3, 2]
    tab.send_json({"type": "set", "control": "size", "value": 40})
    assert len(until(tab, "points")["points"]) == 40
    tab.send_json({"type": "point", "x": 0.5, "y": -0.25, "label": 0})
    assert until(tab, "points")["points"][-1] == [0.5, -0.25, 0, False]
    tab.send_json({"type": "clear"})
    assert until(tab, "points")["points"] == []
    tab.send_json({"type": "train"})
    assert "no training points" in until(tab, "invalid", control="train")["message"]


def test_explain_is_xpnet_explain_s_trace_of_that_point(app, tab):
    [session] = app.state.sessions
    tab.send_json({"type": "explain", "index": 7})
    text = until(tab, "trace")["text"]
    expected = xn.trace(session.net, "softmax_ce", session.X[7:8], session.y[7:8])
    assert text.endswith(str(expected))
    assert all(f"    {tag} " in text for tag in ("BP1", "BP2", "BP3", "BP4"))


def test_explain_and_save_wait_for_pause(tab):
    tab.send_json({"type": "train"})
    until(tab, "frame", running=True)
    tab.send_json({"type": "explain", "index": 0})
    assert until(tab, "invalid", control="explain")["message"] == "pause training first, then explain"
    tab.send_json({"type": "pause"})


def test_save_sends_a_checkpoint_that_loads(app, tab, tmp_path):
    [session] = app.state.sessions
    tab.send_json({"type": "step"})
    until(tab, "frame", running=False)
    tab.send_json({"type": "save"})
    message = until(tab, "checkpoint")
    path = tmp_path / message["name"]
    path.write_bytes(base64.b64decode(message["data"]))
    np.testing.assert_array_equal(xn.load(path).predict(session.X), session.net.predict(session.X))


def test_a_change_while_training_says_training_goes_on(tab):
    """The frame answering a change made mid-training says running: a page shown "paused" would take the next
    click for an explain request."""
    tab.send_json({"type": "train"})
    until(tab, "frame", running=True)
    tab.send_json({"type": "set", "control": "lr", "value": 0.02})
    until(tab, "ok", control="lr")
    assert until(tab, "points") and until(tab, "frame")["running"]
    tab.send_json({"type": "pause"})
    until(tab, "frame", running=False)


def test_switching_backend_keeps_the_weights(app, tab):
    other = next((name for name in ("numba", "array_api_strict") if name in xn.backends.available()), None)
    if other is None:
        pytest.skip("only numpy is usable here")
    [session] = app.state.sessions
    before = session.net.get_weights()
    tab.send_json({"type": "set", "control": "backend", "value": other})
    assert until(tab, "frame")["backend"] == other
    for a, b in zip(before, session.net.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---- every control refuses what it does not allow, with a message beside it ------------------------

BAD = [
    ("dataset", "mnist", "dataset must be one of xor, spirals, circles, moons, got 'mnist'"),
    ("dataset", 3, "dataset must be one of"),
    ("noise", -0.1, "noise must be a number from 0 to 1, got -0.1"),
    ("noise", "0.2", "noise must be a number from 0 to 1, got '0.2'"),
    ("noise", None, "noise must be a number from 0 to 1, got None"),
    ("size", 5, "size must be a whole number from 10 to 2000, got 5"),
    ("size", 2001, "size must be a whole number from 10 to 2000, got 2001"),
    ("size", 20.5, "got 20.5"),
    ("size", True, "got True"),
    ("hidden", [16] * 9, "hidden must be a list of at most 8 layer widths"),
    ("hidden", [16, 257], "hidden layers have 1 to 256 units each, got 257"),
    ("hidden", [0], "hidden layers have 1 to 256 units each, got 0"),
    ("hidden", [None], "got None"),
    ("hidden", "16,16", "hidden must be a list"),
    ("activation", "rleu", "activation must be one of identity, sigmoid, tanh"),
    ("optimizer", "lbfgs", "optimizer must be one of sgd, rmsprop, adam, got 'lbfgs'"),
    ("lr", 0, "lr must be a number from 1e-05 to 10, got 0"),
    ("lr", 11, "got 11"),
    ("lr", None, "got None"),
    ("schedule", "linear", "schedule must be one of constant, step, cosine, plateau"),
    ("batch_size", 0, "batch_size must be a whole number from 1 to 5000, got 0"),
    ("batch_size", 1e9, "got 1000000000.0"),
    ("weight_decay", -1e-3, "weight_decay must be a number from 0 to 0.1, got -0.001"),
    ("weight_decay", 0.5, "got 0.5"),
    ("dropout", 0.95, "dropout must be a number from 0 to 0.9, got 0.95"),
    ("dropout", [], "got []"),
    ("backend", "tensorflow", "backend must be one of numpy, numba, cupy, array_api_strict, torch"),
    ("backend", None, "backend must be one of"),
]
CONTROLS_TRIED = {control for control, _, _ in BAD}


def test_the_table_tries_every_control():
    assert CONTROLS_TRIED == set(controls.CONTROLS)


@pytest.mark.parametrize("control, value, message", BAD, ids=[f"{c}={v!r}" for c, v, _ in BAD])
def test_a_bad_value_is_answered_and_not_applied(app, tab, control, value, message):
    [session] = app.state.sessions
    before = dict(session.settings)
    tab.send_json({"type": "set", "control": control, "value": value})
    reply = tab.receive_json()
    assert reply["type"] == "invalid" and reply["control"] == control
    assert reply["message"].startswith(message) or message in reply["message"], reply["message"]
    assert session.settings == before


def test_a_missing_backend_is_refused_with_its_reason(monkeypatch):
    monkeypatch.setitem(xn.backends._probes, "cupy", "CuPy is not installed")
    with pytest.raises(controls.ControlError, match="cupy is not usable here: CuPy is not installed"):
        controls.check("backend", "cupy")


@pytest.mark.parametrize("point, message", [
    ({"x": 2.0, "y": 0.0, "label": 1}, "a point's x must be a number from -1.6 to 1.6, got 2.0"),
    ({"x": 0.0, "y": float("nan"), "label": 1}, "a point's y must be a number from -1.6 to 1.6, got nan"),
    ({"x": 0.0, "y": 0.0, "label": 2}, "a point's class must be 0 or 1, got 2"),
    ({"x": 0.0, "y": 0.0}, "a point's class must be 0 or 1, got None"),
])
def test_a_bad_point_is_answered(tab, point, message):
    tab.send_json({"type": "point", **point})
    assert tab.receive_json() == {"type": "invalid", "control": "point", "message": message}


def test_at_most_5000_points(app, tab):
    [session] = app.state.sessions
    session.X, session.y = np.zeros((5000, 2)), np.zeros(5000, np.int64)
    session.held_out = np.zeros(5000, bool)
    tab.send_json({"type": "point", "x": 0.0, "y": 0.0, "label": 1})
    assert until(tab, "invalid")["message"] == "the plane holds at most 5000 points"
    tab.send_json({"type": "explain", "index": 5000})
    assert until(tab, "invalid")["message"] == "no point 5000: there are 5000 points"


# ---- a malformed or oversized message closes that tab's session, and no other -----------------------


@pytest.mark.parametrize("text, code", [
    ("not json", server.CLOSE_MALFORMED),
    ("[1, 2]", server.CLOSE_MALFORMED),
    ('{"type": "launch"}', server.CLOSE_MALFORMED),
    ('{"type": "set", "control": "seed", "value": 1}', server.CLOSE_MALFORMED),
    ('{"type": "set", "control": "hidden", "value": [' + "1," * 3000 + "1]}", server.CLOSE_TOO_BIG),
])
def test_a_malformed_message_closes_only_its_session(app, text, code):
    client = TestClient(app)
    with client.websocket_connect("/ws") as good, client.websocket_connect("/ws") as bad:
        for ws in (good, bad):
            [ws.receive_json() for _ in range(3)]
        bad.send_text(text)
        with pytest.raises(WebSocketDisconnect) as closed:
            bad.receive_json()
        assert closed.value.code == code
        good.send_json({"type": "step"})
        assert until(good, "frame", running=False)["epoch"] == 1
        assert len(app.state.sessions) == 1


# ---- closing a tab stops its training and frees it; an idle server does nothing --------------------


def test_closing_a_tab_stops_its_training_and_frees_its_session(app):
    with TestClient(app).websocket_connect("/ws") as ws:
        [ws.receive_json() for _ in range(3)]
        ws.send_json({"type": "train"})
        until(ws, "frame", running=True)
        [session] = app.state.sessions
        gone = weakref.ref(session)
        del session
        assert len(workers()) == 1
    assert app.state.sessions == set()
    assert not workers(settle=5)
    gc.collect()
    assert gone() is None


def test_an_idle_tab_holds_no_thread_and_uses_no_cpu(tab):
    assert not workers(settle=5)  # (a test before this one may have left one ending)
    time.sleep(0.5)  # the first tab's backend probes (importing torch, say) settle
    start = time.process_time()
    time.sleep(0.5)
    assert time.process_time() - start < 0.01  # no polling loop anywhere: the server waits on its sockets


# ---- the command -----------------------------------------------------------------------------


def test_the_command_prints_its_url_and_warns_for_another_host(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(server, "serve", lambda *args: calls.append(args))
    assert main(["playground"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "xpnet playground on numpy: http://127.0.0.1:8765/  (Ctrl-C stops)\n"
    assert captured.err == "" and calls == [("127.0.0.1", 8765, "numpy")]
    assert main(["playground", "--host", "0.0.0.0", "--port", "9000", "--backend", "numpy"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: serving on 0.0.0.0") and "http://0.0.0.0:9000/" in captured.out
    assert calls[-1] == ("0.0.0.0", 9000, "numpy")


@pytest.mark.parametrize("argv, start", [
    (["playground", "--port", "70000"], "xpnet: error: --port must be a port number from 1 to 65535, got 70000"),
    (["playground", "--backend", "tensorflow"], "xpnet: error: unknown backend 'tensorflow'"),
])
def test_the_command_s_errors(argv, start, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(start)


def test_the_page_and_its_files_are_served_locally(app):
    client = TestClient(app)
    page = client.get("/")
    assert page.status_code == 200 and "<canvas id=\"plane\"" in page.text
    for name in ("playground.js", "playground.css"):
        assert client.get(f"/static/{name}").status_code == 200
        assert f"/static/{name}" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from the internet


def test_a_slow_tab_holds_one_frame_with_every_curve_point_and_sees_every_reset():
    import asyncio

    def frame(epoch, curves):
        return {"type": "frame", "epoch": epoch, "grid": f"grid at {epoch}", "curves": curves}

    outbox = server.Outbox()
    outbox.put_nowait({"type": "hello"})
    for epoch in range(10, 1010, 10):  # 100 ms frames the tab did not read
        outbox.put_nowait(frame(epoch, [[epoch, 0.5]]))
    assert len(outbox) == 2
    outbox.put_nowait(frame(0, []))  # a reset: never merged, so the page clears its curves
    outbox.put_nowait(frame(10, [[10, 0.9]]))
    outbox.put_nowait(frame(20, [[20, 0.8]]))
    outbox.put_nowait({"type": "ok", "control": "lr", "value": 0.1})
    outbox.put_nowait(frame(5, [[5, 0.7]]))  # a lower epoch (a new dataset): not merged either

    async def drain():
        return [await outbox.get() for _ in range(len(outbox))]

    hello, before, reset, after, ok, lower = asyncio.run(drain())
    assert hello == {"type": "hello"} and ok["type"] == "ok"
    assert before["grid"] == "grid at 1000" and before["curves"] == [[e, 0.5] for e in range(10, 1010, 10)]
    assert reset == frame(0, []) and after == frame(20, [[10, 0.9], [20, 0.8]]) and lower == frame(5, [[5, 0.7]])
