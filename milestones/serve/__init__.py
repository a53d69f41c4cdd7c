"""``milestones serve``: a local page where a drawn digit goes through LeNet-5, and any loaded run classifies an
uploaded image, with the JSON API the page uses.

The framework is Starlette on uvicorn. Starlette is the ASGI toolkit FastAPI is built on, and it is enough here: a
handful of routes, static files and exception handlers, with two small pure-Python dependencies (``starlette``,
``uvicorn``) and no pydantic. FastAPI would add request validation and generated OpenAPI docs, which a three-route
API that only takes raw image bodies does not need; Flask would need a separate WSGI server for concurrency and has
no asyncio. Model calls run in Starlette's thread pool, one at a time per run (a lock: Grad-CAM hooks and gradients
belong to the model object), so the event loop keeps answering while a model computes.

API (all answers are JSON; errors are ``{"error": "one line", "code": "stable_name"}`` with a 4xx status; the page
words its messages for a person from ``code``, and any client may):

* ``GET /api/runs``: the loaded runs (id, model, dataset, classes, input size, whether it is the drawing LeNet-5).
* ``POST /api/runs/{id}/draw``, body a PNG or JPEG of the drawing: prediction, ten scores (``"output"`` says which:
  softmax ``"probs"``, or for the paper's LeNet-5 the RBF layer's ``"distances"``, smaller is closer) and logits,
  the 32x32 input as the model saw it, and the C1 and C3 feature maps (each map scaled to 0..255, base64 bytes). A
  drawing with too little ink (a dot, an empty pad) gets 422 ``too_little_ink`` instead of a class.
* ``POST /api/runs/{id}/predict``, body a PNG or JPEG: top-5 classes (``"prob"``, or ``"distance"`` as above) and a
  PNG data URL of the image with the Grad-CAM or attention overlay for the top class.

Limits: bodies over :data:`~milestones.serve.runs.MAX_BODY_BYTES` get 413, images over
:data:`~milestones.serve.runs.MAX_PIXELS` pixels 413 (checked on the header, before decoding), content types other
than ``image/png`` and ``image/jpeg`` 415, undecodable bodies 400. Nothing a request sends is written to disk.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from .runs import ACCEPTED_TYPES, MAX_BODY_BYTES, MAX_PIXELS, BadImageError, LoadedRun, decode_image, load_runs

__all__ = ["create_app", "load_runs", "make_server", "start_in_thread", "is_loopback", "LoadedRun"]

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def create_app(runs: Sequence[LoadedRun], *, max_body: int = MAX_BODY_BYTES, max_pixels: int = MAX_PIXELS):
    """The Starlette application: the static page at ``/`` and the JSON API under ``/api/``."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    by_id = {r.id: r for r in runs}

    def error(status: int, message: str, code: str) -> JSONResponse:
        return JSONResponse({"error": message, "code": code}, status_code=status)

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            raise ApiError(413, f"request body over the {max_body:,}-byte limit; send a smaller image", "too_large")
        chunks, size = [], 0
        async for chunk in request.stream():  # a chunked body has no length header: count as it arrives
            size += len(chunk)
            if size > max_body:
                raise ApiError(413, f"request body over the {max_body:,}-byte limit; send a smaller image",
                               "too_large")
            chunks.append(chunk)
        if not size:
            raise ApiError(400, "empty request body; send the image's bytes (image/png or image/jpeg)", "empty_body")
        return b"".join(chunks)

    def find(request: Request) -> LoadedRun:
        rid = request.path_params["run"]
        if rid not in by_id:
            raise ApiError(404, f"no run {rid!r} is loaded; GET /api/runs lists them", "unknown_run")
        return by_id[rid]

    async def image_call(request: Request, method: str) -> JSONResponse:
        run = find(request)
        if method == "draw" and not run.drawable:
            raise ApiError(400, f"run {run.id!r} is not a LeNet-5 trained on digits; use /predict", "not_drawable")
        ctype = request.headers.get("content-type", "")
        if ctype.split(";")[0].strip().lower() not in ACCEPTED_TYPES:
            raise ApiError(415, f"unsupported content type {ctype[:40]!r}; send image/png or image/jpeg",
                           "unsupported_type")
        body = await read_body(request)
        img = await run_in_threadpool(decode_image, body, ctype, max_pixels=max_pixels)
        return JSONResponse(await run_in_threadpool(getattr(run, method), img))

    async def list_runs(request: Request) -> JSONResponse:
        return JSONResponse({"runs": [r.describe() for r in runs],
                             "limits": {"max_body_bytes": max_body, "max_pixels": max_pixels,
                                        "types": sorted(ACCEPTED_TYPES)}})

    async def draw(request: Request) -> JSONResponse:
        return await image_call(request, "draw")

    async def predict(request: Request) -> JSONResponse:
        return await image_call(request, "predict")

    async def index(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, ApiError):
            return error(exc.status, exc.message, exc.code)
        if isinstance(exc, BadImageError):
            return error(exc.status, str(exc), exc.code)
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith("/api/") or exc.status_code != 404:
            what = {404: ("no such API route; GET /api/runs lists the runs", "no_route"),
                    405: ("method not allowed here", "method_not_allowed")}
            return error(exc.status_code, *what.get(exc.status_code, (str(exc.detail), "http_error")))
        return error(404, "not found", "not_found")

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request %s failed", request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); the server is still running", "internal_error")

    routes = [
        Route("/", index),
        Route("/api/runs", list_runs),
        Route("/api/runs/{run}/draw", draw, methods=["POST"]),
        Route("/api/runs/{run}/predict", predict, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {ApiError: on_api_error, BadImageError: on_api_error, HTTPException: on_api_error, 500: on_crash}
    return Starlette(routes=routes, exception_handlers=handlers)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(app, host: str = "127.0.0.1", port: int = 8000):
    """A uvicorn server for ``app`` and the socket it will use, already bound (port 0: a free port), so that the
    URL is known before it starts. Returns ``(server, socket, url)``."""
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        from ..errors import ConfigError

        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port") from None
    sock.listen(2048)  # connections made between printing the URL and the server starting wait in the backlog
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    shown = f"[{host}]" if ":" in host else host
    return uvicorn.Server(config), sock, f"http://{shown}:{bound}/"


def start_in_thread(app, host: str = "127.0.0.1", port: int = 0) -> tuple[str, Callable[[], None]]:
    """Serve ``app`` from a background thread (tests, notebooks); returns ``(url, stop)``."""
    server, sock, url = make_server(app, host, port)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server thread stopped before it started")
        thread.join(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
        sock.close()

    return url, stop
