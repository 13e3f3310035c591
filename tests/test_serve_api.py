"""HTTP service with FastAPI's TestClient: every endpoint, every error code, batches with bad files,
concurrency, health checks while the model works, offline docs/page, settings and the ``serve`` command."""

from __future__ import annotations

import asyncio
import io
import re
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import agegender  # noqa: F401  (torchvision compat first)
from agegender.errors import AgeGenderError
from agegender.inference.predictor import load
from agegender.inference.results import ImageResult, PersonResult
from helpers_models import grace_hopper_path, grace_rgb, jpeg_bytes, png_with_header_size, write_tiny_package

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from agegender.serve import ServeSettings, create_app
from agegender.serve.app import HTTP_STATUS_FOR_CODE
from agegender.serve.docs import find_swagger_assets
from agegender.serve.uploads import sniff_image_type

MAX_UPLOAD = 400_000
MAX_PIXELS = 1_000_000
MAX_BATCH = 4


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_package(tmp_path_factory.mktemp("serve-model") / "tiny-face.safetensors", "face")


@pytest.fixture(scope="module")
def settings() -> ServeSettings:
    return ServeSettings(max_upload_bytes=MAX_UPLOAD, max_batch_bytes=3 * MAX_UPLOAD, max_pixels=MAX_PIXELS,
                         max_batch_images=MAX_BATCH, workers=2, threads=1, timeout_s=60)


@pytest.fixture(scope="module")
def client(model_path: Path, settings: ServeSettings) -> Iterator[TestClient]:
    with TestClient(create_app(model_path, settings)) as c:
        yield c


@pytest.fixture(scope="module")
def reference(model_path: Path) -> Any:
    """The Python API on the same model: what the service must return."""
    return load(model_path, threads=1, max_pixels=MAX_PIXELS)


@pytest.fixture(scope="module")
def grace() -> bytes:
    return grace_hopper_path().read_bytes()


def _variant(i: int) -> bytes:
    """Distinct JPEGs (size and mirror differ) so mixed-up answers would show."""
    im = Image.fromarray(grace_rgb())
    w, h = 128 + 16 * i, 150 + 12 * i
    im = im.resize((w, h), Image.BILINEAR)
    if i % 2:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return jpeg_bytes(np.asarray(im))


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _err(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body


class FakePredictor:
    """A stand-in predictor: optional gate (blocks until released; only for sources starting with
    ``gate_prefix`` when given), fixed status, or an exception. It records the shape of every image it gets
    (the service hands it decoded arrays) and finds one "person" in the middle quarter of each."""

    name = "fake"

    def __init__(self, status: str = "ok", gate: threading.Event | None = None,
                 exc: Exception | None = None, gate_prefix: str = "") -> None:
        self.status, self.gate, self.exc, self.gate_prefix = status, gate, exc, gate_prefix
        self.started = threading.Event()
        self.seen: list[tuple[int, ...]] = []

    def info(self) -> dict[str, Any]:
        return {"name": "fake", "version": "0", "source": "/secret/path/fake.pt"}

    def predict_image(self, data: np.ndarray, source: str | None = None) -> ImageResult:
        self.seen.append(tuple(data.shape))
        if self.gate is not None and (source or "").startswith(self.gate_prefix):
            self.started.set()
            self.gate.wait(10)
        if self.exc is not None:
            raise self.exc
        h, w = data.shape[:2]
        box = (w / 4, h / 4, w / 2, h / 2)
        people = [PersonResult(box=box, detector_score=1.0, gender="female")] if self.status == "ok" else []
        return ImageResult(source=source or "", status=self.status, message=f"fake {self.status}", width=w,
                           height=h, people=people)

    def predict_batch(self, images: list[bytes], workers: int | None = None,
                      sources: list[str] | None = None) -> list[ImageResult]:
        return [self.predict_image(d, s) for d, s in zip(images, sources or [""] * len(images))]


def _fake_client(fake: Any, **limits: Any) -> TestClient:
    return TestClient(create_app(fake, ServeSettings(**limits)), raise_server_exceptions=False)


# ------------------------------------------------------------------------------------------------ endpoints


def test_predict_multipart_matches_python_api(client: TestClient, reference: Any, grace: bytes) -> None:
    r = client.post("/v1/predict", files={"file": ("grace.jpg", grace, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"model", "version", "image", "people", "status", "timing_ms"} <= set(body)
    assert (body["model"], body["version"], body["status"], body["filename"]) == ("tiny-face", "test", "ok", "grace.jpg")
    assert body["image"] == {"width": 512, "height": 600}
    assert set(body["timing_ms"]) == {"total", "queue", "inference"}
    expected = [p.to_dict() for p in reference.predict(grace)]
    assert len(expected) == 1
    assert [_jsonish(p) for p in expected] == body["people"]  # the same fields and values as the Python API


def _jsonish(d: Any) -> Any:
    """Python result → what JSON gives back (tuples become lists)."""
    if isinstance(d, dict):
        return {k: _jsonish(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonish(v) for v in d]
    return d


def test_predict_raw_body(client: TestClient, grace: bytes) -> None:
    multipart = client.post("/v1/predict", files={"file": ("g.jpg", grace, "image/jpeg")}).json()
    raw = client.post("/v1/predict", content=grace, headers={"Content-Type": "image/jpeg", "X-Filename": "raw.jpg"})
    assert raw.status_code == 200, raw.text
    assert raw.json()["filename"] == "raw.jpg"
    assert raw.json()["people"] == multipart["people"]
    # a browser may send any image type or octet-stream: the magic bytes decide
    small = np.asarray(Image.fromarray(grace_rgb()).resize((256, 300)))
    png = client.post("/v1/predict", content=_png(small), headers={"Content-Type": "application/octet-stream"})
    assert png.status_code == 200 and png.json()["image"] == {"width": 256, "height": 300}


def test_predict_no_face(client: TestClient) -> None:
    gray = np.full((200, 200, 3), 128, np.uint8)
    r = client.post("/v1/predict", files={"file": ("gray.jpg", jpeg_bytes(gray), "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "no_face" and r.json()["people"] == []


def test_healthz_and_models(client: TestClient, settings: ServeSettings) -> None:
    h = client.get("/healthz")
    assert h.status_code == 200
    assert h.json()["status"] == "ok" and h.json()["model"] == "tiny-face" and h.json()["workers"] == 2
    m = client.get("/v1/models").json()
    assert m["models"][0]["name"] == "tiny-face"
    assert m["models"][0]["source"] == "tiny-face.safetensors"  # file name only, not the server's folders
    assert "gender" in m["models"][0]["tasks"]
    assert m["limits"]["max_upload_bytes"] == MAX_UPLOAD and m["limits"]["max_batch_images"] == MAX_BATCH
    assert isinstance(m["bundled"], list)


def test_openapi_and_docs_work_offline(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/predict/batch", "/v1/models", "/healthz"} <= set(spec["paths"])
    responses = spec["paths"]["/v1/predict"]["post"]["responses"]
    assert {"200", "400", "413", "415", "422", "503", "504"} <= set(responses)
    assert "multipart/form-data" in spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert not re.search(r"(src|href)=[\"']https?://", docs.text)  # nothing from a CDN


def test_docs_builtin_and_local_swagger(tmp_path: Path) -> None:
    builtin = _fake_client(FakePredictor(), docs_assets=str(tmp_path / "missing"))
    page = builtin.get("/docs")
    assert page.status_code == 200 and "static/docs.js" in page.text
    assert builtin.get("/static/docs.js").status_code == 200
    (tmp_path / "swagger-ui-bundle.js").write_text("/* js */")
    (tmp_path / "swagger-ui.css").write_text("/* css */")
    assert find_swagger_assets(tmp_path) == tmp_path
    local = _fake_client(FakePredictor(), docs_assets=str(tmp_path))
    html = local.get("/docs").text
    assert "/docs/assets/swagger-ui-bundle.js" in html and "cdn" not in html
    assert local.get("/docs/assets/swagger-ui-bundle.js").text == "/* js */"


def test_page_is_served_without_external_resources(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert 'id="results"' in page.text and 'type="file"' in page.text
    for asset in ("static/app.js", "static/style.css"):
        r = client.get("/" + asset)
        assert r.status_code == 200 and asset.split("/")[1] in page.text
        assert not re.search(r"https?://", r.text), asset  # works offline: no CDN, no external fonts
    assert not re.search(r"(src|href)=[\"']https?://", page.text)


# ------------------------------------------------------------------------------------------------ error codes


def test_413_upload_too_large(client: TestClient) -> None:
    big = b"\xff\xd8\xff" + b"\0" * (MAX_UPLOAD + 10)
    _err(client.post("/v1/predict", files={"file": ("big.jpg", big, "image/jpeg")}), 413, "upload_too_large")
    _err(client.post("/v1/predict", content=big, headers={"Content-Type": "image/jpeg"}), 413, "upload_too_large")


def test_413_chunked_upload_without_length(client: TestClient) -> None:
    chunks = iter([b"\xff\xd8\xff" + b"\0" * (MAX_UPLOAD // 2), b"\0" * MAX_UPLOAD])  # no Content-Length
    _err(client.post("/v1/predict", content=chunks, headers={"Content-Type": "image/jpeg"}), 413, "upload_too_large")


def test_413_too_many_pixels(client: TestClient) -> None:
    bomb = png_with_header_size(5000, 5000)  # 25 MP declared in a few bytes: rejected before decoding
    body = _err(client.post("/v1/predict", files={"file": ("bomb.png", bomb, "image/png")}), 413, "too_large")
    assert "megapixels" in body["error"]["message"]


def test_413_too_many_images(client: TestClient, grace: bytes) -> None:
    files = [("files", (f"{i}.jpg", grace, "image/jpeg")) for i in range(MAX_BATCH + 1)]
    _err(client.post("/v1/predict/batch", files=files), 413, "too_many_images")
    two = [("file", (f"{i}.jpg", grace, "image/jpeg")) for i in range(2)]
    _err(client.post("/v1/predict", files=two), 413, "too_many_images")


def test_415_not_an_accepted_image(client: TestClient, grace: bytes) -> None:
    # text named .jpg and sent as image/jpeg: the magic bytes decide, not the name or the header
    _err(client.post("/v1/predict", files={"file": ("x.jpg", b"hello, not a jpeg", "image/jpeg")}), 415,
         "unsupported_media_type")
    _err(client.post("/v1/predict", content=b"hello", headers={"Content-Type": "image/png"}), 415,
         "unsupported_media_type")
    _err(client.post("/v1/predict", content=grace, headers={"Content-Type": "text/plain"}), 415,
         "unsupported_media_type")
    _err(client.post("/v1/predict", content=grace), 415, "unsupported_media_type")  # no Content-Type
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"/>'
    _err(client.post("/v1/predict", files={"file": ("x.svg", svg, "image/svg+xml")}), 415, "unsupported_media_type")


def test_415_type_not_in_accepted_types() -> None:
    c = _fake_client(FakePredictor(), accepted_types=("jpeg",))
    body = _err(c.post("/v1/predict", files={"file": ("g.png", _png(grace_rgb()), "image/png")}), 415,
                "unsupported_media_type")
    assert "PNG" in body["error"]["message"]
    assert c.post("/v1/predict", files={"file": ("g.jpg", jpeg_bytes(grace_rgb()), "image/jpeg")}).status_code == 200


def test_400_corrupt_empty_and_malformed(client: TestClient, grace: bytes) -> None:
    body = _err(client.post("/v1/predict", files={"file": ("cut.jpg", grace[: len(grace) // 2], "image/jpeg")}), 400,
                "unreadable")
    assert "cut.jpg" in body["error"]["message"]
    _err(client.post("/v1/predict", files={"file": ("empty.jpg", b"", "image/jpeg")}), 400, "empty_file")
    # right magic bytes, damaged header: a corrupt image (400), not a wrong type (415)
    _err(client.post("/v1/predict", content=b"\xff\xd8\xff" + b"\0" * 40, headers={"Content-Type": "image/jpeg"}),
         400, "not_an_image")
    _err(client.post("/v1/predict", content=b"", headers={"Content-Type": "image/jpeg"}), 400, "empty_file")
    _err(client.post("/v1/predict", content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"}), 400,
         "bad_request")


def test_422_no_file_in_form(client: TestClient) -> None:
    _err(client.post("/v1/predict", data={"note": "no file here"}, files={"other": (None, "x")}), 422, "no_file")


def test_504_timeout_and_503_busy() -> None:
    gate = threading.Event()
    fake = FakePredictor(gate=gate)
    with _fake_client(fake, timeout_s=0.2, max_pending=1) as c:
        try:
            _err(c.post("/v1/predict", files={"file": ("g.jpg", jpeg_bytes(grace_rgb()), "image/jpeg")}), 504, "timeout")
            # the timed-out job still holds the only worker (threads cannot be killed): the queue is full
            r = _err(c.post("/v1/predict", files={"file": ("g.jpg", jpeg_bytes(grace_rgb()), "image/jpeg")}), 503,
                     "busy")
            assert r and c.get("/healthz").json()["running"] == 1
        finally:
            gate.set()


def test_500_internal_errors_are_json() -> None:
    img = {"file": ("g.jpg", jpeg_bytes(grace_rgb()), "image/jpeg")}
    _err(_fake_client(FakePredictor(status="error")).post("/v1/predict", files=img), 500, "internal_error")
    _err(_fake_client(FakePredictor(exc=RuntimeError("boom"))).post("/v1/predict", files=img), 500, "internal_error")
    _err(_fake_client(FakePredictor(status="unsupported")).post("/v1/predict", files=img), 422, "unsupported")


def test_404_405_are_json(client: TestClient) -> None:
    _err(client.get("/v1/nothing"), 404, "not_found")
    _err(client.get("/v1/predict"), 405, "method_not_allowed")


def test_every_predictor_status_has_an_http_status() -> None:
    from agegender.data.images import ERROR_CODES

    for code in ERROR_CODES:
        if code != "missing_file":  # a path on the server: never reachable through an upload
            assert code in HTTP_STATUS_FOR_CODE


# ------------------------------------------------------------------------------------------------ batch


def test_batch_mixed_good_and_bad(client: TestClient, grace: bytes) -> None:
    files = [
        ("files", ("good.jpg", grace, "image/jpeg")),
        ("files", ("notes.txt", b"just text", "text/plain")),
        ("files", ("cut.jpg", grace[: len(grace) // 3], "image/jpeg")),
        ("files", ("empty.jpg", b"", "image/jpeg")),
    ]
    r = client.post("/v1/predict/batch", files=files)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["filename"] for x in res] == ["good.jpg", "notes.txt", "cut.jpg", "empty.jpg"]
    assert [x["index"] for x in res] == [0, 1, 2, 3]
    assert [x["status"] for x in res] == ["ok", "unsupported_media_type", "unreadable", "empty_file"]
    assert [x["http_status"] for x in res] == [200, 415, 400, 400]
    assert all(x["error"]["code"] == x["status"] for x in res[1:]) and res[0]["error"] is None
    single = client.post("/v1/predict", files={"file": ("good.jpg", grace, "image/jpeg")}).json()
    assert res[0]["people"] == single["people"] and res[0]["image"] == single["image"]
    assert r.json()["counts"] == {"ok": 1, "unsupported_media_type": 1, "unreadable": 1, "empty_file": 1}

    files = [("files", ("bomb.png", png_with_header_size(5000, 5000), "image/png")),
             ("files", ("big.jpg", b"\xff\xd8\xff" + b"\0" * (MAX_UPLOAD + 1), "image/jpeg")),
             ("files", ("gray.png", _png(np.full((64, 64, 3), 99, np.uint8)), "image/png"))]
    res = client.post("/v1/predict/batch", files=files).json()["results"]
    assert [(x["status"], x["http_status"]) for x in res] == [("too_large", 413), ("upload_too_large", 413),
                                                             ("no_face", 200)]


def test_batch_body_limit(client: TestClient) -> None:
    files = [("files", (f"{i}.jpg", b"\xff\xd8\xff" + b"\0" * (MAX_UPLOAD - 10), "image/jpeg")) for i in range(4)]
    _err(client.post("/v1/predict/batch", files=files), 413, "upload_too_large")


# ------------------------------------------------------------------------------------------------ concurrency


def test_concurrent_requests_never_mix_results(client: TestClient) -> None:
    images = [_variant(i) for i in range(8)]
    expected = [client.post("/v1/predict", files={"file": (f"{i}.jpg", d, "image/jpeg")}).json()
                for i, d in enumerate(images)]
    order = [i % 8 for i in range(24)]

    def send(i: int) -> tuple[int, dict[str, Any]]:
        return i, client.post("/v1/predict", files={"file": (f"{i}.jpg", images[i], "image/jpeg")}).json()

    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(send, order))
    for i, body in got:
        assert body["filename"] == f"{i}.jpg"
        assert body["image"] == expected[i]["image"]
        assert body["people"] == expected[i]["people"]
    assert len({tuple(e["image"].values()) for e in expected}) == 8  # the variants really differ
    assert sum(len(e["people"]) for e in expected) >= 6  # and most have a face, so the people are compared too


def test_healthz_answers_while_the_model_works() -> None:
    gate = threading.Event()
    fake = FakePredictor(gate=gate)
    with _fake_client(fake, timeout_s=30) as c, ThreadPoolExecutor(1) as ex:
        try:
            fut = ex.submit(c.post, "/v1/predict", files={"file": ("g.jpg", jpeg_bytes(grace_rgb()), "image/jpeg")})
            assert fake.started.wait(10)
            h = c.get("/healthz")  # the model is blocked right now
            assert h.status_code == 200 and h.json()["running"] == 1
            assert not fut.done()
        finally:
            gate.set()
        assert fut.result(10).status_code == 200


def test_uploads_are_not_written_to_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("an upload was written to a temporary file")

    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    noise = np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)
    data = _png(noise)
    assert len(data) > 1024 * 1024  # above Starlette's 1 MB in-memory spool size
    fake = FakePredictor()
    c = _fake_client(fake, max_upload_bytes=4 * 1024 * 1024)
    r = c.post("/v1/predict", files={"file": ("noise.png", data, "image/png")})
    assert r.status_code == 200 and r.json()["image"] == {"width": 700, "height": 700}
    assert fake.seen == [(700, 700, 3)]  # the whole upload arrived and decoded


# ------------------------------------------------------------------------------------------------ big images


def _flat_png(width: int, height: int) -> bytes:
    """A flat-colour PNG: a few KiB that decode to width × height pixels (the amplification of issue #19)."""
    return _png(np.full((height, width, 3), (90, 120, 150), np.uint8))


def _exif_jpeg(width: int, height: int, orientation: int = 1) -> bytes:
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[: height // 2, : width // 2] = (255, 0, 0)  # a red top-left quarter, to see the turn
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=85, exif=exif.tobytes())
    return buf.getvalue()


def test_big_images_reach_the_model_reduced_with_boxes_in_full_size_pixels() -> None:
    fake = FakePredictor()
    c = _fake_client(fake, decode_side=256)
    cases = [("wide.png", _flat_png(1200, 900), (1200, 900), (256, 192)),  # downscaled after decoding
             ("big.jpg", _exif_jpeg(2400, 1800), (2400, 1800), (256, 192)),  # 1/8-scale draft, then downscaled
             ("turned.jpg", _exif_jpeg(2400, 1800, orientation=6), (1800, 2400), (192, 256)),  # EXIF: 90° turn
             ("small.png", _flat_png(200, 100), (200, 100), (200, 100))]  # at or under decode_side: untouched
    for name, data, (w, h), (rw, rh) in cases:
        r = c.post("/v1/predict", files={"file": (name, data, "image/png")})
        assert r.status_code == 200, r.text
        assert fake.seen[-1] == (rh, rw, 3), name  # the model never got the full-size pixels
        body = r.json()
        assert body["image"] == {"width": w, "height": h}, name
        # the fake's box is the middle quarter of what it saw: it must come back in the full image's pixels
        assert body["people"][0]["box"] == pytest.approx([w / 4, h / 4, w / 2, h / 2], abs=0.2), name
    batch = c.post("/v1/predict/batch", files=[("files", (n, d, "image/png")) for n, d, *_ in cases])
    assert [(x["image"]["width"], x["image"]["height"]) for x in batch.json()["results"]] == [x[2] for x in cases]
    assert batch.json()["results"][2]["people"][0]["box"] == pytest.approx([450, 600, 900, 1200], abs=0.2)


def test_reduced_decoding_with_the_real_predictor(model_path: Path) -> None:
    """Detector "none": the box is the whole image, so it must be the full image's, not the reduced one's."""
    s = ServeSettings(workers=1, threads=1, timeout_s=60, detector="none", decode_side=128)
    with TestClient(create_app(model_path, s)) as c:
        r = c.post("/v1/predict", files={"file": ("t.jpg", _exif_jpeg(1200, 800, orientation=6), "image/jpeg")})
        assert r.status_code == 200, r.text
        assert r.json()["image"] == {"width": 800, "height": 1200}
        assert r.json()["people"][0]["box"] == pytest.approx([0, 0, 800, 1200], abs=0.2)


def test_413_too_many_pixels_per_request() -> None:
    c = _fake_client(FakePredictor(), decode_side=500, max_request_pixels=1_000_000, pixel_budget=2_000_000)
    body = _err(c.post("/v1/predict", files={"file": ("big.png", _flat_png(1100, 1000), "image/png")}), 413,
                "too_many_pixels")
    assert "big.png" in body["error"]["message"] and "1.1 megapixels" in body["error"]["message"]
    assert "limit of 1.0" in body["error"]["message"] and "JPEG" in body["error"]["message"]
    # the same 4.4 MP as a JPEG decodes at 1/4 scale (550 × 500): well within the limit
    r = c.post("/v1/predict", files={"file": ("big.jpg", _exif_jpeg(2200, 2000), "image/jpeg")})
    assert r.status_code == 200 and r.json()["image"] == {"width": 2200, "height": 2000}
    # a batch counts all its images
    three = [("files", (f"{i}.png", _flat_png(600, 600), "image/png")) for i in range(3)]
    body = _err(c.post("/v1/predict/batch", files=three), 413, "too_many_pixels")
    assert "batch" in body["error"]["message"]
    assert c.post("/v1/predict/batch", files=three[:2]).status_code == 200
    # a header over max_pixels is still refused as too_large before decoding, not counted here
    _err(c.post("/v1/predict", files={"file": ("bomb.png", png_with_header_size(9000, 9000), "image/png")}), 413,
         "too_large")


async def _until(cond: Any, what: str) -> None:
    for _ in range(1000):  # waits for the service to reach a state; never a timing assertion
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never reached: {what}")


def test_a_flood_of_big_images_does_not_starve_small_ones() -> None:
    """Issue #19: many big decodes at once used to fill the queue, so every small request got 503. Now one big
    image fits the pixel budget at a time, the others wait (or are refused once max_pending wait), and small
    requests go straight to the free worker."""
    httpx = pytest.importorskip("httpx")
    gate = threading.Event()
    fakes = [FakePredictor(gate=gate, gate_prefix="big") for _ in range(2)]  # two workers
    settings = ServeSettings(workers=2, max_pending=4, timeout_s=20, pixel_budget=1_500_000,
                             max_request_pixels=1_500_000)
    app = create_app(fakes, settings)
    big, small = _flat_png(1200, 1200), jpeg_bytes(np.asarray(Image.fromarray(grace_rgb()).resize((64, 75))))
    pool = app.state.pool

    async def scenario() -> tuple[list[Any], list[Any], dict[str, Any]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
            bigs = [asyncio.create_task(client.post("/v1/predict", files={"file": (f"big{i}.png", big, "image/png")}))
                    for i in range(8)]
            await _until(lambda: sum(t.done() for t in bigs) == 3 and pool.stats()["waiting_for_pixels"] == 4
                         and pool.stats()["running"] == 1, "one big running, four waiting, three refused")
            health = (await client.get("/healthz")).json()
            smalls = [await client.post("/v1/predict", files={"file": (f"s{i}.jpg", small, "image/jpeg")})
                      for i in range(6)]  # one after the other, while the big images hold the budget
            gate.set()
            return smalls, list(await asyncio.gather(*bigs)), health

    try:
        smalls, bigs, health = asyncio.run(scenario())
    finally:
        gate.set()
        pool.close()
    assert [r.status_code for r in smalls] == [200] * 6
    assert (health["pixels_in_flight"], health["waiting_for_pixels"]) == (1200 * 1200, 4)
    outcomes = sorted((r.status_code, r.json().get("error", {}).get("code")) for r in bigs)
    assert outcomes == [(200, None)] * 5 + [(503, "pixel_budget_full")] * 3
    assert pool.stats()["pixels_in_flight"] == 0  # every job gave its pixels back


def test_504_pixel_budget_timeout_and_running_jobs_keep_their_pixels() -> None:
    gate = threading.Event()
    fakes = [FakePredictor(gate=gate, gate_prefix="big") for _ in range(2)]
    c = TestClient(create_app(fakes, ServeSettings(workers=2, timeout_s=0.3, pixel_budget=1_500_000,
                                                   max_request_pixels=1_500_000)), raise_server_exceptions=False)
    big = {"file": ("big.png", _flat_png(1200, 1200), "image/png")}
    try:
        _err(c.post("/v1/predict", files=big), 504, "timeout")  # it runs on, blocked, holding its pixels
        assert c.get("/healthz").json()["pixels_in_flight"] == 1200 * 1200
        body = _err(c.post("/v1/predict", files=big), 504, "pixel_budget_timeout")
        assert "0.3 s" in body["error"]["message"]
        assert c.post("/v1/predict", files={"file": ("s.png", _flat_png(64, 64), "image/png")}).status_code == 200
    finally:
        gate.set()
    for _ in range(500):  # the blocked job ends and gives its pixels back
        if c.get("/healthz").json()["pixels_in_flight"] == 0:
            break
        threading.Event().wait(0.01)
    assert c.post("/v1/predict", files=big).status_code == 200


def test_pixel_budget_admits_waiters_smallest_first() -> None:
    from agegender.serve.uploads import ApiError
    from agegender.serve.workers import PixelBudget

    async def scenario() -> None:
        budget = PixelBudget(10, max_waiting=3)
        await budget.acquire(10, 5)
        order: list[int] = []

        async def take(cost: int) -> None:
            await budget.acquire(cost, 5)
            order.append(cost)

        tasks = [asyncio.create_task(take(c)) for c in (7, 5, 2)]
        await _until(lambda: budget.waiting == 3, "three waiters")
        with pytest.raises(ApiError) as exc:
            await budget.acquire(1, 5)  # a fourth waiter is refused
        assert (exc.value.status, exc.value.code) == (503, "pixel_budget_full")
        budget.release(4)  # 6 in use: only the 2 fits
        await _until(lambda: order == [2], "the smallest first")
        budget.release(6)  # 2 in use: the 5 fits, the 7 does not
        await _until(lambda: order == [2, 5], "then the next smallest")
        budget.release(5)
        await asyncio.gather(*tasks)
        assert order == [2, 5, 7] and budget.in_use == 9 and budget.waiting == 0

    asyncio.run(scenario())


def test_queued_jobs_start_cheapest_first() -> None:
    from agegender.serve.workers import PredictorPool

    gate, order = threading.Event(), []

    async def scenario() -> None:
        pool = PredictorPool([object()], max_pending=8, timeout_s=10, pixel_budget=1000)
        first = asyncio.create_task(pool.run(lambda _p: (gate.wait(10), order.append("first")), cost=1))
        await _until(lambda: pool.stats()["running"] == 1, "the first job running")
        big = asyncio.create_task(pool.run(lambda _p: order.append("big"), cost=500))
        await _until(lambda: pool.stats()["queued"] == 1, "the big job queued")
        small = asyncio.create_task(pool.run(lambda _p: order.append("small"), cost=2))
        await _until(lambda: pool.stats()["queued"] == 2, "the small job queued")
        gate.set()
        await asyncio.gather(first, big, small)
        pool.close()

    try:
        asyncio.run(scenario())
    finally:
        gate.set()
    assert order == ["first", "small", "big"]


# ------------------------------------------------------------------------------------------------ settings, sniffing, CLI


def test_settings_from_env_and_overrides() -> None:
    env = {"AGEGENDER_MAX_UPLOAD_BYTES": "1234", "AGEGENDER_TIMEOUT_S": "2.5", "AGEGENDER_ACCEPTED_TYPES": "jpeg, png",
           "AGEGENDER_WORKERS": "3", "AGEGENDER_DETECTOR": "none", "AGEGENDER_THREADS": ""}
    s = ServeSettings.from_env(env, workers=None, max_batch_images=7)
    assert (s.max_upload_bytes, s.timeout_s, s.accepted_types, s.workers, s.detector, s.threads, s.max_batch_images) \
        == (1234, 2.5, ("jpeg", "png"), 3, "none", None, 7)
    assert ServeSettings.from_env(env, max_upload_bytes=99).max_upload_bytes == 99  # flags win over env
    with pytest.raises(AgeGenderError, match="AGEGENDER_MAX_PIXELS"):
        ServeSettings.from_env({"AGEGENDER_MAX_PIXELS": "lots"})
    with pytest.raises(AgeGenderError, match="heic"):
        ServeSettings(accepted_types=("jpeg", "heic"))
    with pytest.raises(AgeGenderError, match="timeout"):
        ServeSettings(timeout_s=0)
    assert ServeSettings.from_env({"AGEGENDER_BACKEND": "onnx"}).backend == "onnx"
    s = ServeSettings.from_env({"AGEGENDER_PIXEL_BUDGET": "2e8", "AGEGENDER_MAX_REQUEST_PIXELS": "60000000",
                                "AGEGENDER_DECODE_SIDE": "1024"})
    assert (s.pixel_budget, s.max_request_pixels, s.decode_side) == (200_000_000, 60_000_000, 1024)
    assert ServeSettings().to_dict()["pixel_budget"] == 96_000_000
    with pytest.raises(AgeGenderError, match="max_request_pixels .* must not exceed pixel_budget"):
        ServeSettings(max_request_pixels=10, pixel_budget=5)
    with pytest.raises(AgeGenderError, match="backend must be torch, onnx, openvino or auto"):
        ServeSettings(backend="tensorrt")


def test_service_runs_the_backend_it_is_given(model_path: Path, grace: bytes, reference: Any) -> None:
    """--backend onnx: the workers run ONNX Runtime, /v1/models says so, and answers match the Python API."""
    s = ServeSettings(workers=1, threads=1, timeout_s=60, backend="onnx")
    with TestClient(create_app(model_path, s)) as c:
        models = c.get("/v1/models").json()
        assert models["models"][0]["backend"] == "onnx" and models["limits"]["backend"] == "onnx"
        r = c.post("/v1/predict", files={"file": ("g.jpg", grace, "image/jpeg")})
        assert r.status_code == 200, r.text
        assert len(r.json()["people"]) == len(reference.predict(grace))


@pytest.mark.parametrize("fmt,name", [("JPEG", "jpeg"), ("PNG", "png"), ("GIF", "gif"), ("WEBP", "webp"),
                                      ("BMP", "bmp"), ("TIFF", "tiff")])
def test_sniff_image_type(fmt: str, name: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, format=fmt)
    assert sniff_image_type(buf.getvalue()) == name


def test_sniff_rejects_non_images() -> None:
    for data in (b"", b"hello", b"<html></html>", b"%PDF-1.7", b"GIF8"):
        assert sniff_image_type(data) is None


def test_cli_serve_help_and_errors() -> None:
    from typer.testing import CliRunner

    import agegender.cli_serve as cs
    from agegender.cli import app

    assert cs.is_loopback("127.0.0.1") and cs.is_loopback("localhost") and cs.is_loopback("::1")
    assert not cs.is_loopback("0.0.0.0") and not cs.is_loopback("192.168.1.2")
    runner = CliRunner()
    out = runner.invoke(app, ["serve", "--help"], terminal_width=200)
    assert out.exit_code == 0
    for flag in ("--host", "--port", "--model", "--workers", "--max-upload-mb", "--timeout"):
        assert flag in out.output
    bad = runner.invoke(app, ["serve", "--model", "no-such-model.safetensors"])
    assert bad.exit_code == 2 and "unknown model" in bad.output and "Traceback" not in bad.output


def test_cli_serve_settings_and_non_loopback_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import agegender.cli_serve  # registers `serve`
    import agegender.serve
    from agegender.cli import app

    calls: dict[str, Any] = {}

    def fake_create_app(model: Any, settings: ServeSettings) -> Any:
        calls["model"], calls["settings"] = model, settings
        return create_app(FakePredictor(), settings)

    monkeypatch.setattr(agegender.serve, "create_app", fake_create_app)
    monkeypatch.setattr("uvicorn.run", lambda app_, **kw: calls.update(run=kw))
    monkeypatch.setenv("AGEGENDER_MAX_BATCH_IMAGES", "5")
    monkeypatch.setenv("AGEGENDER_MAX_UPLOAD_BYTES", "1000")
    runner = CliRunner()
    out = runner.invoke(app, ["serve", "--model", "m.pt", "--max-upload-mb", "3", "--timeout", "7"])
    assert out.exit_code == 0, out.output
    s = calls["settings"]
    assert calls["model"] == "m.pt" and calls["run"]["host"] == "127.0.0.1" and calls["run"]["port"] == 8000
    assert (s.max_upload_bytes, s.max_batch_images, s.timeout_s) == (3 * 1024 * 1024, 5, 7.0)  # flag > env > default
    assert "warning" not in out.output
    out = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--port", "9000"])
    assert out.exit_code == 0 and calls["run"]["host"] == "0.0.0.0" and calls["run"]["port"] == 9000
    assert "warning: listening on 0.0.0.0" in out.output
