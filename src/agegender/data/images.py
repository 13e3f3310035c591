"""Robust image input: every path, byte string, PIL image or array becomes an H×W×3 uint8 RGB array.

Everything a user can hand us goes through :func:`load_image`; each failure raises
:class:`~agegender.errors.AgeGenderError` with one of :data:`ERROR_CODES` and a message saying what to do.

Decisions (documented here so callers can rely on them):

- **Decoder:** Pillow (``torchvision.io`` decoders do not load on the CPU torch build we pin).
- **Orientation:** the EXIF ``Orientation`` tag is applied (``ImageOps.exif_transpose``), so a phone
  photo comes out the way viewers show it. A damaged EXIF block is ignored rather than fatal.
- **Transparency** (RGBA, LA, PA, P with a transparent colour, BGRA arrays): composited on **white**.
  Dropping alpha instead would expose whatever colour the encoder left under transparent pixels
  (often black), which no viewer shows.
- **High bit depth:** 16-bit grayscale (``I;16``), 32-bit integer (``I``) and float (``F``) images are
  scaled to 8 bits by :func:`to_uint8` (rule below). 16-bit RGB PNG/TIFF are reduced to 8 bits by Pillow.
- **CMYK / YCbCr:** Pillow's conversion; embedded ICC profiles are not applied.
- **Animations** (GIF, WebP, APNG, multi-page TIFF): the first frame.
- **Truncated or corrupt files** raise ``unreadable``: a half-grey photo would give a confident but
  wrong prediction, which is worse than an error the user can act on. Pillow's global
  ``LOAD_TRUNCATED_IMAGES`` is left alone.
- **Decompression bombs:** the pixel count declared in the header is checked against ``max_pixels``
  before any pixel is decoded (``too_large``). Pillow's own guard stays in force; it is only raised,
  for the duration of one call and under a lock, when the caller asks for a larger limit than Pillow's.
- **Reduced decoding** (:func:`load_image_reduced`, used by the HTTP service): an image whose longer side
  is over ``max_side`` is never held at full size as an array. JPEGs are decoded at 1/2, 1/4 or 1/8 scale
  by libjpeg (Pillow's ``draft``), never below ``max_side``; every image still larger is downscaled right
  after decoding, before any conversion. :func:`decoded_pixels` tells, from the header alone, how many
  pixels that decoding will produce, so a server can budget them before paying for them.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from agegender.errors import AgeGenderError

#: Lower-case file extensions (with the dot) that :func:`iter_image_files` treats as images.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".avif")

#: HEIC/HEIF photos: found in folders so that each gets a record saying it cannot be decoded here
HEIF_EXTENSIONS: tuple[str, ...] = (".heic", ".heif")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
#: first bytes of the formats Pillow decodes here (for files without an extension)
_IMAGE_MAGIC: tuple[bytes, ...] = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"RIFF",
                                   b"II*\x00", b"MM\x00*")

#: Default limit on width × height (40 megapixels: larger than any phone photo, far below a bomb).
DEFAULT_MAX_PIXELS: int = 40_000_000

#: Default longer side, in pixels, that :func:`load_image_reduced` decodes larger images to. It is above the
#: largest size a detector searches by default (BlazeFace 1920 px; Haar and dlib 640 px), so detection sees
#: the same image as at full size; and it is 2000 rather than 2048 so that 4000- and 4032-px phone photos
#: (12 MP) qualify for libjpeg's half-scale decoding (3 MP).
DEFAULT_DECODE_SIDE: int = 2000

#: Every ``AgeGenderError.code`` that :func:`load_image` / :func:`iter_image_files` can raise.
ERROR_CODES: tuple[str, ...] = (
    "missing_file",  # the path does not exist
    "empty_file",  # a file or byte string of length 0
    "not_an_image",  # not a format Pillow recognises (text, HTML, SVG, HEIC, ...) or a folder
    "unreadable",  # a recognised image that cannot be decoded: truncated, corrupt, permission denied
    "too_large",  # more pixels than ``max_pixels`` (decompression-bomb guard)
    "unsupported",  # an input of the wrong type, array shape/dtype, colour mode or option value
)

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray | IO[bytes]

_BOMB_LOCK = threading.Lock()
_ORIENTATION = 0x0112  # the EXIF Orientation tag
_FORMATS_HINT = "JPEG, PNG, BMP, GIF, WebP or TIFF"


def load_image(
    source: ImageSource,
    *,
    channel_order: str = "RGB",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Load ``source`` as a C-contiguous ``H×W×3`` ``uint8`` array in RGB order.

    Args:
        source: a file path (``str``/``Path``); the encoded file as ``bytes``/``bytearray``/``memoryview``
            or a binary file object; a ``PIL.Image.Image``; or a numpy array of shape ``H×W``,
            ``H×W×1``, ``H×W×3`` or ``H×W×4``. Arrays may be ``uint8``, ``uint16`` (full 16-bit range),
            ``bool``, other integers or floats; see :func:`to_uint8` for how they are scaled.
        channel_order: channel order of a numpy array: ``"RGB"`` (default) or ``"BGR"`` for OpenCV arrays
            (``BGR``/``BGRA`` are converted). Ignored for files, bytes and PIL images, whose order is known.
        max_pixels: reject images with more than this many pixels (width × height) with ``too_large``;
            ``None`` disables the check (and Pillow's guard) for trusted inputs.

    Returns:
        a new array (never a view of the caller's array), safe to modify.

    Raises:
        AgeGenderError: with ``code`` in :data:`ERROR_CODES`.

    >>> load_image(np.zeros((2, 3), dtype=np.uint8)).shape
    (2, 3, 3)
    """
    if channel_order not in ("RGB", "BGR"):
        raise AgeGenderError(
            f"channel_order must be 'RGB' or 'BGR', not {channel_order!r}", code="unsupported"
        )
    if isinstance(source, np.ndarray):
        return _from_array(source, channel_order=channel_order, max_pixels=max_pixels)
    if isinstance(source, Image.Image):
        _check_pixels(source.size, max_pixels, "the image")
        try:
            source.load()  # an image from Image.open is decoded lazily; a corrupt one fails here
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise AgeGenderError(f"the image cannot be decoded ({exc})", code="unreadable") from None
        return _pil_to_rgb(source, "the image")
    decoded = _decode_encoded(source, max_pixels, None)
    if decoded is not None:
        return decoded[0]
    raise AgeGenderError(
        f"cannot load an image from a {type(source).__name__}; pass a path, bytes, a PIL image "
        "or a numpy array",
        code="unsupported",
    )


def load_image_reduced(
    source: ImageSource,
    *,
    max_side: int | None = DEFAULT_DECODE_SIDE,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Like :func:`load_image`, but the array's longer side is at most ``max_side``.

    A JPEG is decoded directly at 1/2, 1/4 or 1/8 scale when that still leaves its longer side at or above
    ``max_side`` (Pillow's ``draft``); any image still larger is downscaled (bilinear, antialiased) right
    after decoding, so the full-size pixels are never converted or copied. ``max_pixels`` is checked on the
    full size declared in the header, before decoding, exactly as in :func:`load_image`.

    Returns:
        ``(rgb, (width, height))``: the RGB array and the full image's size after EXIF orientation, so that
        coordinates in the array map back with ``x * width / rgb.shape[1]``, ``y * height / rgb.shape[0]``.
        ``max_side=None`` decodes at full size.
    """
    if max_side is not None and int(max_side) < 1:
        raise AgeGenderError(f"max_side must be at least 1, not {max_side}", code="unsupported")
    decoded = _decode_encoded(source, max_pixels, max_side)
    if decoded is not None:
        return decoded
    # Already decoded (an array, a PIL image): nothing to save on the decoding, only the size to reduce.
    rgb = load_image(source, max_pixels=max_pixels)
    full = (int(rgb.shape[1]), int(rgb.shape[0]))
    small = _shrink(Image.fromarray(rgb), max_side, None)
    return (rgb if small.size == full else np.array(small, dtype=np.uint8)), full


def decoded_pixels(
    data: bytes,
    max_side: int | None = DEFAULT_DECODE_SIDE,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> int:
    """Pixels that :func:`load_image_reduced` will decode for the encoded image ``data`` (before its
    downscale; JPEGs after the draft reduction), read from the header alone. ``0`` when it will decode none:
    the header is unreadable, or the image is over ``max_pixels`` and so refused before decoding.

    >>> decoded_pixels(b"not an image")
    0
    """
    try:
        with Image.open(io.BytesIO(bytes(data))) as im:  # parses the header; no pixel is decoded
            if max_pixels is not None and im.size[0] * im.size[1] > max_pixels:
                return 0
            _draft(im, max_side)
            return int(im.size[0] * im.size[1])
    except Exception:  # noqa: BLE001  any header Pillow cannot parse: decoding will report it properly
        return 0


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale an integer, boolean or float array to ``uint8``.

    The nominal range is chosen from the dtype and the values: ``uint8`` is kept; ``bool`` → {0, 255};
    ``uint16`` → full 16-bit range (divide by 257); floats whose values lie in [0, 1] → ×255; other
    arrays whose values lie in [0, 255] are kept, in [0, 65535] are read as 16-bit; anything else
    (negative values, 32-bit data, arbitrary floats) is min–max stretched to [0, 255].
    NaN and infinities become 0.
    """
    if not array.dtype.isnative:  # e.g. big-endian 16-bit TIFF data ('>u2')
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return _round_to_uint8(array.astype(np.float32) / 257.0)
    if array.dtype.kind not in "iuf":
        raise AgeGenderError(f"cannot read an image array of dtype {array.dtype}", code="unsupported")
    values = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if array.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        return _round_to_uint8(values * 255.0)
    if lo >= 0.0 and hi <= 255.0:
        return _round_to_uint8(values)
    if array.dtype.kind in "iu" and lo >= 0.0 and hi <= 65535.0:
        return _round_to_uint8(values / 257.0)
    return _round_to_uint8((values - lo) * (255.0 / max(hi - lo, 1e-12)))


def iter_image_files(
    paths: str | os.PathLike | Iterable[str | os.PathLike], recursive: bool = True
) -> list[Path]:
    """Expand files and folders into a sorted, de-duplicated list of image files.

    Folders contribute the files whose extension (any case) is in :data:`IMAGE_EXTENSIONS`, descending
    into sub-folders when ``recursive``; hidden files and folders (name starting with ``.``, e.g. macOS
    ``._photo.jpg`` resource forks) are skipped. A file named explicitly is always kept whatever its
    extension, so nothing the user asked for vanishes silently (:func:`load_image` then says what is
    wrong with it). The result is sorted by path string, so runs are reproducible.

    Raises:
        AgeGenderError: ``missing_file`` for a path that does not exist.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: set[Path] = set()
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found.update(_walk_images(path, recursive))
        elif path.exists():
            found.add(path)
        else:
            raise AgeGenderError(f"{path}: no such file or folder; check the path", code="missing_file")
    return sorted(found, key=lambda p: str(p))


# ---------------------------------------------------------------------------------------------- internals


def _decode_encoded(
    source: ImageSource, max_pixels: int | None, max_side: int | None
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """Decode a path, byte string or binary file object (see :func:`_decode`); ``None`` for other sources."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        _check_path(path)
        try:
            with open(path, "rb") as fp:
                return _decode(fp, str(path), max_pixels, max_side)
        except PermissionError:
            raise AgeGenderError(
                f"{path}: permission denied; check the file's permissions", code="unreadable"
            ) from None
        except OSError as exc:
            raise AgeGenderError(f"{path}: cannot read the file ({exc})", code="unreadable") from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AgeGenderError(
                "the image data is empty (0 bytes); check the upload or the code that read the file",
                code="empty_file",
            )
        return _decode(io.BytesIO(bytes(source)), "the image data", max_pixels, max_side)
    if hasattr(source, "read") and not isinstance(source, (Image.Image, np.ndarray)):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise AgeGenderError("open the file in binary mode ('rb') before passing it", code="unsupported")
        return _decode_encoded(bytes(data), max_pixels, max_side)
    return None


def _walk_images(root: Path, recursive: bool) -> Iterator[Path]:
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        # Following links lets a folder of symlinked datasets work; remembering real paths stops cycles.
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for name in filenames:
            if name.startswith("."):
                continue
            ext = os.path.splitext(name)[1].lower()
            # HEIC files get a record saying they cannot be decoded; a file without an extension is taken
            # when its first bytes are an image's
            if ext in IMAGE_EXTENSIONS or ext in HEIF_EXTENSIONS or (not ext and _looks_like_image(
                    Path(dirpath) / name)):
                yield Path(dirpath) / name


def _looks_like_image(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError:
        return False
    return head.startswith(_IMAGE_MAGIC) or (head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis")) \
        or _is_heif(io.BytesIO(head))


def _is_heif(fp: IO[bytes]) -> bool:
    """Whether ``fp`` starts with an ISO-BMFF ``ftyp`` box of a HEIF brand (iPhone photos); leaves it at 0."""
    try:
        fp.seek(0)
        head = fp.read(32)
        fp.seek(0)
    except (OSError, ValueError):
        return False
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def _check_path(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AgeGenderError(f"{path}: no such file; check the path", code="missing_file") from None
    except OSError as exc:
        raise AgeGenderError(f"{path}: cannot access the file ({exc.strerror})", code="unreadable") from None
    if path.is_dir():
        raise AgeGenderError(
            f"{path} is a folder, not an image; pass the files inside it (iter_image_files expands folders)",
            code="not_an_image",
        )
    if st.st_size == 0:
        raise AgeGenderError(
            f"{path}: the file is empty (0 bytes); it was probably not fully downloaded or copied",
            code="empty_file",
        )


@contextlib.contextmanager
def _pillow_pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Let Pillow's bomb guard admit what the caller admits; never lower it, always restore it.

    With the default limit we do not touch Pillow at all (ours is stricter and runs before decoding).
    Only a caller asking for more than Pillow allows needs the global raised, briefly and under a lock.
    """
    current = Image.MAX_IMAGE_PIXELS
    if current is None or (max_pixels is not None and max_pixels <= current):
        yield
        return
    with _BOMB_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_pixels(size: tuple[int, int], max_pixels: int | None, name: str) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise AgeGenderError(
            f"{name} is {width}×{height} = {width * height / 1e6:.1f} megapixels, over the limit of "
            f"{max_pixels / 1e6:.1f}; resize it first, or raise max_pixels if you trust the source",
            code="too_large",
        )


def _decode(
    fp: IO[bytes], name: str, max_pixels: int | None, max_side: int | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """The RGB array (longer side at most ``max_side``) and the full size after EXIF orientation."""
    with _pillow_pixel_limit(max_pixels):
        try:
            # Pillow may warn (DecompressionBombWarning) for sizes between its soft and hard limits; such an
            # image is over our limit too and is rejected just below. The warning is not silenced here
            # because warnings.catch_warnings is not thread-safe.
            im = Image.open(fp)
        except Image.DecompressionBombError:
            raise AgeGenderError(
                f"{name} declares more pixels than allowed (a possible decompression bomb); "
                "resize it first, or raise max_pixels if you trust the source",
                code="too_large",
            ) from None
        except UnidentifiedImageError:
            if _is_heif(fp):
                raise AgeGenderError(
                    f"{name} is a HEIC/HEIF photo, which cannot be decoded here; convert it to JPEG "
                    "(e.g. `heif-convert photo.heic photo.jpg`, or export as 'Most Compatible' on an iPhone)",
                    code="unsupported",
                ) from None
            raise AgeGenderError(
                f"{name} is not an image Pillow recognises (or its header is damaged); "
                f"save it as {_FORMATS_HINT}",
                code="not_an_image",
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise AgeGenderError(f"{name}: cannot read the image header ({exc})", code="unreadable") from None
        with im:
            # The header is parsed but no pixel decoded yet: reject bombs before paying for them.
            _check_pixels(im.size, max_pixels, name)
            full = im.size
            try:
                im.seek(0)  # first frame of animations and multi-page files
                box = _draft(im, max_side)  # after seek: seeking resets a multi-picture JPEG's decoder setup
                im.load()
            except Image.DecompressionBombError:
                raise AgeGenderError(
                    f"{name} has a frame with more pixels than allowed; resize it first",
                    code="too_large",
                ) from None
            except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
                hint = "it is truncated or corrupt" if _is_truncation(exc) else f"decoding failed ({exc})"
                raise AgeGenderError(
                    f"{name}: {hint}; re-download or re-export the file", code="unreadable"
                ) from None
            small = _shrink(im, max_side, box)
            if small is im:
                rgb = _pil_to_rgb(im, name)
                return rgb, _full_size(full, im, rgb)
        # Leaving the block closed the full-size decode (and freed its memory) before the conversion to RGB.
        rgb = _pil_to_rgb(small, name)
        return rgb, _full_size(full, small, rgb)


def _draft(im: Image.Image, max_side: int | None) -> tuple[float, float, float, float] | None:
    """Ask a not-yet-decoded JPEG to decode at the smallest 1/2, 1/4 or 1/8 scale whose longer side is still at
    least ``max_side``; return the full image's extent in the reduced pixels (``None``: no reduction)."""
    if not max_side:
        return None
    w, h = im.size
    longer = max(w, h)
    if longer < 2 * max_side:
        return None
    # Pillow picks the largest scale that keeps both sides at or above the requested size; asking for the
    # image's own aspect makes the longer side the one that decides.
    got = im.draft("RGB", (max(1, w * max_side // longer), max(1, h * max_side // longer)))
    return got[1] if got else None  # formats other than JPEG return None: no reduced decoding


def _shrink(
    im: Image.Image, max_side: int | None, box: tuple[float, float, float, float] | None
) -> Image.Image:
    """``im`` itself when its longer side fits ``max_side``, else a downscaled copy covering ``box`` (the full
    image's extent in ``im``'s pixels after a JPEG draft, whose last row and column may be padding)."""
    if not max_side:
        return im
    left, top, right, bottom = box or (0.0, 0.0, float(im.size[0]), float(im.size[1]))
    w, h = right - left, bottom - top
    longer = max(w, h)
    if longer <= max_side:
        return im
    size = (max(1, round(w * max_side / longer)), max(1, round(h * max_side / longer)))
    # reducing_gap: an integer box reduction first, then bilinear; much cheaper on big images, same result
    # within a grey level ("1" and "P" images are resampled nearest by Pillow, which keeps their palette).
    small = im.resize(size, Image.Resampling.BILINEAR, box=(left, top, right, bottom), reducing_gap=3.0)
    with contextlib.suppress(Exception):
        # A resized copy keeps im.info, hence JPEG/PNG/WebP EXIF, but TIFF keeps its orientation in its own
        # tags: carry it over so exif_transpose still turns the image the way viewers show it.
        exif = im.getexif()
        if exif.get(_ORIENTATION, 1) != 1 and "exif" not in small.info:
            small.info["exif"] = exif.tobytes()
    return small


def _full_size(full: tuple[int, int], decoded: Image.Image, rgb: np.ndarray) -> tuple[int, int]:
    """The full image's (width, height) after EXIF orientation: swapped when the orientation turned the
    decoded image by 90°. That shows as its width and height trading places, unless the decoded image is
    square (a nearly square photo can round to one), where the tag exif_transpose applied decides."""
    if decoded.size[0] != decoded.size[1]:
        turned = (int(rgb.shape[1]), int(rgb.shape[0])) != decoded.size
    else:
        turned = False
        with contextlib.suppress(Exception):
            turned = decoded.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)
    return (int(full[1]), int(full[0])) if turned else (int(full[0]), int(full[1]))


def _is_truncation(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "truncated" in text or "broken data stream" in text or isinstance(exc, EOFError)


def _pil_to_rgb(im: Image.Image, name: str) -> np.ndarray:
    with contextlib.suppress(Exception):  # a malformed EXIF block should not cost the user the photo
        im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode == "RGB":
        return np.array(im, dtype=np.uint8)
    if mode in ("1", "L"):
        gray = np.array(im.convert("L"), dtype=np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode.startswith(("I", "F")):  # I, I;16, I;16B, I;16L, I;16N, F
        gray = to_uint8(np.array(im))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        return _composite_on_white(np.array(im.convert("RGBA"), dtype=np.uint8))
    try:
        return np.array(im.convert("RGB"), dtype=np.uint8)
    except (ValueError, OSError) as exc:
        raise AgeGenderError(
            f"{name} uses the colour mode {mode!r}, which cannot be converted to RGB ({exc}); "
            f"re-save it as an RGB {_FORMATS_HINT}",
            code="unsupported",
        ) from None


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    rgb = rgba[:, :, :3].astype(np.float32)
    return _round_to_uint8(rgb * alpha + 255.0 * (1.0 - alpha))


def _round_to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _from_array(array: np.ndarray, *, channel_order: str, max_pixels: int | None) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        hint = (
            " (channels first? use array.transpose(1, 2, 0))"
            if array.ndim == 3 and array.shape[0] in (1, 3, 4)
            else ""
        )
        raise AgeGenderError(
            f"an image array must be H×W, H×W×3 or H×W×4, not shape {array.shape}{hint}", code="unsupported"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise AgeGenderError(f"the image array is empty (shape {array.shape})", code="unsupported")
    _check_pixels((array.shape[1], array.shape[0]), max_pixels, "the image array")
    pixels = to_uint8(array)
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if channel_order == "BGR":
        pixels = pixels[:, :, [2, 1, 0, 3] if pixels.shape[2] == 4 else [2, 1, 0]]
    if pixels.shape[2] == 4:
        return _composite_on_white(pixels)
    # Always a fresh contiguous copy: callers may modify the result, and views of BGR slices are strided.
    return np.array(pixels, dtype=np.uint8, order="C", copy=True)
