"""Sample media built from the one real face photo available offline (matplotlib's ``grace_hopper.jpg``):
a 640×480 photo and a synthetic moving-face video, for demos, benchmarks and tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from agegender.errors import AgeGenderError


def grace_hopper_path() -> Path:
    """Path of ``grace_hopper.jpg`` shipped with matplotlib (512×600, one frontal face)."""
    import matplotlib

    p = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not p.is_file():
        raise AgeGenderError(f"{p} not found; matplotlib's sample data is missing", code="missing_file")
    return p


def grace_hopper_rgb() -> np.ndarray:
    from agegender.data.images import load_image

    return load_image(grace_hopper_path())


def photo_640x480(background: int = 128) -> np.ndarray:
    """grace_hopper resized to 480 px high and centred on a 640×480 grey canvas (one face), RGB uint8."""
    img = grace_hopper_rgb()
    h = 480
    w = round(img.shape[1] * h / img.shape[0])
    small = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), background, dtype=np.uint8)
    x0 = (640 - w) // 2
    canvas[:, x0 : x0 + w] = small
    return canvas


def synthetic_video(
    path: str | Path,
    frames: int = 60,
    size: tuple[int, int] = (640, 480),
    fps: float = 25.0,
    face_height: int = 300,
    period: int = 100,
) -> Path:
    """Write an MP4 (``mp4v``) of grace_hopper gliding across a grey background (one face, with motion):
    an ellipse every ``period`` frames, at most about 7 px per frame (a person walking past a webcam)."""
    w, h = size
    img = grace_hopper_rgb()
    fw = round(img.shape[1] * face_height / img.shape[0])
    sprite = cv2.cvtColor(cv2.resize(img, (fw, face_height), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise AgeGenderError(f"cannot write {out}", code="write_failed")
    span_x, span_y = max(w - fw, 0), max(h - face_height, 0)
    for i in range(frames):
        t = i / period
        x = int(span_x * (0.5 + 0.3 * np.sin(2 * np.pi * t)))
        y = int(span_y * (0.5 + 0.3 * np.cos(2 * np.pi * t)))
        frame = np.full((h, w, 3), 110, dtype=np.uint8)
        frame[y : y + face_height, x : x + fw] = sprite[: h - y, : w - x]
        writer.write(frame)
    writer.release()
    return out
