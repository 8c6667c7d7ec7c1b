"""The playground's web server: the page (static files from this package) and one WebSocket per browser tab.

Every message from the page is JSON. A control value that the control does not
allow is answered with ``{"type": "invalid", "control", "message"}`` for the page
to show beside it; a message that is not what the page sends (not JSON, too
long, an unknown type or control) closes that tab's session only. Closing the
tab stops its training and drops its network.
"""
import asyncio
import base64
import collections
import json
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import errors
from . import controls
from .session import TRAIN_EPOCHS, Session

STATIC = Path(__file__).parent / "static"
MAX_MESSAGE = 4096  # bytes; the page's longest message (a list of 8 widths) is far shorter
CLOSE_MALFORMED, CLOSE_TOO_BIG = 1008, 1009  # WebSocket close codes: policy violation, message too big
RUN_COMMANDS = ("train", "pause", "step", "reset", "clear", "save")


class Malformed(Exception):
    """A message the page never sends: the session closes."""


def create_app(backend="numpy"):
    """The Starlette app; ``app.state.sessions`` holds the live sessions (one per open tab)."""

    async def page(request):
        return FileResponse(STATIC / "index.html")

    async def tab(websocket: WebSocket):
        await websocket.accept()
        outbox = Outbox()
        loop = asyncio.get_running_loop()
        session = Session(lambda message: loop.call_soon_threadsafe(outbox.put_nowait, message), backend)
        app.state.sessions.add(session)
        sender = asyncio.create_task(_send_all(websocket, outbox))
        try:
            outbox.put_nowait(hello(session))
            outbox.put_nowait(session.points())
            outbox.put_nowait(session.frame(running=False))
            while True:
                text = await websocket.receive_text()
                if len(text.encode()) > MAX_MESSAGE:
                    await websocket.close(CLOSE_TOO_BIG, f"messages are at most {MAX_MESSAGE} bytes")
                    break
                for reply in await handle(session, parse(text)):
                    outbox.put_nowait(reply)
        except Malformed as e:
            await websocket.close(CLOSE_MALFORMED, str(e)[:120])
        except WebSocketDisconnect:
            pass
        finally:  # the tab is gone: stop its training and let its network go
            sender.cancel()
            app.state.sessions.discard(session)
            session.stopping.set()
            await asyncio.to_thread(session.stop)

    app = Starlette(routes=[Route("/", page), WebSocketRoute("/ws", tab), Mount("/static", StaticFiles(directory=STATIC))])
    app.state.sessions = set()
    return app


class Outbox:
    """One tab's messages, in order. A frame that continues the frame still waiting to go out replaces it
    and carries its curve points along, so a tab that reads slowly holds one frame in memory, not one per
    100 ms. A frame at epoch 0 (a new network) or at a lower epoch is never merged: the page clears its
    curves when it sees one."""

    def __init__(self):
        self.messages: collections.deque = collections.deque()
        self.ready = asyncio.Event()

    def put_nowait(self, message):
        last = self.messages[-1] if self.messages else None
        if (message["type"] == "frame" and last is not None and last["type"] == "frame"
                and 0 < last["epoch"] <= message["epoch"]):
            self.messages.pop()
            message = dict(message, curves=last["curves"] + message["curves"])
        self.messages.append(message)
        self.ready.set()

    async def get(self):
        while not self.messages:
            self.ready.clear()
            await self.ready.wait()
        return self.messages.popleft()

    def __len__(self):
        return len(self.messages)


async def _send_all(websocket, outbox):
    while True:
        await websocket.send_text(json.dumps(await outbox.get()))


def hello(session):
    limits = {"max_layers": controls.MAX_LAYERS, "max_units": controls.MAX_UNITS, "max_points": controls.MAX_POINTS,
              "extent": controls.EXTENT, "grid": controls.GRID}
    return {"type": "hello", "settings": session.settings, "limits": limits, "backends": controls.backend_rows(),
            "choices": controls.CHOICES}


def parse(text):
    """The message as a dict with a known type (and a known control for "set"), or Malformed."""
    try:
        message = json.loads(text)
    except ValueError:
        raise Malformed("not JSON") from None
    if not isinstance(message, dict) or message.get("type") not in ("set", "point", "explain", *RUN_COMMANDS):
        raise Malformed("not a playground message")
    if message["type"] == "set" and message.get("control") not in controls.CONTROLS:
        raise Malformed(f"no control {message.get('control')!r}")
    return message


async def handle(session, message):
    """The replies to one message; a value a control does not allow is answered, never applied."""
    kind = message["type"]
    try:
        if kind == "set":
            control = message["control"]
            value = controls.check(control, message.get("value"))
            return await _paused(session, lambda: session.set(control, value), resume=True,
                                 replies=[{"type": "ok", "control": control, "value": value}])
        if kind == "point":
            point = controls.point(message.get("x"), message.get("y"), message.get("label"))
            return await _paused(session, lambda: session.add_point(*point), resume=True, replies=[])
        if kind == "clear":
            return await _paused(session, session.clear, resume=False, replies=[])
        if kind == "reset":
            return await _paused(session, session.build, resume=False, replies=[])
        if kind == "pause":
            await asyncio.to_thread(session.stop)
            return []
        if kind in ("train", "step"):
            session.start(TRAIN_EPOCHS if kind == "train" else 1)
            return []
        if session.running:
            raise controls.ControlError(f"pause training first, then {kind}")
        if kind == "explain":
            return [{"type": "trace", "index": message.get("index"), "text": session.explain(message.get("index"))}]
        data = base64.b64encode(session.checkpoint()).decode("ascii")
        return [{"type": "checkpoint", "name": "playground.npz", "data": data}]
    except controls.ControlError as e:
        return [{"type": "invalid", "control": message.get("control", kind), "message": str(e)}]
    except errors.XpnetError as e:  # xpnet refused what passed the checks (a trace on a backend that cannot, say)
        return [{"type": "error", "message": " ".join(str(e).split())}]


async def _paused(session, change, resume, replies):
    """Stop training, apply ``change``, send the new points and a frame, and train on if asked and it was.

    The frame says whether training goes on: a page that read "paused" while training resumed would take the
    next click on the plane for an explain request, until the next frame said otherwise."""
    train_on = resume and session.running
    await asyncio.to_thread(session.stop)
    change()
    replies = [*replies, session.points(), session.frame(running=train_on)]
    if train_on:
        session.start(TRAIN_EPOCHS)
    return replies


def serve(host="127.0.0.1", port=8765, backend="numpy"):
    """Run the playground until Ctrl-C."""
    uvicorn.run(create_app(backend), host=host, port=port, ws_max_size=MAX_MESSAGE, log_level="warning")
