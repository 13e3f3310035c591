"""The FastAPI application: REST endpoints and the upload page, a thin shell over
:mod:`agegender.inference.predictor`. Build it with :func:`create_app`; ``agegender serve`` runs it."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

import agegender
from agegender.data.images import decoded_pixels
from agegender.inference.results import STATUS_NO_FACE, STATUS_OK, ImageResult, PersonResult
from agegender.serve.docs import STATIC_DIR, find_swagger_assets, install_docs
from agegender.serve.settings import ServeSettings
from agegender.serve.uploads import (
    MULTIPART_OVERHEAD,
    ApiError,
    Upload,
    check_image,
    read_uploads,
    sniff_image_type,
)
from agegender.serve.workers import PredictorPool

log = logging.getLogger(__name__)

#: HTTP status for each image status the predictor can report (``ok``/``no_face`` are 200)
HTTP_STATUS_FOR_CODE: dict[str, int] = {
    "empty_file": 400,
    "unreadable": 400,  # recognised format, but truncated or corrupt
    "not_an_image": 400,  # passed the magic-byte check (so 415 was ruled out) but its header is damaged
    "too_large": 413,  # more than max_pixels (header checked before decoding)
    "unsupported": 422,  # e.g. a colour mode that cannot become RGB
    "error": 500,  # an unexpected failure in the predictor (a bug): logged on the server
}

#: Content-Security-Policy of the upload page: everything from this server, camera frames as blob:/data:
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


# ---------------------------------------------------------------------------------- response schemas (docs)


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error: a machine-readable ``code`` and a message for people."""

    error: ErrorDetail


class ImageSize(BaseModel):
    width: int | None
    height: int | None


class PredictResponse(BaseModel):
    """One image: everyone found, with the fields of ``PersonResult.to_dict()``."""

    model: str
    version: str
    filename: str
    status: str  # ok | no_face
    message: str | None = None
    image: ImageSize
    people: list[PersonResult]
    timing_ms: dict[str, float]


class BatchItem(BaseModel):
    """One image of a batch: a result (``status`` ok/no_face) or an error record (``error`` set)."""

    index: int
    filename: str
    status: str
    http_status: int
    message: str | None = None
    image: ImageSize | None = None
    people: list[PersonResult] = []
    error: ErrorDetail | None = None


class BatchResponse(BaseModel):
    model: str
    version: str
    results: list[BatchItem]
    counts: dict[str, int]
    timing_ms: dict[str, float]


def _error_docs(*codes: int) -> dict[int | str, dict[str, Any]]:
    what = {400: "empty, truncated or corrupt image; malformed request",
            413: "upload over max_upload_bytes, image over max_pixels, more decoded pixels than "
                 "max_request_pixels, or too many images",
            415: "not an accepted image type (checked on the file's magic bytes)",
            422: "no file in the form, or an image that cannot be converted to RGB",
            503: "too many requests queued (max_pending) or waiting for the pixel budget; retry later",
            504: "the request waited for and ran in the model longer than timeout_s"}
    return {c: {"model": ErrorResponse, "description": what[c]} for c in codes}


_BINARY = {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"}
_RAW_IMAGE = {f"image/{t}": {"schema": _BINARY} for t in ("jpeg", "png", "webp")}
_SINGLE_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": _BINARY}, "required": ["file"]}},
    **_RAW_IMAGE}}}
_BATCH_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["files"],
                                       "properties": {"files": {"type": "array", "items": _BINARY}}}}}}}


# ------------------------------------------------------------------------------------------------ the app


def _load_predictors(model: Any, settings: ServeSettings) -> list[Any]:
    """Predictor objects for the pool: ``settings.workers`` loads of a model name/path, or the given ones."""
    if isinstance(model, (list, tuple)):
        return list(model)
    if not isinstance(model, (str, os.PathLike)):
        return [model]  # a ready predictor (or a test double): one worker
    from agegender.inference.loading import load

    threads = settings.threads or max(1, (os.cpu_count() or 1) // settings.workers)
    opts: dict[str, Any] = {"device": settings.device, "threads": threads, "workers": 1,
                            "max_pixels": settings.max_pixels, **settings.predictor_options}
    if settings.detector:
        opts["detector"] = settings.detector
    if settings.backend:
        opts["backend"] = settings.backend
    return [load(model, **opts) for _ in range(settings.workers)]


def _model_info(predictor: Any) -> dict[str, Any]:
    info = dict(predictor.info()) if hasattr(predictor, "info") else {}
    info.setdefault("name", str(getattr(predictor, "name", "model")))
    info.setdefault("version", agegender.__version__)
    if info.get("source"):  # the model's file name, not the server's folder layout
        info["source"] = Path(str(info["source"])).name
    return info


def _image_record(res: ImageResult) -> dict[str, Any]:
    return {"status": res.status, "message": res.message, "image": {"width": res.width, "height": res.height},
            "people": [p.to_dict() for p in res.people]}


def _result_error(res: ImageResult, filename: str) -> ApiError:
    status = HTTP_STATUS_FOR_CODE.get(res.status, 422)
    if status == 500:
        log.error("prediction failed for %s: %s", filename, res.message)
        return ApiError(500, "internal_error", "the prediction failed unexpectedly; the server log has details")
    return ApiError(status, res.status, f"{filename}: {res.message or res.status}")


def _request_pixels(uploads: Sequence[Upload], settings: ServeSettings) -> int:
    """Decoded pixels of a request's images, from their headers (cheap: no pixel is decoded), or
    ``ApiError(413, "too_many_pixels")`` over ``max_request_pixels``."""
    sizes = [decoded_pixels(u.data, settings.decode_side, settings.max_pixels) for u in uploads]
    total, limit = sum(sizes), settings.max_request_pixels
    if total <= limit:
        return total
    if len(uploads) == 1:
        what = f"{uploads[0].filename or 'the upload'} decodes to {total / 1e6:.1f} megapixels"
        hint = f"resize it to at most {limit / 1e6:.1f} megapixels"
        if sniff_image_type(uploads[0].data) != "jpeg":
            hint += (f", or send it as a JPEG: JPEGs over {2 * settings.decode_side} px on their longer side are "
                     "decoded at reduced scale")
    else:
        what = f"the {len(uploads)} images of this batch decode to {total / 1e6:.1f} megapixels"
        hint = "send fewer or smaller images per batch (JPEGs decode at reduced scale when large)"
    raise ApiError(413, "too_many_pixels", f"{what}, over this server's limit of {limit / 1e6:.1f} per request; {hint}")


def create_app(model: Any = "default", settings: ServeSettings | None = None) -> FastAPI:
    """The service for ``model`` (a bundled name, a checkpoint/package or ``.onnx`` path, or ready predictor
    objects) under ``settings`` (default: :meth:`ServeSettings.from_env`).

    The model is loaded here, so a bad name fails at once with :class:`~agegender.errors.AgeGenderError`.

    >>> from fastapi.testclient import TestClient            # doctest: +SKIP
    >>> client = TestClient(create_app("default"))            # doctest: +SKIP
    >>> client.post("/v1/predict", files={"file": open("photo.jpg", "rb")}).json()["people"]  # doctest: +SKIP
    """
    settings = settings or ServeSettings.from_env()
    pool = PredictorPool(_load_predictors(model, settings), settings.max_pending, settings.timeout_s,
                         pixel_budget=settings.pixel_budget, decode_side=settings.decode_side,
                         max_pixels=settings.max_pixels)
    info = _model_info(pool.primary)
    name, version = str(info["name"]), str(info["version"])

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        pool.close()

    app = FastAPI(
        title="agegender", version=agegender.__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        description="Age, gender and ethnicity of every person in an image. Errors are JSON "
                    '`{"error": {"code": ..., "message": ...}}`; limits: `GET /v1/models`.')
    app.state.settings, app.state.pool, app.state.model_info = settings, pool, info
    app.state.docs_kind = install_docs(app, find_swagger_assets(settings.docs_assets), "agegender")
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    # ------------------------------------------------------------------------------------------ errors
    @app.exception_handler(ApiError)
    async def api_error(_req: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": {"code": "bad_request", "message": str(exc.errors())}}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse({"error": {"code": "internal_error", "message": "internal server error; the server "
                                                                            "log has details"}}, status_code=500)

    app.add_middleware(SecurityHeaders)

    # ------------------------------------------------------------------------------------------ routes
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})

    @app.get("/healthz", summary="Liveness: answers while the model works")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": name, "version": version, **pool.stats()}

    @app.get("/v1/models", summary="The model this server runs, bundled models, and the limits")
    def models() -> dict[str, Any]:
        from agegender.inference.registry import bundled_models

        return {"models": [info], "bundled": sorted(bundled_models()), "limits": settings.to_dict()}

    @app.post("/v1/predict", summary="Everyone in one image", response_model=None, openapi_extra=_SINGLE_BODY,
              responses={200: {"model": PredictResponse}, **_error_docs(400, 413, 415, 422, 503, 504)})
    async def predict(request: Request) -> JSONResponse:
        """Send the image as a multipart file field (any field name, e.g. `file`) or as the raw body with
        `Content-Type: image/jpeg` (`image/png`, ...; optional `X-Filename` header). Answers 200 with
        `status` `ok` or `no_face`, or an error."""
        t0 = time.perf_counter()
        (upload,) = await read_uploads(request, max_files=1, max_file_bytes=settings.max_upload_bytes,
                                       max_body_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD)
        check_image(upload, settings.accepted_types, settings.max_upload_bytes)
        cost = _request_pixels([upload], settings)
        res, queue_ms, run_ms = await pool.predict(upload.data, upload.filename, cost)
        if res.status not in (STATUS_OK, STATUS_NO_FACE):
            raise _result_error(res, upload.filename)
        body = {"model": name, "version": version, "filename": upload.filename, **_image_record(res),
                "timing_ms": _timing(t0, queue_ms, run_ms)}
        return JSONResponse(body)

    @app.post("/v1/predict/batch", summary="Several images: one result or error record each",
              response_model=None, openapi_extra=_BATCH_BODY,
              responses={200: {"model": BatchResponse}, **_error_docs(400, 413, 415, 422, 503, 504)})
    async def predict_batch(request: Request) -> JSONResponse:
        """Send up to `max_batch_images` files in one multipart form (field name e.g. `files`, repeated).
        Answers 200 with one record per file in order; a bad file gets an error record (with the
        `http_status` it would have had alone) and does not fail the others."""
        t0 = time.perf_counter()
        uploads = await read_uploads(request, max_files=settings.max_batch_images,
                                     max_file_bytes=settings.max_upload_bytes, max_body_bytes=settings.max_batch_bytes)
        records: list[dict[str, Any] | None] = [None] * len(uploads)
        good: list[tuple[int, Upload]] = []
        for i, up in enumerate(uploads):
            try:
                check_image(up, settings.accepted_types, settings.max_upload_bytes)
                good.append((i, up))
            except ApiError as e:
                records[i] = _error_record(i, up.filename, e)
        queue_ms = run_ms = 0.0
        if good:
            cost = _request_pixels([u for _, u in good], settings)
            results, queue_ms, run_ms = await pool.predict_batch([u.data for _, u in good],
                                                                 [u.filename for _, u in good], cost)
            for (i, up), res in zip(good, results):
                if res.status in (STATUS_OK, STATUS_NO_FACE):
                    records[i] = {"index": i, "filename": up.filename, "http_status": 200, **_image_record(res),
                                  "error": None}
                else:
                    records[i] = _error_record(i, up.filename, _result_error(res, up.filename))
        done = [r for r in records if r is not None]
        counts: dict[str, int] = {}
        for r in done:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        return JSONResponse({"model": name, "version": version, "results": done, "counts": counts,
                             "timing_ms": _timing(t0, queue_ms, run_ms)})

    return app


class SecurityHeaders:
    """Pure ASGI middleware adding ``nosniff`` and ``no-referrer`` to every response."""

    HEADERS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"))

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in self.HEADERS if h[0] not in names]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error_record(index: int, filename: str, e: ApiError) -> dict[str, Any]:
    return {"index": index, "filename": filename, "status": e.code, "http_status": e.status, "message": e.message,
            "image": None, "people": [], "error": {"code": e.code, "message": e.message}}


def _timing(t0: float, queue_ms: float, run_ms: float) -> dict[str, float]:
    return {"total": round((time.perf_counter() - t0) * 1000.0, 1), "queue": round(queue_ms, 1),
            "inference": round(run_ms, 1)}


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory agegender.serve.app:create_app_from_env`` (model: ``AGEGENDER_MODEL``)."""
    return create_app(os.environ.get("AGEGENDER_MODEL", "default"), ServeSettings.from_env())


__all__: Sequence[str] = ("HTTP_STATUS_FOR_CODE", "ServeSettings", "create_app", "create_app_from_env")
