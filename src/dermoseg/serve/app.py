"""The REST API and web page of ``dermoseg serve`` (FastAPI).

Routes: ``POST /v1/segment``, ``POST /v1/diagnose``, ``POST /v1/analyze`` (multipart upload, field ``image``),
``GET /v1/models``, ``GET /health``, the web page at ``/`` (files in ``static/``, nothing from a CDN) and the
generated OpenAPI documentation at ``/docs`` (served from the installed ``fastapi-offline`` package, offline).

Limits (:mod:`dermoseg.serve.settings`): a request body larger than the upload limit is refused with 413 before
it is read; the image type is found by decoding, never from the name or the declared type (not an image: 415;
empty or truncated: 422; more pixels than allowed: 413, checked from the header); at most ``compute_threads``
images are processed at once and ``max_waiting`` more wait, any further request gets 503 at once, and beyond
:data:`REQUEST_SLACK` more requests in progress (uploads still arriving) a request gets 503 before its body is
read. Uploads stay
in memory or in anonymous temporary files and are never written under a name the client chose. Every error is a
JSON object ``{"detail": "<plain words>"}``, never a traceback. With a token (``--token`` or the environment
variable :data:`dermoseg.serve.settings.TOKEN_ENV`), every ``/v1`` route needs ``Authorization: Bearer <token>``.
"""


import asyncio
import base64
import hmac
import os
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Annotated, Any, Callable

import cv2
import numpy as np
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from dermoseg import __version__
from dermoseg.errors import ImageReadError, ImageTooLargeError, UnsupportedImageError
from dermoseg.io import decode_image, encode_image
from dermoseg.serve import schemas
from dermoseg.serve.pipeline import DISCLAIMER, HAM_CLASSES, Pipeline, SegmentResult
from dermoseg.serve.settings import (CLASSIFIER_ENV, CONFIG_ENV, MODEL_ENV, TOKEN_ENV, ServeSettings, load_settings,
                                     worker_threads)

STATIC_DIR = resources.files("dermoseg").joinpath("serve", "static")
FORM_OVERHEAD = 64 * 1024  # bytes a multipart body may hold beyond the file: boundaries, headers, option fields
REQUEST_SLACK = 16  # requests with a body in progress beyond the work queue: uploads still being received
BUSY = "the server is busy (too many images waiting); try again in a few seconds"
UNAUTHORISED = "this server needs its access token (Authorization: Bearer <token>); none or another was given"


class QueueFull(Exception):
    """Every compute thread is busy and ``max_waiting`` requests already wait."""


class BodyTooLarge(Exception):
    """The request body grew past the upload limit while it was being received."""


class BodyStalled(Exception):
    """No part of the request body arrived within the upload timeout."""


class WorkQueue:
    """Bounded admission to the compute threads: ``run`` raises :class:`QueueFull` instead of queueing more than
    ``threads + max_waiting`` requests. Used from the event loop only (the counter needs no lock)."""

    def __init__(self, threads: int, max_waiting: int):
        self.capacity = threads + max_waiting
        self.active = 0
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="dermoseg-compute")

    def admit(self) -> None:
        """Take a place or raise :class:`QueueFull`; pair with :meth:`leave`."""
        if self.active >= self.capacity:
            raise QueueFull
        self.active += 1

    def leave(self) -> None:
        """Give the place back."""
        self.active -= 1

    async def compute(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on a compute thread (waiting for one) and return its result."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def _libc_malloc_trim() -> Callable[[int], int] | None:
    import ctypes
    import ctypes.util
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def release_freed_memory() -> None:
    """Hand the memory freed after an image back to the operating system (glibc ``malloc_trim(0)``; no-op
    without glibc). Without it, glibc's per-thread arenas keep the peak of each large image they decoded: in the
    load test the server grew from 0.3 to 1.8 GB over 1,000 requests, most of it free but not returned."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _bearer_token_matches(authorization: bytes | None, token: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <token>`` (constant-time comparison)."""
    scheme, _, given = (authorization or b"").decode("latin-1").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class RequestGuard:
    """ASGI middleware, before any body is read: with a ``token``, 401 for a ``/v1`` request without it (so that
    requests without the token never hold a place); 503 when ``max_requests`` requests with a body are already in
    progress (uploads being received included, so their number and the memory and temporary files they hold are
    bounded; a GET, HEAD or OPTIONS request, such as ``GET /health``, is not counted, so it answers when the
    server is full); 413 for a body larger than ``limit`` bytes (declared by Content-Length, or counted as it arrives); and
    408 when no part of an unfinished body arrives for ``body_timeout`` seconds (a stalled upload gives its place
    back; the wait is per part, so a client trickling a byte at a time within it keeps its place while it does)."""

    def __init__(self, app, limit: int, max_requests: int, body_timeout: float, token: str | None = None):
        self.app, self.limit, self.max_requests, self.body_timeout = app, limit, max_requests, body_timeout
        self.token = token
        self.active = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.token is not None and scope["path"].startswith("/v1") and not _bearer_token_matches(
                dict(scope.get("headers") or []).get(b"authorization"), self.token):
            return await _error(401, UNAUTHORISED, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        if self.active >= self.max_requests:
            return await _error(503, BUSY, {"Retry-After": "5"})(scope, receive, send)
        self.active += 1
        try:
            await self._limited(scope, receive, send)
        finally:
            self.active -= 1

    async def _limited(self, scope, receive, send):
        message = f"upload too large: the limit is {self.limit - FORM_OVERHEAD:,} bytes per image"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _error(413, message)(scope, receive, send)
        received, exceeded, stalled, answered, complete = 0, False, False, False, False

        async def counting_receive():
            nonlocal received, exceeded, stalled, complete
            if complete:  # the body is in: the application may wait for the client to disconnect, untimed
                return await receive()
            try:
                msg = await asyncio.wait_for(receive(), self.body_timeout)
            except asyncio.TimeoutError:
                stalled = True
                raise BodyStalled from None
            complete = msg["type"] != "http.request" or not msg.get("more_body", False)
            received += len(msg.get("body", b""))
            if received > self.limit:
                exceeded = True
                raise BodyTooLarge
            return msg

        def refusal() -> JSONResponse:
            return _error(413, message) if exceeded else _error(
                408, f"upload stalled: no data for {self.body_timeout:g} s; send the image again")

        async def guarded_send(msg):
            # Once the body was too large or stalled, whatever the application answers (FastAPI turns the
            # exception into "400 error parsing the body") is replaced by the 413 or 408.
            nonlocal answered
            if not (exceeded or stalled):
                answered = answered or msg["type"] == "http.response.start"
                await send(msg)
            elif not answered:
                answered = True
                await refusal()(scope, receive, send)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except (BodyTooLarge, BodyStalled):
            pass
        if (exceeded or stalled) and not answered:
            await refusal()(scope, receive, send)


def _mask_png_contour(mask: np.ndarray) -> tuple[str, list[list[int]]]:
    """The mask as base64 PNG (0/255, the bytes ``dermoseg segment`` writes) and the outer contour of the lesion
    as [[x, y], …] coordinates of its boundary pixels (OpenCV's simple chain approximation, which keeps the ends
    of straight runs; [] for an empty mask)."""
    png = base64.b64encode(encode_image(mask, ".png")).decode("ascii")
    if not mask.any():
        return png, []
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    largest = max(contours, key=cv2.contourArea)
    return png, largest.reshape(-1, 2).tolist()


def _blank_to_none(value: Any) -> Any:
    return None if value == "" else value


MEASUREMENT_KEYS = ("lesion_area_px", "lesion_area_pct", "bbox_x", "bbox_y", "bbox_width", "bbox_height",
                    "asymmetry_major", "asymmetry_minor", "compactness", "perimeter_px", "colour_count", "colours",
                    "diameter_px", "diameter_mm", "perimeter_mm", "area_mm2")


def _segment_json(seg: SegmentResult, pipeline: Pipeline, mm_per_pixel: float | None) -> dict[str, Any]:
    row = seg.row
    png, contour = _mask_png_contour(seg.mask)
    seg_model = pipeline.models()[0]
    measurements = {k: _blank_to_none(row[k]) for k in MEASUREMENT_KEYS}
    measurements["colours"] = [c for c in row["colours"].split(";") if c]
    measurements["mm_per_pixel"] = mm_per_pixel
    return {"image": {"file": row["file"], "image_id": row["image_id"], "width": row["width"], "height": row["height"]},
            "mask_png": png, "contour": contour, "measurements": measurements,
            "mean_lesion_probability": row["mean_lesion_probability"], "warning": row["warning"] or None,
            "quality": seg.quality, "options": seg.options,
            "model": {"name": seg_model["name"], "sha256": seg_model["sha256"]}, "seconds": row["seconds"],
            "csv": seg.csv()}


def _diagnosis_json(probabilities: dict[str, float], pipeline: Pipeline) -> dict[str, Any]:
    cls_model = pipeline.models()[1]
    return {"probabilities": probabilities, "top_class": max(probabilities, key=probabilities.get),
            "classes": list(HAM_CLASSES), "disclaimer": DISCLAIMER,
            "model": {"name": cls_model["name"], "sha256": cls_model["sha256"]}}


def create_app(settings: ServeSettings | None = None, pipeline: Pipeline | None = None,
               token: str | None = None) -> FastAPI:
    """Build the application.

    Parameters
    ----------
    settings : limits; None reads the file named by :data:`~dermoseg.serve.settings.CONFIG_ENV`, else the
        shipped defaults.
    pipeline : loaded models; None loads the files named by :data:`~dermoseg.serve.settings.MODEL_ENV` and
        :data:`~dermoseg.serve.settings.CLASSIFIER_ENV` (set by ``dermoseg serve --model/--classifier``), else the
        shipped ones.
    token : bearer token required on ``/v1`` routes; None takes :data:`~dermoseg.serve.settings.TOKEN_ENV` from
        the environment; "" (or no token in the environment) means no authentication.

    Returns
    -------
    The FastAPI application (an ASGI app for uvicorn or :class:`fastapi.testclient.TestClient`).
    """
    settings = settings or load_settings(os.environ.get(CONFIG_ENV) or None)
    token = (token if token is not None else os.environ.get(TOKEN_ENV)) or None
    pipeline = pipeline or Pipeline(os.environ.get(MODEL_ENV) or None, os.environ.get(CLASSIFIER_ENV) or None,
                                    threads=worker_threads(settings))
    queue = WorkQueue(settings.compute_threads, settings.max_waiting)

    app = FastAPIOffline(title="dermoseg", version=__version__,
                         description="Dermoscopic lesion segmentation, measurement and seven-class diagnosis. "
                         f"{DISCLAIMER}")
    app.add_middleware(RequestGuard, limit=settings.max_upload_bytes + FORM_OVERHEAD,
                       max_requests=queue.capacity + REQUEST_SLACK, body_timeout=settings.upload_timeout_seconds,
                       token=token)
    # The token is checked by RequestGuard before any body is read; this only declares it in the OpenAPI document.
    bearer = HTTPBearer(auto_error=False, description="the server's token, when it was started with one")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
            problems.append(f"{field}: {err.get('msg', 'invalid')}" if field else err.get("msg", "invalid"))
        return _error(422, "invalid request: " + "; ".join(problems))

    @app.exception_handler(QueueFull)
    async def busy(request: Request, exc: QueueFull):
        return _error(503, BUSY, {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    async def decoded(upload: UploadFile) -> tuple[np.ndarray, np.ndarray | None]:
        """The upload decoded (off the event loop) as (RGB, opacity or None), or the 413/415/422 HTTPException
        that says why not."""
        name = upload.filename or "upload"
        data = await upload.read()
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(413, f"{name}: upload too large ({len(data):,} bytes; the limit is "
                                f"{settings.max_upload_bytes:,})")
        try:
            return await asyncio.to_thread(decode_image, data, name, settings.max_pixels)
        except ImageTooLargeError as exc:
            raise HTTPException(413, str(exc)) from None
        except UnsupportedImageError as exc:
            raise HTTPException(415, f"{exc} (an image file expected: JPEG, PNG, BMP, TIFF, WebP, GIF or "
                                     "PPM/PGM)") from None
        except ImageReadError as exc:
            raise HTTPException(422, str(exc)) from None

    async def admitted(upload: UploadFile, work: Callable[[np.ndarray, np.ndarray | None], Any]) -> Any:
        """Take a queue place, decode the upload, run ``work(image, alpha)`` on a compute thread."""
        queue.admit()
        try:
            return await queue.compute(work, *await decoded(upload))
        finally:
            queue.leave()
            release_freed_memory()

    ImageField = Annotated[UploadFile, File(description="the dermoscopic image (JPEG, PNG, BMP, TIFF, WebP, GIF or "
                                            "PPM/PGM)")]
    Threshold = Annotated[float, Form(gt=0, lt=1, description="lesion where probability > threshold")]
    Tta = Annotated[bool | None, Form(description="flip test-time augmentation (default: the model file's)")]
    Preprocess = Annotated[bool | None, Form(description="black-frame and hair removal first (default: the model file's)")]
    MmPerPixel = Annotated[float | None, Form(gt=0, allow_inf_nan=False,
                                              description="pixel size in mm, for the diameter in mm")]

    def segment_work(upload: UploadFile, threshold, tta, preprocess, mm_per_pixel, diagnose):
        def work(image: np.ndarray, alpha: np.ndarray | None) -> dict[str, Any]:
            start = time.perf_counter()
            seg = pipeline.segment(image, upload.filename or "upload", threshold, tta, preprocess, mm_per_pixel,
                                   diagnose=diagnose, alpha=alpha)
            seg.row["seconds"] = round(time.perf_counter() - start, 3)
            out = _segment_json(seg, pipeline, mm_per_pixel)
            if diagnose:
                out["diagnosis"] = _diagnosis_json({c: seg.row[f"p_{c}"] for c in HAM_CLASSES}, pipeline)
            return out
        return work

    async def one_image(request: Request) -> None:
        """Refuse (422) a form with more than one ``image`` part: which one the client meant would be a guess (the
        form parser keeps the last)."""
        parts = (await request.form()).getlist("image")
        if len(parts) > 1:
            raise HTTPException(422, f"one image per request: the form has {len(parts)} 'image' parts")

    v1 = [Depends(bearer)]
    upload = [*v1, Depends(one_image)]

    @app.post("/v1/segment", dependencies=upload, summary="segment and measure the lesion",
              response_model=schemas.Segmentation, responses=schemas.UPLOAD_ERRORS)
    async def segment(image: ImageField, threshold: Threshold = 0.5, tta: Tta = None, preprocess: Preprocess = None,
                      mm_per_pixel: MmPerPixel = None) -> dict[str, Any]:
        """The lesion mask (base64 PNG, 0/255, the image's size: the file ``dermoseg segment`` writes), its outer
        contour, the measurements of ``results.csv``, the mean lesion probability, a warning for unreliable
        inputs, the model's name and sha256, seconds, and the ``results.csv`` row itself (``csv``)."""
        return await admitted(image, segment_work(image, threshold, tta, preprocess, mm_per_pixel, False))

    @app.post("/v1/diagnose", dependencies=upload, summary="seven-class lesion probabilities (research use only)",
              response_model=schemas.Diagnosis, responses=schemas.UPLOAD_ERRORS)
    async def diagnose(image: ImageField) -> dict[str, Any]:
        """The seven calibrated class probabilities (MEL, NV, BCC, AKIEC, BKL, DF, VASC, as ``dermoseg
        diagnose``), the top class and the research-use disclaimer. Not a diagnosis."""
        def work(img: np.ndarray, alpha: np.ndarray | None) -> dict[str, Any]:
            start = time.perf_counter()
            probabilities, warning = pipeline.diagnose(img)
            out = _diagnosis_json(probabilities, pipeline)
            out["warning"] = warning or None
            out["seconds"] = round(time.perf_counter() - start, 3)
            return out
        return await admitted(image, work)

    @app.post("/v1/analyze", dependencies=upload, summary="segment, measure and diagnose in one call",
              response_model=schemas.Segmentation, responses=schemas.UPLOAD_ERRORS)
    async def analyze(image: ImageField, threshold: Threshold = 0.5, tta: Tta = None, preprocess: Preprocess = None,
                      mm_per_pixel: MmPerPixel = None) -> dict[str, Any]:
        """What ``/v1/segment`` returns, plus ``diagnosis`` (as ``/v1/diagnose``); ``csv`` is then the row of
        ``dermoseg segment --diagnose``."""
        return await admitted(image, segment_work(image, threshold, tta, preprocess, mm_per_pixel, True))

    @app.get("/v1/models", dependencies=v1, summary="the models this server applies", response_model=schemas.Models,
             responses={401: schemas.UPLOAD_ERRORS[401]})
    async def models() -> dict[str, Any]:
        """Each model's task, file name, sha256 and headline figures from its model card."""
        return {"models": pipeline.models(), "disclaimer": DISCLAIMER}

    @app.get("/health", summary="liveness and queue state", response_model=schemas.Health)
    async def health() -> dict[str, Any]:
        """``{"status": "ok"}`` with the version, the requests in progress or waiting, the queue capacity, the
        upload limits and whether ``/v1`` needs a token."""
        return {"status": "ok", "version": __version__, "busy": queue.active, "capacity": queue.capacity,
                "max_upload_bytes": settings.max_upload_bytes, "max_pixels": settings.max_pixels,
                "auth": token is not None}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC_DIR.joinpath("index.html")))

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    return app
