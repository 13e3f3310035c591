"""Generated test images shared by the detector tests."""

from __future__ import annotations

import cv2
import numpy as np


def face_scene(face: np.ndarray, side: int, places: list[tuple[int, int]]) -> np.ndarray:
    """A 1280×720 blurred-noise background with ``face`` resized to ``side``×``side`` pasted at each (x, y) of
    ``places``."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8), (0, 0), 8)
    small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    for x, y in places:
        img[y : y + side, x : x + side] = small
    return img
