"""Video files and camera streams: detect faces every N frames, follow them with ByteTrack (the ``trackers``
library), average each person's predictions over their track, and summarise every track at the end.

Between detection frames each shown box keeps moving at its track's last velocity. A track's age, gender and
ethnicity are the detector-score-weighted mean of its per-detection model outputs (probability distributions are
mixed, not voted), so one blurred frame moves a long track's label little.
"""

from __future__ import annotations

import json
import sys
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
from agegender.inference.results import FrameResult, TrackedPerson, TrackSummary, VideoResult, VideoSummary
from agegender.inference.video_io import VideoWriter, open_capture

#: default --every: detection + model on every 3rd frame, boxes carried by the tracker in between
DEFAULT_EVERY = 3
#: a track unmatched for longer than this (seconds) ends; a face hidden for less keeps its id
DEFAULT_MAX_LOST_SECONDS = 1.0


def _new_bytetrack(detections_per_second: float, max_lost_seconds: float) -> Any:
    try:
        from trackers import ByteTrackTracker
    except ImportError as e:
        raise AgeGenderError(
            "video tracking needs the trackers package: pip install 'trackers>=2.1,<2.2' 'supervision>=0.30' "
            "(dependencies of agegender; reinstall it)",
            code="missing_dependency",
        ) from e
    # trackers counts its buffer in frames at 30 fps; the tracker sees one "frame" per detection round
    return ByteTrackTracker(
        lost_track_buffer=max(1, round(30 * max_lost_seconds)) + 1,
        frame_rate=detections_per_second,
        # the detector has already applied its own score threshold: every box it reports may start a track,
        # and a track is shown once two detection rounds in a row confirm it
        track_activation_threshold=0.0,
        high_conf_det_threshold=0.0,
        minimum_consecutive_frames=2,
        minimum_iou_threshold=0.1,
    )


@dataclass
class _Track:
    """What the video keeps about one track id: where it is, and running sums of its model outputs."""

    id: int
    first_frame: int
    box: np.ndarray
    score: float
    last_detected: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    last_frame: int = -1
    frames: int = 0
    detections: int = 0
    weight: float = 0.0
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    ages: list[float] = field(default_factory=list)

    def add(self, frame: int, box: np.ndarray, score: float, outputs: dict[str, np.ndarray],
            age: float | None) -> None:
        if self.detections:
            gap = max(frame - self.last_detected, 1)
            self.velocity = 0.5 * self.velocity + 0.5 * (box - self.box) / gap
        self.box, self.score, self.last_detected = box, score, frame
        self.detections += 1
        w = max(float(score), 1e-3)
        self.weight += w
        for k, v in outputs.items():
            self.sums[k] = self.sums[k] + w * v if k in self.sums else w * np.asarray(v, dtype=np.float64)
        if age is not None and np.isfinite(age):
            self.ages.append(float(age))

    def mean_outputs(self) -> dict[str, np.ndarray]:
        """The weighted mean of the track's outputs, one row (the shape ``Predictor.people_from_arrays`` reads)."""
        return {k: (v / self.weight)[None] for k, v in self.sums.items()}

    def box_at(self, frame: int) -> np.ndarray:
        return self.box + self.velocity * (frame - self.last_detected)


class FaceTracks:
    """ByteTrack over detection rounds, plus each track's running mean of model outputs.

    Args:
        detections_per_second: how often :meth:`update` is called per second of video (fps / every).
        max_lost_seconds: how long a track survives without a matching detection (a face turned away or hidden
            behind something keeps its id when it comes back within this time).
    """

    def __init__(self, detections_per_second: float, max_lost_seconds: float = DEFAULT_MAX_LOST_SECONDS) -> None:
        if max_lost_seconds < 0:
            raise AgeGenderError(f"max_lost_seconds must be >= 0, not {max_lost_seconds}", code="bad_option")
        self._tracker = _new_bytetrack(detections_per_second, max_lost_seconds)
        self.tracks: dict[int, _Track] = {}
        self._ids: dict[int, int] = {}  # the library's id → ours (1, 2, ... per video: its counter is global)
        self._shown: list[int] = []

    def update(
        self,
        frame: int,
        boxes: Sequence[Sequence[float]],
        scores: Sequence[float],
        outputs: dict[str, np.ndarray],
        ages: Sequence[float] | None = None,
    ) -> list[int]:
        """Feed one detection round: boxes, detector scores and raw model outputs (one row per box), and each
        box's age in years (for the track's median); returns the ids of the tracks shown from now on."""
        import supervision as sv

        boxes_arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        dets = sv.Detections(
            xyxy=boxes_arr.astype(np.float32),
            confidence=np.asarray(scores, dtype=np.float32).reshape(-1),
            data={"row": np.arange(len(boxes_arr))},
        )
        tracked = self._tracker.update(dets)
        shown = []
        for lib_id, row in zip(tracked.tracker_id, tracked.data.get("row", [])):
            if lib_id < 0:  # not confirmed yet (one detection round so far)
                continue
            tid = self._ids.setdefault(int(lib_id), len(self._ids) + 1)
            r = int(row)
            track = self.tracks.get(tid)
            if track is None:
                track = self.tracks[tid] = _Track(tid, frame, boxes_arr[r], float(scores[r]), frame)
            track.add(frame, boxes_arr[r], float(scores[r]), {k: v[r] for k, v in outputs.items()},
                      None if ages is None else ages[r])
            shown.append(tid)
        self._shown = sorted(shown)
        return self._shown

    def shown(self, frame: int) -> list[_Track]:
        """The tracks matched in the latest detection round, each counted as seen at ``frame``."""
        out = []
        for tid in self._shown:
            t = self.tracks[tid]
            if t.last_frame != frame:
                t.last_frame = frame
                t.frames += 1
            out.append(t)
        return out


def track_summaries(predictor: Predictor, tracks: FaceTracks, fps: float) -> list[TrackSummary]:
    """One :class:`TrackSummary` per track: span, counts, median age, and gender and ethnicity of the track's mean
    outputs with their probability."""
    out = []
    for t in sorted(tracks.tracks.values(), key=lambda t: t.id):
        if not t.frames:
            continue
        p = predictor.people_from_arrays(t.mean_outputs(), [t.box], [t.score])[0]
        out.append(
            TrackSummary(
                track_id=t.id,
                first_frame=t.first_frame,
                last_frame=t.last_frame,
                first_time_s=round(t.first_frame / fps, 3),
                last_time_s=round(t.last_frame / fps, 3),
                frames=t.frames,
                detections=t.detections,
                age_years=round(float(np.median(t.ages)), 1) if t.ages else None,
                age_group=p.age.group if p.age is not None else None,
                age_p_under_18=p.age.p_under_18 if p.age is not None else None,
                gender=p.gender,
                gender_confidence=round(max(p.gender_probs.values()), 4) if p.gender_probs else None,
                ethnicity=p.ethnicity,
                ethnicity_confidence=round(max(p.ethnicity_probs.values()), 4) if p.ethnicity_probs else None,
            )
        )
    return out


def process_video(
    predictor: Predictor,
    source: str | int,
    out: str | Path | None = None,
    every: int = DEFAULT_EVERY,
    max_frames: int | None = None,
    json_path: str | Path | None = None,
    max_lost_seconds: float = DEFAULT_MAX_LOST_SECONDS,
    progress: bool = False,
    on_frame: Callable[[int, np.ndarray, list[TrackedPerson]], None] | None = None,
) -> VideoSummary:
    """Run the predictor over a video file or camera; returns the run's summary with a summary of every track.

    Detection + model run on every ``every``-th frame; ByteTrack links the detections into tracks, and in between
    the shown boxes keep moving at their track's velocity. ``out`` writes the annotated video (``.mp4``: H.264;
    ``.webm``: VP9; see :mod:`~agegender.inference.video_io`); ``json_path`` writes a :class:`VideoResult`
    (the summary plus every frame's people); ``progress`` shows a bar on stderr for files with a known frame
    count; ``on_frame(index, annotated_bgr, people)`` is called for each frame (e.g. to display it). Ctrl-C stops
    a stream early; the summary then says ``interrupted``.
    """
    if every < 1:
        raise AgeGenderError(f"--every must be >= 1, not {every}", code="bad_option")
    if getattr(predictor, "mode", None) == "person":
        raise AgeGenderError("person mode (face + body) is for images; for video use a face model (--model default) "
                             "or the body model (--model default-body)", code="bad_option")
    writer = VideoWriter(out, 25.0) if out is not None else None  # checks the extension before any work
    cap, name = open_capture(source)
    fps_in = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps_in = fps_in if 1.0 <= fps_in <= 240.0 else 25.0
    if writer is not None:
        writer.fps = fps_in
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not name.startswith("camera ") else 0
    if max_frames is not None and total > 0:
        total = min(total, max_frames)
    bar = None
    if progress and total > 0:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="frame", file=sys.stderr, desc="video", leave=False)
    tracks = FaceTracks(fps_in / every, max_lost_seconds)
    frames_log: list[FrameResult] = []
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
                outputs = predictor.infer_crops(crops) if crops else {}
                ages = predictor.decoder(outputs, intervals=False).years if crops else None
                tracks.update(n, boxes, scores, outputs, ages)
                detect_s += time.perf_counter() - td
            shown = tracks.shown(n)
            limit = [bgr.shape[1], bgr.shape[0]] * 2
            people: list[TrackedPerson] = []
            for t in shown:
                p = predictor.people_from_arrays(t.mean_outputs(), [np.clip(t.box_at(n), 0, limit)], [t.score])[0]
                people.append(TrackedPerson(track_id=t.id, **dict(p)))
            if json_path is not None:
                frames_log.append(FrameResult(frame=n, time_s=round(n / fps_in, 3), people=people))
            if writer is not None or on_frame is not None:
                annotate(bgr, people, channel_order="BGR", track_ids=[p.track_id for p in people], inplace=True)
            if writer is not None:
                writer.write(bgr)
            if on_frame is not None:
                on_frame(n, bgr, people)
            n += 1
            if bar is not None:
                bar.update()
    except KeyboardInterrupt:  # Ctrl-C is how a camera stream ends: keep what was processed
        interrupted = True
    finally:
        cap.release()
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - t0
    if n == 0:
        raise AgeGenderError(
            f"{name}: no frame could be read (empty or unsupported video)", code="unreadable"
        )
    people_summary = track_summaries(predictor, tracks, fps_in)
    summary = VideoSummary(
        source=name,
        model=predictor.info()["name"],
        frames=n,
        every=every,
        seconds=round(elapsed, 3),
        fps=round(n / elapsed, 2) if elapsed > 0 else None,
        detect_model_seconds=round(detect_s, 3),
        video_fps=fps_in,
        tracks=len(people_summary),
        output=str(out) if out is not None else None,
        codec=writer.codec if writer is not None else None,
        interrupted=interrupted,
        people=people_summary,
    )
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(VideoResult(summary=summary, frames=frames_log).to_dict(), indent=1))
    return summary
