"""Annotated images: each person's box and a short label (gender, age, ethnicity) drawn with OpenCV."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from agegender.errors import AgeGenderError
from agegender.inference.results import UNCERTAIN, PersonResult

#: box colours (RGB) by predicted gender
COLOURS: dict[str, tuple[int, int, int]] = {
    "male": (40, 120, 255),
    "female": (235, 60, 160),
    UNCERTAIN: (160, 160, 160),
}
_DEFAULT_COLOUR = (40, 200, 80)


def person_label(p: PersonResult, track_id: int | None = None) -> str:
    """Short text such as ``#3 F 34 (28-41) white``: gender initial, age (or age group), ethnicity."""
    parts: list[str] = []
    if track_id is not None:
        parts.append(f"#{track_id}")
    if p.gender:
        parts.append("?" if p.gender == UNCERTAIN else p.gender[0].upper())
    if p.age is not None:
        if p.age.years is not None:
            parts.append(f"{p.age.years:.0f}")
            if p.age.interval is not None:
                parts.append(f"({p.age.interval[0]:.0f}-{p.age.interval[1]:.0f})")
        elif p.age.group:
            parts.append(p.age.group)
    if p.ethnicity and p.ethnicity != UNCERTAIN:
        parts.append(p.ethnicity)
    return " ".join(parts)


def annotate(
    image: np.ndarray,
    people: Sequence[PersonResult],
    channel_order: str = "RGB",
    track_ids: Sequence[int | None] | None = None,
    inplace: bool = False,
) -> np.ndarray:
    """Draw boxes and labels on an H×W×3 uint8 image (``channel_order`` RGB or BGR); returns the image."""
    out = image if inplace else image.copy()
    h, w = out.shape[:2]
    scale = max(0.4, min(1.2, max(h, w) / 900))
    thick = max(2, round(3 * scale))
    text_thick = max(1, round(1.5 * scale))
    for i, p in enumerate(people):
        colour = COLOURS.get(p.gender or "", _DEFAULT_COLOUR)
        if channel_order == "BGR":
            colour = colour[::-1]
        x1, y1, x2, y2 = (round(v) for v in p.box)
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), colour, thick, cv2.LINE_AA)
        text = person_label(p, track_ids[i] if track_ids is not None else None)
        if not text:
            continue
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, text_thick)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(y2 + th + 4, h - base)
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 4, ty + base), colour, -1)
        cv2.putText(
            out,
            text,
            (x1 + 2, ty),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5 * scale,
            (255, 255, 255),
            text_thick,
            cv2.LINE_AA,
        )
    return out


def save_annotated(path: str | Path, image_rgb: np.ndarray, people: Sequence[PersonResult]) -> Path:
    """Write an annotated copy of an RGB image (format from the extension; unknown ones become .jpg)."""
    out = Path(path)
    if out.suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"):
        out = out.with_suffix(".jpg")
    out.parent.mkdir(parents=True, exist_ok=True)
    bgr = annotate(image_rgb[:, :, ::-1].copy(), people, channel_order="BGR", inplace=True)
    if not cv2.imwrite(str(out), bgr):
        raise AgeGenderError(f"could not write {out}; check the folder is writable", code="write_failed")
    return out
