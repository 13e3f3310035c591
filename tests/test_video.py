"""`agegender video`: detection every N frames, IoU tracking with smoothing, annotated MP4 and fps report."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from agegender.errors import AgeGenderError
from agegender.inference.predictor import load
from agegender.inference.samples import synthetic_video
from agegender.inference.video import FaceTracker, iou_matrix, process_video

pytest_plugins = ["fixtures_models"]  # tiny_face_model, tiny_body_model, tiny_regression_model


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames=36)


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10]])
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150], [0.0, 0.0]])


def test_tracker_matches_smooths_and_drops() -> None:
    t = FaceTracker(iou_threshold=0.3, smoothing=0.5, max_misses=1)
    t.update(0, [[0, 0, 10, 10]], [0.9], {"gender_probs": np.array([[1.0, 0.0]])})
    t.update(
        3,
        [[1, 0, 11, 10], [50, 50, 60, 60]],
        [0.9, 0.8],
        {"gender_probs": np.array([[0.0, 1.0], [0.3, 0.7]])},
    )
    assert [tr.id for tr in t.tracks] == [1, 2]
    np.testing.assert_allclose(t.tracks[0].state["gender_probs"], [0.5, 0.5])  # EMA of the two rounds
    np.testing.assert_allclose(t.tracks[1].state["gender_probs"], [0.3, 0.7])  # new track: no history
    # between detections the box keeps moving at its velocity (1 px per 3 frames, halved by the filter)
    assert t.predicted_boxes(6)[0][0] == pytest.approx(1 + 0.5 / 3 * 3)
    t.update(6, [], [], {})
    t.update(9, [], [], {})
    assert t.tracks == []
    with pytest.raises(AgeGenderError):
        FaceTracker(smoothing=0.0)


def test_process_video(tiny_face_model: Path, clip: Path, tmp_path: Path) -> None:
    p = load(tiny_face_model, threads=1)
    out, js = tmp_path / "annotated.mp4", tmp_path / "frames.json"
    s = process_video(p, str(clip), out=out, every=3, json_path=js)
    assert s["frames"] == 36 and s["fps"] > 0 and s["every"] == 3 and s["video_fps"] == pytest.approx(25.0)
    assert 1 <= s["tracks"] <= 3  # one face; a lost detection may start a second track
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 36
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (640, 480)
    cap.release()
    frames = json.loads(js.read_text())["frames"]
    assert len(frames) == 36
    with_face = [f for f in frames if f["people"]]
    assert len(with_face) >= 30
    person = with_face[5]["people"][0]
    assert (
        person["track_id"] >= 1
        and person["gender"] in ("male", "female")
        and person["age"]["years"] is not None
    )
    # boxes follow the moving face between detection frames
    xs = [f["people"][0]["box"][0] for f in with_face[:12]]
    assert len(set(xs)) > 4


def test_cli_video(tiny_face_model: Path, clip: Path, tmp_path: Path) -> None:
    from agegender.cli_inference import app

    r = CliRunner().invoke(
        app,
        [
            "video",
            str(clip),
            "--model",
            str(tiny_face_model),
            "--every",
            "4",
            "--max-frames",
            "12",
            "--out",
            str(tmp_path / "o.mp4"),
            "--threads",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["frames"] == 12 and summary["fps"] > 0 and (tmp_path / "o.mp4").stat().st_size > 0
    r = CliRunner().invoke(app, ["video", str(tmp_path / "none.mp4"), "--model", str(tiny_face_model)])
    assert r.exit_code == 2 and "no such video" in r.stderr
    (tmp_path / "fake.mp4").write_text("not a video")
    r = CliRunner().invoke(app, ["video", str(tmp_path / "fake.mp4"), "--model", str(tiny_face_model)])
    assert r.exit_code == 2 and "error:" in r.stderr
