"""Tests for agegender.data.images: every input kind and colour mode, and every failure code."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

import agegender.data.images as images_module
from agegender.data.images import (
    DEFAULT_DECODE_SIDE,
    DEFAULT_MAX_PIXELS,
    ERROR_CODES,
    IMAGE_EXTENSIONS,
    decoded_pixels,
    iter_image_files,
    load_image,
    load_image_reduced,
    to_uint8,
)
from agegender.errors import AgeGenderError

RED = (255, 0, 0)
WHITE = (255, 255, 255)


def assert_rgb(array: np.ndarray, shape: tuple[int, int] | None = None) -> None:
    assert isinstance(array, np.ndarray)
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
    assert array.flags.c_contiguous
    if shape is not None:
        assert array.shape[:2] == shape


def assert_colour(pixel: np.ndarray, expected: tuple[int, int, int], tol: int = 12) -> None:
    assert np.all(np.abs(pixel.astype(int) - np.array(expected)) <= tol), (pixel, expected)


class _Raises:
    """``with _Raises("code"):`` asserts an AgeGenderError with that code and a non-empty message."""

    def __init__(self, code: str) -> None:
        self.code = code
        self._ctx = pytest.raises(AgeGenderError)

    def __enter__(self):
        self.info = self._ctx.__enter__()
        return self.info

    def __exit__(self, *exc):
        suppressed = self._ctx.__exit__(*exc)
        assert self.info.value.code == self.code, (self.info.value.code, str(self.info.value))
        assert len(str(self.info.value)) > 20
        return suppressed


def png_with_header_size(width: int, height: int) -> bytes:
    """A PNG whose header declares width×height but carries no pixel data (a bomb's calling card)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------------------------- colour modes


def _save(im: Image.Image, path: Path, **kw) -> Path:
    im.save(path, **kw)
    return path


def _red_p_with_transparency() -> Image.Image:
    im = Image.new("P", (8, 6), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.putpixel((0, 0), 1)
    im.info["transparency"] = 1
    return im


MODE_CASES = {
    # name: (builder(tmp_path) -> path, expected colour at (row 3, col 4))
    "rgb_jpeg": (lambda p: _save(Image.new("RGB", (8, 6), RED), p / "a.jpg", quality=95), RED),
    "gray_L_png": (lambda p: _save(Image.new("L", (8, 6), 128), p / "a.png"), (128, 128, 128)),
    "bilevel_1_png": (lambda p: _save(Image.new("1", (8, 6), 1), p / "a.png"), WHITE),
    "gray16_png": (
        lambda p: _save(Image.fromarray(np.full((6, 8), 128 * 257, np.uint16)), p / "a.png"),
        (128, 128, 128),
    ),
    "gray16_tiff": (
        lambda p: _save(Image.fromarray(np.full((6, 8), 65535, np.uint16)), p / "a.tif"),
        WHITE,
    ),
    "int32_I_tiff": (
        lambda p: _save(Image.fromarray(np.full((6, 8), 128 * 257, np.int32)), p / "a.tif"),
        (128, 128, 128),
    ),
    "float_F_tiff": (
        lambda p: _save(Image.fromarray(np.full((6, 8), 0.5, np.float32)), p / "a.tif"),
        (128, 128, 128),
    ),
    "rgba_png": (lambda p: _save(Image.new("RGBA", (8, 6), RED + (255,)), p / "a.png"), RED),
    "rgba_transparent_png": (lambda p: _save(Image.new("RGBA", (8, 6), (0, 0, 0, 0)), p / "a.png"), WHITE),
    "rgba_half_png": (
        lambda p: _save(Image.new("RGBA", (8, 6), (0, 0, 0, 128)), p / "a.png"),
        (127, 127, 127),
    ),
    "la_png": (lambda p: _save(Image.new("LA", (8, 6), (0, 255)), p / "a.png"), (0, 0, 0)),
    "palette_png": (lambda p: _save(Image.new("RGB", (8, 6), RED).convert("P"), p / "a.png"), RED),
    "palette_transparency_png": (lambda p: _save(_red_p_with_transparency(), p / "a.png"), RED),
    "cmyk_jpeg": (lambda p: _save(Image.new("CMYK", (8, 6), (0, 255, 255, 0)), p / "a.jpg", quality=95), RED),
    "cmyk_tiff": (lambda p: _save(Image.new("CMYK", (8, 6), (0, 255, 255, 0)), p / "a.tif"), RED),
    "bmp": (lambda p: _save(Image.new("RGB", (8, 6), RED), p / "a.bmp"), RED),
    "webp": (lambda p: _save(Image.new("RGB", (8, 6), RED), p / "a.webp", lossless=True), RED),
}


def _rgb16(path: Path) -> Path:
    bgr = np.zeros((6, 8, 3), np.uint16)
    bgr[..., 2] = 65535  # OpenCV writes BGR: channel 2 is red
    assert cv2.imwrite(str(path), bgr)
    return path


MODE_CASES["rgb16_png"] = (lambda p: _rgb16(p / "a.png"), RED)
MODE_CASES["rgb16_tiff"] = (lambda p: _rgb16(p / "a.tif"), RED)


@pytest.mark.parametrize("case", sorted(MODE_CASES))
def test_modes_decode_to_rgb_uint8(case: str, tmp_path: Path) -> None:
    build, colour = MODE_CASES[case]
    out = load_image(build(tmp_path))
    assert_rgb(out, (6, 8))
    assert_colour(out[3, 4], colour)


def test_palette_transparent_index_becomes_white(tmp_path: Path) -> None:
    out = load_image(_save(_red_p_with_transparency(), tmp_path / "p.png"))
    assert_colour(out[0, 0], WHITE)  # the pixel using the transparent palette entry
    assert_colour(out[1, 1], RED)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste(RED, (0, 0, 20, 20))  # left half red, right half blue as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = _save(im, tmp_path / "rotated.jpg", exif=exif, quality=95)
    out = load_image(path)
    assert_rgb(out, (40, 20))  # W×H swapped
    assert_colour(out[5, 10], RED, tol=30)  # the stored left side is now the top
    assert_colour(out[35, 10], (0, 0, 255), tol=30)


@pytest.mark.parametrize("ext", [".gif", ".webp"])
def test_animation_gives_first_frame(ext: str, tmp_path: Path) -> None:
    frames = [Image.new("RGB", (16, 12), c) for c in ("red", "lime", "blue")]
    path = tmp_path / f"anim{ext}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)
    assert Image.open(path).n_frames == 3
    out = load_image(path)
    assert_rgb(out, (12, 16))
    assert_colour(out[6, 8], RED)


def test_grace_hopper_loads(grace_hopper: Path) -> None:
    out = load_image(grace_hopper)
    assert_rgb(out, (600, 512))
    assert load_image(str(grace_hopper)).tobytes() == out.tobytes()


# ------------------------------------------------------------------------------------ other sources


def test_bytes_bytearray_fileobj_and_pil_sources(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), RED).save(buf, format="PNG")
    data = buf.getvalue()
    for source in (data, bytearray(data), memoryview(data), io.BytesIO(data)):
        out = load_image(source)
        assert_rgb(out, (6, 8))
        assert_colour(out[0, 0], RED, tol=0)
    out = load_image(Image.new("RGBA", (8, 6), (255, 0, 0, 0)))  # PIL image, fully transparent
    assert_colour(out[0, 0], WHITE, tol=0)


def test_numpy_bgr_is_converted() -> None:
    bgr = np.zeros((6, 8, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV order
    assert_colour(load_image(bgr, channel_order="BGR")[0, 0], (0, 0, 255), tol=0)
    assert_colour(load_image(bgr)[0, 0], RED, tol=0)  # the same array read as RGB
    bgra = np.zeros((6, 8, 4), np.uint8)
    bgra[..., 2] = 255
    bgra[..., 3] = 255
    assert_colour(load_image(bgra, channel_order="BGR")[0, 0], RED, tol=0)
    bgra[..., 3] = 0
    assert_colour(load_image(bgra, channel_order="BGR")[0, 0], WHITE, tol=0)


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((4, 5), 77, np.uint8), 77),
        (np.full((4, 5, 1), 77, np.uint8), 77),
        (np.full((4, 5, 3), 128 * 257, np.uint16), 128),
        (np.full((4, 5, 3), 0.5, np.float32), 128),
        (np.full((4, 5, 3), 200.0, np.float64), 200),
        (np.ones((4, 5), bool), 255),
        (np.full((4, 5), 128 * 257, np.dtype(">u2")), 128),  # big-endian 16-bit
    ],
)
def test_numpy_dtypes_and_shapes(array: np.ndarray, expected: int) -> None:
    out = load_image(array)
    assert_rgb(out, (4, 5))
    assert np.all(out == expected)


def test_lazily_opened_corrupt_pil_image(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), RED).save(buf, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[:-30])
    with Image.open(path) as im, _Raises("unreadable"):
        load_image(im)


def test_result_is_a_copy() -> None:
    source = np.zeros((4, 5, 3), np.uint8)
    out = load_image(source)
    out[:] = 9
    assert source.max() == 0


def test_to_uint8_stretches_unusual_ranges() -> None:
    out = to_uint8(np.array([[-1.0, 0.0, 3.0]]))
    assert out.tolist() == [[0, 64, 255]]
    assert to_uint8(np.array([[np.nan, 1.0]], np.float32)).tolist() == [[0, 255]]


# ------------------------------------------------------------------------------------------ failures


def test_missing_folder_and_empty(tmp_path: Path) -> None:
    with _Raises("missing_file"):
        load_image(tmp_path / "nope.jpg")
    with _Raises("not_an_image"):
        load_image(tmp_path)
    (tmp_path / "zero.jpg").write_bytes(b"")
    with _Raises("empty_file"):
        load_image(tmp_path / "zero.jpg")
    with _Raises("empty_file"):
        load_image(b"")


def test_text_file_with_image_extension(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a JPEG\n")
    with _Raises("not_an_image") as info:
        load_image(path)
    assert "notes.jpg" in str(info.value)
    with _Raises("not_an_image"):
        load_image(b"<html>404 not found</html>")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_unreadable(fmt: str, tmp_path: Path) -> None:
    # Decision (see module docstring): truncated files raise rather than decode half-grey.
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format=fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with _Raises("unreadable") as info:
        load_image(path)
    assert "truncated" in str(info.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # Pillow's global was not switched on


# Pillow warns about sizes between its soft and hard limits before our own error; expected here.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bomb_header_rejected_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(self, *a, **k):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    limit = Image.MAX_IMAGE_PIXELS
    # Far past Pillow's own hard limit, above Pillow's soft limit, and just over ours.
    for width, height in [(100_000, 100_000), (10_000, 10_000), (8000, 5001)]:
        path = tmp_path / f"bomb_{width}.png"
        path.write_bytes(png_with_header_size(width, height))
        with _Raises("too_large"):
            load_image(path)
    assert 8000 * 5001 > DEFAULT_MAX_PIXELS
    # A caller raising the limit above Pillow's gets Pillow's guard raised only for that call.
    (tmp_path / "big.png").write_bytes(png_with_header_size(15_000, 15_000))
    with _Raises("too_large"):
        load_image(tmp_path / "big.png", max_pixels=200_000_000)
    assert Image.MAX_IMAGE_PIXELS == limit


def test_real_compressible_image_over_low_limit(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (1500, 1000)), tmp_path / "flat.png")  # a few KB on disk
    assert path.stat().st_size < 20_000
    with _Raises("too_large") as info:
        load_image(path, max_pixels=1_000_000)
    assert "1500×1000" in str(info.value)
    assert load_image(path, max_pixels=None).shape == (1000, 1500, 3)
    with _Raises("too_large"):
        load_image(np.zeros((1000, 1500), np.uint8), max_pixels=1_000_000)


@pytest.mark.parametrize(
    "source",
    [
        np.zeros((3, 8, 8), np.uint8),  # channels first
        np.zeros((8, 8, 5), np.uint8),
        np.zeros((0, 8, 3), np.uint8),
        np.zeros((2, 8, 8, 3), np.uint8),
        np.zeros((8, 8), dtype=complex),
        12345,
    ],
)
def test_unsupported_inputs(source: object) -> None:
    with _Raises("unsupported"):
        load_image(source)  # type: ignore[arg-type]


def test_channels_first_hint_and_bad_channel_order() -> None:
    with _Raises("unsupported") as info:
        load_image(np.zeros((3, 8, 8), np.uint8))
    assert "transpose" in str(info.value)
    with _Raises("unsupported"):
        load_image(np.zeros((8, 8, 3), np.uint8), channel_order="RGBA")


# -------------------------------------------------------------------------------- iter_image_files


def test_iter_image_files(tmp_path: Path) -> None:
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for rel in ["z.jpg", "a.PNG", "notes.txt", "b/c.webp", "b/deep/d.tiff", "._a.jpg", ".hidden/e.jpg"]:
        (tmp_path / rel).write_bytes(b"x")
    flat = iter_image_files(tmp_path, recursive=False)
    assert [p.relative_to(tmp_path).as_posix() for p in flat] == ["a.PNG", "z.jpg"]
    deep = iter_image_files([tmp_path, tmp_path / "z.jpg", str(tmp_path / "notes.txt")])
    assert [p.relative_to(tmp_path).as_posix() for p in deep] == [
        "a.PNG",
        "b/c.webp",
        "b/deep/d.tiff",
        "notes.txt",  # named explicitly, so kept
        "z.jpg",  # listed once although reached twice
    ]
    assert iter_image_files(str(tmp_path)) == iter_image_files([tmp_path])
    with _Raises("missing_file"):
        iter_image_files([tmp_path, tmp_path / "missing"])


# ---------------------------------------------------------------------------------------------- reduced decoding


def _gradient(width: int, height: int) -> np.ndarray:
    """Smooth colours with a red top-left quarter: compresses well, and shows scaling and turning errors."""
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[:, :, 0] = np.linspace(0, 255, width).astype(np.uint8)[None, :]
    rgb[:, :, 1] = np.linspace(0, 255, height).astype(np.uint8)[:, None]
    rgb[:, :, 2] = 128
    rgb[: height // 2, : width // 2] = RED
    return rgb


def _encoded(rgb: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The size at which each image gets decoded from now on."""
    sizes: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def spy(self, *a, **k):
        sizes.append(self.size)
        return load(self, *a, **k)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return sizes


def test_big_jpeg_is_decoded_at_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    rgb = _gradient(6000, 4000)
    data = _encoded(rgb, "JPEG", quality=90)
    assert decoded_pixels(data, 1000) == 1500 * 1000  # from the header: 6000 // 1000 → the 1/4 scale
    loads = _loads(monkeypatch)
    small, full = load_image_reduced(data, max_side=1000)
    assert set(loads) == {(1500, 1000)}  # libjpeg produced the quarter-scale image: the 24 MP never existed
    assert_rgb(small, (667, 1000))
    assert full == (6000, 4000)
    expected = np.asarray(Image.fromarray(rgb).resize((1000, 667), Image.Resampling.BOX)).astype(int)
    assert np.abs(small.astype(int) - expected).mean() < 4  # the same picture, not a crop or a shift
    # at the default side a 4000 × 3000 phone photo decodes at half scale
    assert decoded_pixels(_encoded(_gradient(4000, 3000), "JPEG"), DEFAULT_DECODE_SIDE) == 2000 * 1500


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "I;16"])
def test_other_formats_are_downscaled_before_any_conversion(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rgb = _gradient(1500, 1000)
    im = Image.fromarray(rgb)
    im = Image.fromarray(rgb[:, :, 1].astype(np.uint16) * 257) if mode == "I;16" else im.convert(mode)
    data = _encoded(np.asarray(im), "PNG") if mode != "P" else _png_bytes(im)
    assert decoded_pixels(data, 300) == 1500 * 1000  # no reduced decoding outside JPEG: the full size counts
    converted: list[tuple[int, int]] = []
    to_rgb = images_module._pil_to_rgb
    monkeypatch.setattr(images_module, "_pil_to_rgb", lambda im, name: converted.append(im.size) or to_rgb(im, name))
    small, full = load_image_reduced(data, max_side=300)
    assert converted == [(300, 200)]  # conversion (and 16-bit scaling) only ever saw the reduced image
    assert_rgb(small, (200, 300))
    assert full == (1500, 1000)


def _png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_reduced_decoding_applies_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90° clockwise
    data = _encoded(_gradient(2400, 1600), "JPEG", quality=90, exif=exif.tobytes())
    small, full = load_image_reduced(data, max_side=600)
    assert full == (1600, 2400) and small.shape == (600, 400, 3)
    expected = load_image(data)  # the full decode, turned
    assert expected.shape == (2400, 1600, 3)
    scaled = np.asarray(Image.fromarray(expected).resize((400, 600), Image.Resampling.BOX)).astype(int)
    assert np.abs(small.astype(int) - scaled).mean() < 4
    assert_colour(small[100, 300], RED)  # the red quarter is now top right


def test_reduced_decoding_small_images_and_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _encoded(_gradient(300, 200), "PNG")
    small, full = load_image_reduced(data, max_side=1000)
    assert full == (300, 200) and np.array_equal(small, load_image(data))  # nothing to reduce
    assert load_image_reduced(data, max_side=None)[0].shape == (200, 300, 3)
    arr, full = load_image_reduced(np.zeros((100, 400, 3), np.uint8), max_side=200)  # already decoded
    assert arr.shape == (50, 200, 3) and full == (400, 100)
    # max_pixels is still checked on the header's full size, before any decoding, whatever max_side is
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda *a, **k: pytest.fail("pixels were decoded"))
    with _Raises("too_large"):
        load_image_reduced(png_with_header_size(3000, 3000), max_side=100, max_pixels=1_000_000)
    assert decoded_pixels(png_with_header_size(3000, 3000), 100, max_pixels=1_000_000) == 0  # refused: costs 0
    assert decoded_pixels(png_with_header_size(3000, 3000), 100, max_pixels=None) == 9_000_000
    assert decoded_pixels(b"not an image at all") == 0
    with _Raises("empty_file"):
        load_image_reduced(b"")


def test_constants() -> None:
    assert {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".avif"} == set(IMAGE_EXTENSIONS)
    assert set(ERROR_CODES) == {
        "missing_file",
        "empty_file",
        "not_an_image",
        "unreadable",
        "too_large",
        "unsupported",
    }
