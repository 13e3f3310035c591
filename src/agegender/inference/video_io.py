"""Reading and writing video: frames come in through OpenCV (files and cameras); annotated video goes out through
PyAV as H.264 in MP4 (or VP9 in WebM), which browsers play, with the codec picked from what the installed FFmpeg
offers."""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agegender.errors import AgeGenderError

#: encoders tried in order for each container, by file extension: H.264 first (every browser plays it in MP4), then
#: VP9 (Chrome, Firefox, Edge and Safari 14+ play it in MP4 and WebM), MPEG-4 part 2 last (players, not browsers)
CODECS: dict[str, tuple[str, ...]] = {
    ".mp4": ("libx264", "libopenh264", "libvpx-vp9", "mpeg4"),
    ".m4v": ("libx264", "libopenh264", "libvpx-vp9", "mpeg4"),
    ".mov": ("libx264", "libopenh264", "mpeg4"),
    ".mkv": ("libx264", "libopenh264", "libvpx-vp9", "mpeg4"),
    ".webm": ("libvpx-vp9", "libvpx"),
}
#: codecs that browsers do not play
NOT_FOR_BROWSERS = {"mpeg4"}
#: encoder settings: quality-targeted rate control, tuned for speed (the encoder must keep up with the tracker)
_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"crf": "23", "preset": "veryfast"},
    "libopenh264": {"allow_skip_frames": "0"},
    "libvpx-vp9": {"crf": "33", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"},
    "libvpx": {"crf": "10", "b": "1M", "deadline": "realtime", "cpu-used": "8"},
    "mpeg4": {"qscale": "4"},
}


def open_capture(source: str | int) -> tuple[cv2.VideoCapture, str]:
    """A ``cv2.VideoCapture`` for a file path or a camera index (an int or a digit string), and its name."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        cap, name = cv2.VideoCapture(int(source)), f"camera {int(source)}"
    else:
        path = Path(source)
        if not path.is_file():
            raise AgeGenderError(f"{path}: no such video file; check the path", code="missing_file")
        cap, name = cv2.VideoCapture(str(path)), str(path)
    if not cap.isOpened():
        raise AgeGenderError(
            f"cannot open {name} as a video (unsupported format or busy camera)", code="unreadable"
        )
    return cap, name


def _import_av() -> Any:
    try:
        import av
    except ImportError as e:  # a core dependency, so only a broken install gets here
        raise AgeGenderError(
            "writing video needs PyAV: pip install av (a dependency of agegender; reinstall it)",
            code="missing_dependency",
        ) from e
    return av


def available_codec(path: str | Path) -> str:
    """The first encoder of :data:`CODECS` for ``path``'s extension that the installed FFmpeg (PyAV's) has."""
    ext = Path(path).suffix.lower()
    if ext not in CODECS:
        raise AgeGenderError(
            f"{path}: write the annotated video as .mp4 (H.264) or .webm (VP9), not {ext or 'no extension'!r}",
            code="bad_option",
        )
    av = _import_av()
    for name in CODECS[ext]:
        try:
            av.codec.Codec(name, "w")
        except ValueError:  # UnknownCodecError: not in this build, or no encoder
            continue
        return name
    raise AgeGenderError(
        f"{path}: this FFmpeg build has none of the encoders {', '.join(CODECS[ext])}; "
        "try the other container (.mp4 or .webm) or reinstall the av package",
        code="unsupported",
    )


class VideoWriter:
    """Writes BGR (or RGB) uint8 frames to ``path`` with :func:`available_codec`'s encoder, yuv420p, at ``fps``.

    Frames are cropped to even width and height (yuv420p needs them); MP4 files get their index at the front
    (``+faststart``), so a browser starts playing before the download ends. Use as a context manager or
    call :meth:`close`.
    """

    def __init__(self, path: str | Path, fps: float, channel_order: str = "BGR") -> None:
        self.path = Path(path)
        self.codec = available_codec(self.path)
        if self.codec in NOT_FOR_BROWSERS:
            warnings.warn(
                f"{self.path}: no H.264 or VP9 encoder in this FFmpeg build; writing {self.codec}, "
                "which browsers do not play",
                stacklevel=2,
            )
        self.fps = float(fps)
        self.channel_order = channel_order
        self._container: Any = None
        self._stream: Any = None
        self.frames = 0

    def _open(self, width: int, height: int) -> None:
        av = _import_av()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        options = {"movflags": "+faststart"} if self.path.suffix.lower() in (".mp4", ".m4v", ".mov") else {}
        try:
            self._container = av.open(str(self.path), mode="w", options=options)
        except (OSError, av.FFmpegError) as e:
            raise AgeGenderError(
                f"cannot write video {self.path}: {e}; check the folder", code="write_failed"
            ) from e
        rate = Fraction(self.fps).limit_denominator(1001)
        stream = self._container.add_stream(self.codec, rate=rate, options=dict(_OPTIONS.get(self.codec, {})))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        self._stream = stream

    def write(self, frame: np.ndarray) -> None:
        """Append one H×W×3 uint8 frame (every frame must have the first one's size)."""
        h, w = (frame.shape[0] // 2) * 2, (frame.shape[1] // 2) * 2
        if self._stream is None:
            if h < 2 or w < 2:
                raise AgeGenderError(f"frame of {frame.shape[1]}x{frame.shape[0]} is too small to encode",
                                     code="bad_input")
            self._open(w, h)
        av = _import_av()
        fmt = "bgr24" if self.channel_order == "BGR" else "rgb24"
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w]), format=fmt)
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (nothing is written when no frame came)."""
        if self._stream is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._stream = None

    def __enter__(self) -> VideoWriter:  # noqa: PYI034 - Python 3.10 has no typing.Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
