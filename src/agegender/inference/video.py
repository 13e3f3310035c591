"""Video and camera streams: detect every N frames, track faces in between by IoU matching (with
constant-velocity boxes), and smooth each track's predictions over time (exponential moving average)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agegender.errors import AgeGenderError
from agegender.inference.draw import annotate
from agegender.inference.predictor import Predictor
from agegender.inference.results import PersonResult


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection-over-union of (N, 4) and (M, 4) boxes (x1, y1, x2, y2)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass
class Track:
    """One face followed across frames: its box, per-frame box velocity and smoothed model outputs."""

    id: int
    box: np.ndarray
    score: float
    state: dict[str, np.ndarray]
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    last_seen: int = 0
    hits: int = 1
    misses: int = 0


class FaceTracker:
    """Greedy IoU matching of detections to tracks; outputs smoothed by an exponential moving average.

    Args:
        iou_threshold: minimum IoU (against the track's predicted box) to continue a track.
        smoothing: weight of the newest prediction in the moving average (1 = no smoothing).
        max_misses: detection rounds a track may go unmatched before it is dropped.
    """

    def __init__(self, iou_threshold: float = 0.3, smoothing: float = 0.4, max_misses: int = 2) -> None:
        if not 0.0 < smoothing <= 1.0:
            raise AgeGenderError(f"smoothing must be in (0, 1], not {smoothing}", code="bad_option")
        self.iou_threshold = iou_threshold
        self.smoothing = smoothing
        self.max_misses = max_misses
        self.tracks: list[Track] = []
        self._next_id = 1

    def predicted_boxes(self, frame: int) -> np.ndarray:
        if not self.tracks:
            return np.zeros((0, 4))
        return np.stack([t.box + t.velocity * (frame - t.last_seen) for t in self.tracks])

    def update(
        self,
        frame: int,
        boxes: Sequence[Sequence[float]],
        scores: Sequence[float],
        arrays: dict[str, np.ndarray],
    ) -> None:
        """Feed one detection round: boxes with their raw model outputs (one row per box)."""
        boxes_arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        pred = self.predicted_boxes(frame)
        iou = (
            iou_matrix(pred, boxes_arr)
            if len(pred) and len(boxes_arr)
            else np.zeros((len(pred), len(boxes_arr)))
        )
        matched_t: set[int] = set()
        matched_d: set[int] = set()
        for flat in np.argsort(-iou, axis=None):
            ti, di = divmod(int(flat), max(iou.shape[1], 1))
            if iou.size == 0 or iou[ti, di] < self.iou_threshold:
                break
            if ti in matched_t or di in matched_d:
                continue
            matched_t.add(ti)
            matched_d.add(di)
            t = self.tracks[ti]
            gap = max(frame - t.last_seen, 1)
            t.velocity = 0.5 * t.velocity + 0.5 * (boxes_arr[di] - t.box) / gap
            t.box, t.score, t.last_seen = boxes_arr[di], float(scores[di]), frame
            t.hits += 1
            t.misses = 0
            a = self.smoothing
            t.state = {
                k: (1 - a) * t.state[k] + a * v[di] if k in t.state else v[di] for k, v in arrays.items()
            }
        for ti, t in enumerate(self.tracks):
            if ti not in matched_t:
                t.misses += 1
        self.tracks = [t for t in self.tracks if t.misses <= self.max_misses]
        for di in range(len(boxes_arr)):
            if di not in matched_d:
                self.tracks.append(
                    Track(
                        self._next_id,
                        boxes_arr[di],
                        float(scores[di]),
                        {k: v[di].copy() for k, v in arrays.items()},
                        last_seen=frame,
                    )
                )
                self._next_id += 1

    def current(self, frame: int, visible_only: bool = True) -> list[Track]:
        """Tracks to show at ``frame`` (those matched in the latest detection round by default)."""
        return [t for t in self.tracks if not visible_only or t.misses == 0]


def open_capture(source: str | int) -> tuple[cv2.VideoCapture, str]:
    """A ``cv2.VideoCapture`` for a file path or a camera index (an int or a digit string)."""
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


def process_video(
    predictor: Predictor,
    source: str | int,
    out: str | Path | None = None,
    every: int = 3,
    max_frames: int | None = None,
    json_path: str | Path | None = None,
    smoothing: float = 0.4,
    iou_threshold: float = 0.3,
    on_frame: Callable[[int, np.ndarray, list[dict[str, Any]]], None] | None = None,
) -> dict[str, Any]:
    """Run the predictor over a video; returns a summary with the processing frames per second.

    Detection + model run on every ``every``-th frame; in between, tracks keep moving at their last
    velocity. ``out`` writes an annotated MP4 (``mp4v``); ``json_path`` writes per-frame results;
    ``on_frame(index, annotated_bgr, people)`` is called for each frame (e.g. to display it).
    Ctrl-C stops a stream early; the summary then says ``interrupted``.
    """
    if every < 1:
        raise AgeGenderError(f"--every must be >= 1, not {every}", code="bad_option")
    cap, name = open_capture(source)
    fps_in = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps_in = fps_in if 1.0 <= fps_in <= 240.0 else 25.0
    tracker = FaceTracker(iou_threshold=iou_threshold, smoothing=smoothing)
    writer: cv2.VideoWriter | None = None
    frames_log: list[dict[str, Any]] = []
    track_ids: set[int] = set()
    n = 0
    detect_s = 0.0
    interrupted = False
    t0 = time.perf_counter()
    try:
        while max_frames is None or n < max_frames:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            if n % every == 0:
                td = time.perf_counter()
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                boxes, scores, crops = predictor.detect_crops(rgb)
                arrays = predictor.infer_crops(crops) if crops else {}
                tracker.update(n, boxes, scores, arrays)
                detect_s += time.perf_counter() - td
            tracks = tracker.current(n)
            boxes_now = tracker.predicted_boxes(n)
            shown = {t.id: b for t, b in zip(tracker.tracks, boxes_now)}
            people: list[PersonResult] = []
            ids: list[int] = []
            for t in tracks:
                arrays_t = {k: v[None] for k, v in t.state.items()}
                b = np.clip(shown[t.id], 0, [bgr.shape[1], bgr.shape[0]] * 2)
                people += predictor.people_from_arrays(arrays_t, [b], [t.score])
                ids.append(t.id)
                track_ids.add(t.id)
            records = [{"track_id": i, **p.to_dict()} for i, p in zip(ids, people)]
            if json_path is not None:
                frames_log.append({"frame": n, "time_s": round(n / fps_in, 3), "people": records})
            if out is not None or on_frame is not None:
                annotate(bgr, people, channel_order="BGR", track_ids=ids, inplace=True)
            if out is not None:
                if writer is None:
                    Path(out).parent.mkdir(parents=True, exist_ok=True)
                    writer = cv2.VideoWriter(
                        str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps_in, (bgr.shape[1], bgr.shape[0])
                    )
                    if not writer.isOpened():
                        raise AgeGenderError(
                            f"cannot write video {out}; check the folder and extension (.mp4)",
                            code="write_failed",
                        )
                writer.write(bgr)
            if on_frame is not None:
                on_frame(n, bgr, records)
            n += 1
    except KeyboardInterrupt:  # Ctrl-C is how a camera stream ends: keep what was processed
        interrupted = True
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    elapsed = time.perf_counter() - t0
    if n == 0:
        raise AgeGenderError(
            f"{name}: no frame could be read (empty or unsupported video)", code="unreadable"
        )
    summary = {
        "source": name,
        "frames": n,
        "every": every,
        "seconds": round(elapsed, 3),
        "fps": round(n / elapsed, 2) if elapsed > 0 else None,
        "detect_model_seconds": round(detect_s, 3),
        "video_fps": fps_in,
        "tracks": len(track_ids),
        "output": str(out) if out is not None else None,
        "interrupted": interrupted,
    }
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(
            json.dumps(
                {"summary": summary, "model": predictor.info()["name"], "frames": frames_log}, indent=1
            )
        )
    return summary
