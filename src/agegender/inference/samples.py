"""Sample media for demos, benchmarks and tests: a 640×480 photo and a moving-face video built from the one real
face photo available offline (matplotlib's ``grace_hopper.jpg``), and a camera pan across several faces with
the ground-truth box of every face in every frame."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from agegender.errors import AgeGenderError
from agegender.inference.video_io import VideoWriter


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
    """Write a video (H.264 MP4, see :class:`~agegender.inference.video_io.VideoWriter`) of grace_hopper gliding
    across a grey background (one face, with motion): an ellipse every ``period`` frames, at most about 7 px per
    frame (a person walking past a webcam)."""
    w, h = size
    img = grace_hopper_rgb()
    fw = round(img.shape[1] * face_height / img.shape[0])
    sprite = cv2.cvtColor(cv2.resize(img, (fw, face_height), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
    out = Path(path)
    span_x, span_y = max(w - fw, 0), max(h - face_height, 0)
    with VideoWriter(out, fps) as writer:
        for i in range(frames):
            t = i / period
            x = int(span_x * (0.5 + 0.3 * np.sin(2 * np.pi * t)))
            y = int(span_y * (0.5 + 0.3 * np.cos(2 * np.pi * t)))
            frame = np.full((h, w, 3), 110, dtype=np.uint8)
            frame[y : y + face_height, x : x + fw] = sprite[: h - y, : w - x]
            writer.write(frame)
    return out


def grace_hopper_face(size: int = 200) -> np.ndarray:
    """grace_hopper's face cropped like a UTKFace chip (the face about 70 % of a square crop), RGB ``size``²."""
    img = grace_hopper_rgb()
    chip = img[89:369, 127:407]  # around BlazeFace's box (167, 129, 366, 328) of the 512×600 photo
    return cv2.resize(chip, (size, size), interpolation=cv2.INTER_AREA)


@dataclass
class PanningClip:
    """A written pan and its ground truth."""

    path: Path
    #: (frames, faces, 4) box of each pasted face (x1, y1, x2, y2, frame pixels), whether in view or not
    boxes: np.ndarray
    #: (frames, faces) fraction of each face's box inside the frame and not covered by the occluder
    visible: np.ndarray
    fps: float
    #: (face, first frame, end frame) of the occlusion, or None
    occlusion: tuple[int, int, int] | None

    @property
    def seconds(self) -> float:
        return len(self.boxes) / self.fps

    def score(self, frames: Sequence[Sequence[tuple[int, Sequence[float]]]], min_visible: float = 0.8) -> PanScore:
        """Score tracker output against the truth: ``frames[i]`` holds the ``(track id, box)`` pairs shown in
        frame ``i``. A box belongs to the face whose pasted square holds its centre (a box in no square is a false
        box); a face's id switches are the changes of id along the frames in which it has a box."""
        n_frames, n_faces = self.visible.shape
        ids: list[list[int]] = [[] for _ in range(n_faces)]
        covered = visible = false_boxes = 0
        for i in range(min(len(frames), n_frames)):
            b = self.boxes[i]
            found = set()
            for tid, box in frames[i]:
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                inside = (b[:, 0] <= cx) & (cx <= b[:, 2]) & (b[:, 1] <= cy) & (cy <= b[:, 3]) & (self.visible[i] > 0)
                if not inside.any():
                    false_boxes += 1
                    continue
                j = int(np.argmax(inside))
                found.add(j)
                ids[j].append(int(tid))
            full = self.visible[i] >= min_visible
            visible += int(full.sum())
            covered += sum(1 for j in found if full[j])
        switches = [sum(1 for a, c in itertools.pairwise(seq) if a != c) for seq in ids]
        return PanScore(
            switches=switches,
            ids=[len(set(seq)) for seq in ids],
            coverage=covered / visible if visible else 0.0,
            false_boxes=false_boxes,
            seconds=self.seconds,
        )


@dataclass
class PanScore:
    """How tracker output fits a :class:`PanningClip`."""

    #: id switches of each face
    switches: list[int]
    #: distinct track ids each face got
    ids: list[int]
    #: share of (frame, face) pairs with the face at least ``min_visible`` in view that got a box
    coverage: float
    #: boxes whose centre is on no visible face
    false_boxes: int
    seconds: float

    @property
    def switches_per_person_per_10s(self) -> float:
        return sum(self.switches) / max(len(self.switches), 1) / (self.seconds / 10.0)


def panning_video(
    path: str | Path,
    faces: Sequence[np.ndarray],
    size: tuple[int, int] = (640, 480),
    seconds: float = 10.0,
    fps: float = 25.0,
    speed: float = 8.0,
    face_sizes: tuple[int, int] = (100, 150),
    occlusion: tuple[int, float, float] | None = (0, 0.5, 0.3),
    seed: int = 0,
) -> PanningClip:
    """Write a camera pan across ``faces`` (RGB images, e.g. UTKFace chips) pasted on a textured wall, with the
    box of every face in every frame.

    The camera moves right at ``speed`` px per frame (8 px at 25 fps crosses a 640-px frame in 3.2 s) and bobs up
    and down a little; the faces sit in two rows, spaced so that two or three are in view at a time, each with a
    side of ``face_sizes`` (random in that range) and a slow sway of its own. ``occlusion`` ``(face, at,
    duration)``: a grey panel covers that face for ``duration`` seconds, centred at ``at`` of the way through its
    time in full view (and within that time, so that the face is seen whole before and after). Written with :class:`~agegender.inference.video_io.VideoWriter` (H.264).
    """
    w, h = size
    frames = max(1, round(seconds * fps))
    rng = np.random.default_rng(seed)
    travel = speed * (frames - 1)
    margin = 20  # vertical room for the camera's bob
    world_w, world_h = int(np.ceil(w + travel)) + 1, h + 2 * margin
    noise = rng.normal(0.0, 1.0, (world_h // 8 + 1, world_w // 8 + 1, 3)).astype(np.float32)
    texture = cv2.resize(cv2.GaussianBlur(noise, (0, 0), 2.0), (world_w, world_h), interpolation=cv2.INTER_CUBIC)
    ramp = np.linspace(90, 170, world_w, dtype=np.float32)[None, :, None]
    wall = np.clip(ramp + 18.0 * texture, 0, 255).astype(np.uint8)
    n = len(faces)
    sides = rng.integers(face_sizes[0], face_sizes[1] + 1, n)
    # face centres in world coordinates: from just inside the first frame to just inside the last, two rows
    xs = np.linspace(0.35 * w, world_w - 0.35 * w, n) if n > 1 else np.array([world_w / 2])
    ys = np.where(np.arange(n) % 2 == 0, 0.33, 0.67) * h + margin
    sprites = [cv2.resize(np.asarray(f)[..., :3], (int(s), int(s)), interpolation=cv2.INTER_AREA)
               for f, s in zip(faces, sides)]
    phase = rng.uniform(0, 2 * np.pi, n)
    boxes = np.zeros((frames, n, 4))
    visible = np.zeros((frames, n))
    occ: tuple[int, int, int] | None = None
    if occlusion is not None and n:
        k, at, dur = occlusion
        # frames in which face k is wholly inside the frame: camera x in [cx + s/2 - w, cx - s/2]
        first = int(np.ceil((xs[k] + sides[k] / 2 - w) / speed)) if speed else 0
        last = int(np.floor((xs[k] - sides[k] / 2) / speed)) if speed else frames - 1
        first, last = max(first, 0), min(last, frames - 1)
        length = max(1, round(dur * fps))
        # centred at `at` of that time, kept inside it so that the face is seen whole before and after the panel
        start = round(first + at * (last - first) - length / 2)
        start = max(first + 1, min(start, last - length - 1))
        occ = (int(k), start, min(start + length, frames))
    with VideoWriter(path, fps, channel_order="RGB") as writer:
        for i in range(frames):
            cam_x = speed * i
            cam_y = margin + margin * 0.6 * np.sin(2 * np.pi * i / (2.0 * fps))
            x0, y0 = round(cam_x), round(cam_y)
            frame = wall[y0 : y0 + h, x0 : x0 + w].copy()
            for j, sprite in enumerate(sprites):
                s = int(sides[j])
                sway = 6.0 * np.sin(2 * np.pi * i / (1.5 * fps) + phase[j])
                bx1 = xs[j] - s / 2 - x0 + sway
                by1 = ys[j] - s / 2 - y0
                box = np.array([bx1, by1, bx1 + s, by1 + s])
                boxes[i, j] = box
                ix1, iy1 = round(box[0]), round(box[1])
                fx1, fy1, fx2, fy2 = max(ix1, 0), max(iy1, 0), min(ix1 + s, w), min(iy1 + s, h)
                if fx2 <= fx1 or fy2 <= fy1:
                    continue
                frame[fy1:fy2, fx1:fx2] = sprite[fy1 - iy1 : fy2 - iy1, fx1 - ix1 : fx2 - ix1]
                visible[i, j] = (fx2 - fx1) * (fy2 - fy1) / (s * s)
            if occ is not None and occ[1] <= i < occ[2]:
                k = occ[0]
                x1, y1, x2, y2 = (round(v) for v in boxes[i, k])
                pad = int(0.1 * sides[k])
                frame[max(y1 - pad, 0) : max(y2 + pad, 0), max(x1 - pad, 0) : max(x2 + pad, 0)] = (128, 128, 128)
                visible[i, k] = 0.0
            writer.write(frame)
    return PanningClip(Path(path), boxes, visible, float(fps), occ)
