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
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

#: Default limit on width × height (40 megapixels: larger than any phone photo, far below a bomb).
DEFAULT_MAX_PIXELS: int = 40_000_000

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
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        _check_path(path)
        try:
            with open(path, "rb") as fp:
                return _decode(fp, str(path), max_pixels)
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
        return _decode(io.BytesIO(bytes(source)), "the image data", max_pixels)
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise AgeGenderError("open the file in binary mode ('rb') before passing it", code="unsupported")
        return load_image(bytes(data), max_pixels=max_pixels)
    raise AgeGenderError(
        f"cannot load an image from a {type(source).__name__}; pass a path, bytes, a PIL image "
        "or a numpy array",
        code="unsupported",
    )


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
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                yield Path(dirpath) / name


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


def _decode(fp: IO[bytes], name: str, max_pixels: int | None) -> np.ndarray:
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
            try:
                im.seek(0)  # first frame of animations and multi-page files
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
            return _pil_to_rgb(im, name)


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
