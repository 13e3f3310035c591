"""Reading uploads in memory (never on disk) under a byte limit, multipart parsing, and image-type sniffing
from magic bytes. Problems raise :class:`ApiError`, which the app turns into a JSON error response."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from agegender.serve.settings import MIB

#: bytes of multipart framing (boundaries, part headers) allowed on top of the image bytes per part
MULTIPART_OVERHEAD = 16 * 1024
#: an over-limit body is read and discarded up to this many bytes, so the client gets its 413 instead of a
#: reset connection; beyond it the server stops reading and closes the connection
DRAIN_LIMIT = 64 * 1024 * 1024

#: raw-body content types taken as "the body is the image" (magic bytes still decide the real type)
RAW_IMAGE_TYPES: tuple[str, ...] = ("image/", "application/octet-stream")


class ApiError(Exception):
    """An error answered as ``{"error": {"code": ..., "message": ...}}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass
class Upload:
    """One uploaded image, held in memory."""

    filename: str
    data: bytes
    content_type: str = ""


def sniff_image_type(data: bytes) -> str | None:
    """The image format named by the first bytes (``jpeg``, ``png``, ``gif``, ``webp``, ``bmp``, ``tiff``),
    or ``None``. Header-only: a truncated file of a known type is still named (decoding catches it)."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM" and len(data) >= 26:
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def check_image(upload: Upload, accepted: tuple[str, ...], max_bytes: int) -> str:
    """Raise the :class:`ApiError` an upload deserves before any decoding (empty, too big, wrong type);
    return its sniffed type."""
    name = upload.filename or "the upload"
    if not upload.data:
        raise ApiError(400, "empty_file", f"{name} is empty (0 bytes)")
    if len(upload.data) > max_bytes:
        raise ApiError(413, "upload_too_large",
                       f"{name} is {len(upload.data) / MIB:.1f} MiB, over the limit of {max_bytes / MIB:.1f} MiB; "
                       "send a smaller image")
    kind = sniff_image_type(upload.data)
    if kind is None or kind not in accepted:
        what = "not an image this service recognises" if kind is None else f"a {kind.upper()} image"
        raise ApiError(415, "unsupported_media_type",
                       f"{name} is {what}; accepted formats: {', '.join(t.upper() for t in accepted)}")
    return kind


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, in memory, or ``ApiError(413)`` once it exceeds ``limit`` bytes (declared or counted).

    The rest of an over-limit body is read and dropped (up to :data:`DRAIN_LIMIT`) so that the client, still
    sending, gets the 413 rather than a reset connection.
    """
    declared = request.headers.get("content-length", "")
    over = declared.isdigit() and int(declared) > limit
    if over and int(declared) > DRAIN_LIMIT:
        raise _too_big(limit)  # not worth reading: answer now and let the server close the connection
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if over or size > limit:
                over = True
                chunks.clear()
                if size > DRAIN_LIMIT:
                    break
                continue
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the client closed the connection during the upload") from None
    if over:
        raise _too_big(limit)
    return b"".join(chunks)


def _too_big(limit: int) -> ApiError:
    return ApiError(413, "upload_too_large",
                    f"the request body is over the limit of {limit / MIB:.1f} MiB; send a smaller image "
                    "(or fewer images per batch)", headers={"Connection": "close"})


def parse_multipart(body: bytes, content_type: str, max_parts: int) -> list[Upload]:
    """The file parts of a ``multipart/form-data`` body (field names are not checked), parsed in memory.

    Raises ``ApiError(400, "bad_request")`` for malformed data and ``ApiError(413, "too_many_images")``
    past ``max_parts`` files.
    """
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_request", "multipart/form-data without a boundary; let the HTTP client build "
                                           "the form (e.g. curl -F file=@photo.jpg)")
    parts: list[dict[str, Any]] = []
    header: dict[str, bytes] = {"name": b"", "value": b""}

    def on_part_begin() -> None:
        parts.append({"headers": {}, "data": bytearray()})

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"] += data[start:end]

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["name"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        parts[-1]["headers"][header["name"].lower()] = header["value"]
        header["name"], header["value"] = b"", b""

    def on_headers_finished() -> None:
        files = sum(1 for p in parts if b"filename" in parse_options_header(
            p["headers"].get(b"content-disposition", b""))[1])
        if files > max_parts:
            hint = ("send one image per request here, or several to /v1/predict/batch" if max_parts == 1
                    else "split the batch")
            raise ApiError(413, "too_many_images", f"more than {max_parts} image(s) in one request; {hint}")

    callbacks: Any = {"on_part_begin": on_part_begin, "on_part_data": on_part_data,
                      "on_header_field": on_header_field, "on_header_value": on_header_value,
                      "on_header_end": on_header_end, "on_headers_finished": on_headers_finished}
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise ApiError(400, "bad_request", f"malformed multipart/form-data ({exc})") from None
    uploads = []
    for p in parts:
        _, opts = parse_options_header(p["headers"].get(b"content-disposition", b""))
        if b"filename" not in opts:
            continue  # plain form fields are ignored
        filename = opts[b"filename"].decode("utf-8", "replace")
        ctype = p["headers"].get(b"content-type", b"").decode("latin-1")
        uploads.append(Upload(filename=filename, data=bytes(p["data"]), content_type=ctype))
    return uploads


async def read_uploads(request: Request, *, max_files: int, max_file_bytes: int, max_body_bytes: int) -> list[Upload]:
    """The images of a request: the file parts of a multipart form, or the raw body when its content type is
    ``image/*`` or ``application/octet-stream``. Other content types give 415."""
    ctype = request.headers.get("content-type", "").strip()
    base = ctype.split(";")[0].strip().lower()
    if base == "multipart/form-data":
        body = await read_body(request, max_body_bytes)
        uploads = parse_multipart(body, ctype, max_files)
        if not uploads:
            raise ApiError(422, "no_file", "the form has no file part; send the image as a file field "
                                           "(e.g. curl -F file=@photo.jpg)")
        return uploads
    if base.startswith(RAW_IMAGE_TYPES):
        body = await read_body(request, max_file_bytes)
        return [Upload(filename=request.headers.get("x-filename", "upload"), data=body, content_type=base)]
    if not base:
        raise ApiError(415, "unsupported_media_type", "no Content-Type; send multipart/form-data with a file field, "
                                                      "or the image bytes with Content-Type image/jpeg (or image/png, ...)")
    raise ApiError(415, "unsupported_media_type",
                   f"Content-Type {base} is not accepted; send multipart/form-data with a file field, or the image "
                   "bytes with Content-Type image/jpeg (or image/png, ...)")
