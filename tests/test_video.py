"""`agegender video`: ByteTrack keeps one id per face through a camera pan and a brief occlusion, each track is
summarised, the annotated video is H.264 (or VP9) that browsers play, and user errors are one line."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from agegender.errors import AgeGenderError
from agegender.inference.predictor import load
from agegender.inference.results import TrackSummary
from agegender.inference.samples import PanningClip, grace_hopper_face, panning_video, synthetic_video
from agegender.inference.video import FaceTracks, process_video
from agegender.inference.video_io import VideoWriter, available_codec

pytest_plugins = ["fixtures_models"]  # tiny_face_model, tiny_body_model, tiny_regression_model

EVERY = 2


@pytest.fixture(scope="module")
def pan(tmp_path_factory: pytest.TempPathFactory) -> PanningClip:
    """A 4-s pan at 8 px/frame across grace_hopper's face tinted four ways; face 1 hidden for 0.3 s."""
    rng = np.random.default_rng(0)
    face = grace_hopper_face().astype(np.float32)
    faces = [np.clip(face * rng.uniform(0.75, 1.15, 3), 0, 255).astype(np.uint8) for _ in range(4)]
    return panning_video(tmp_path_factory.mktemp("video") / "pan.mp4", faces, seconds=4.0, speed=8.0,
                         occlusion=(1, 0.5, 0.3))


@pytest.fixture(scope="module")
def run(tiny_face_model: Path, pan: PanningClip, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("run")
    p = load(tiny_face_model, detector="blazeface", threads=1)
    summary = process_video(p, str(pan.path), out=folder / "annotated.mp4", every=EVERY,
                            json_path=folder / "frames.json")
    return summary, folder


def _shown(frames_json: Path) -> list[list[tuple[int, list[float]]]]:
    frames = json.loads(frames_json.read_text())["frames"]
    return [[(q["track_id"], q["box"]) for q in f["people"]] for f in frames]


def test_pan_keeps_one_id_per_face(run, pan: PanningClip) -> None:
    summary, folder = run
    shown = _shown(folder / "frames.json")
    assert len(shown) == summary.frames == len(pan.boxes)
    score = pan.score(shown)
    assert score.false_boxes == 0
    assert score.switches == [0, 0, 0, 0], score
    assert score.ids == [1, 1, 1, 1], score  # every face found, each under one id
    assert score.coverage > 0.7, score
    assert summary.tracks == 4


def test_occluded_face_keeps_its_id(run, pan: PanningClip) -> None:
    _, folder = run
    shown = _shown(folder / "frames.json")
    face, start, end = pan.occlusion
    assert end - start >= 3 * EVERY  # hidden for several detection rounds
    b = pan.boxes

    def ids_of_face(frames: range) -> set[int]:
        out = set()
        for i in frames:
            for tid, box in shown[i]:
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                if b[i, face, 0] <= cx <= b[i, face, 2] and b[i, face, 1] <= cy <= b[i, face, 3]:
                    out.add(tid)
        return out

    before, during, after = (ids_of_face(range(start)), ids_of_face(range(start + 1, end)),
                             ids_of_face(range(end, len(shown))))
    assert len(before) == 1 and before == after  # the same id before and after the panel
    assert not during  # not shown while hidden


def test_track_summary(run, pan: PanningClip) -> None:
    summary, folder = run
    assert [t.track_id for t in summary.people] == [1, 2, 3, 4]
    for t in summary.people:
        assert isinstance(t, TrackSummary)
        assert 0 <= t.first_frame <= t.last_frame < len(pan.boxes)
        assert t.first_time_s == pytest.approx(t.first_frame / 25.0)
        assert 0 < t.detections <= t.frames <= t.last_frame - t.first_frame + 1
        assert t.age_years is not None and 0 <= t.age_years <= 120
        assert t.age_group and 0.0 <= t.age_p_under_18 <= 1.0
        assert t.gender in ("male", "female") and 0.5 <= t.gender_confidence <= 1.0
        assert t.ethnicity and 0.2 <= t.ethnicity_confidence <= 1.0
    written = json.loads((folder / "frames.json").read_text())
    assert written["summary"]["people"][0].keys() >= {
        "track_id", "first_frame", "last_frame", "frames", "age_years", "age_p_under_18", "gender", "gender_confidence",
        "ethnicity", "ethnicity_confidence",
    }
    person = next(p for f in written["frames"] for p in f["people"])
    assert next(iter(person)) == "track_id" and person["gender"] in ("male", "female") and person["age"]["years"]


def test_track_outputs_are_score_weighted_means() -> None:
    tracks = FaceTracks(detections_per_second=25.0)
    box = [[100.0, 100.0, 200.0, 200.0]]
    male = {"gender_probs": np.array([[1.0, 0.0]])}
    assert tracks.update(0, box, [0.9], male, [30.0]) == []  # a track is shown once a second detection confirms it
    assert tracks.update(1, box, [0.9], male, [30.0]) == [1]
    assert tracks.update(2, [[104.0, 100.0, 204.0, 200.0]], [0.3], {"gender_probs": np.array([[0.0, 1.0]])},
                         [40.0]) == [1]
    t = tracks.tracks[1]
    np.testing.assert_allclose(t.mean_outputs()["gender_probs"], [[0.75, 0.25]])  # (0.9·1 + 0.3·0) / 1.2
    assert np.median(t.ages) == 35.0
    assert t.box_at(4)[0] > 104.0  # carried on at its velocity between detections
    assert tracks.update(3, [], [], {}, []) == []  # lost: no longer shown


def test_annotated_video_is_h264(run, pan: PanningClip) -> None:
    summary, folder = run
    assert summary.codec in ("libx264", "libopenh264", "libvpx-vp9")
    with av.open(str(folder / "annotated.mp4")) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name in ("h264", "vp9")
        assert (stream.width, stream.height) == (640, 480)
        assert sum(1 for _ in c.decode(stream)) == len(pan.boxes)


def test_webm_is_vp9(tmp_path: Path) -> None:
    path = tmp_path / "clip.webm"
    with VideoWriter(path, 25.0) as w:
        for i in range(5):
            w.write(np.full((101, 161, 3), 40 * i, dtype=np.uint8))  # odd sizes are cropped to even
    assert w.codec == "libvpx-vp9"
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "vp9" and (stream.width, stream.height) == (160, 100)
    with pytest.raises(AgeGenderError, match=r"\.mp4"):
        available_codec(tmp_path / "clip.avi")


def test_process_video_errors(tiny_face_model: Path, tmp_path: Path) -> None:
    p = load(tiny_face_model, threads=1)
    with pytest.raises(AgeGenderError, match="no such video"):
        process_video(p, str(tmp_path / "missing.mp4"))
    with pytest.raises(AgeGenderError, match="--every"):
        process_video(p, str(tmp_path / "missing.mp4"), every=0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames=24)


def test_cli_video(tiny_face_model: Path, clip: Path, tmp_path: Path) -> None:
    from agegender.cli_inference import app

    common = ["--model", str(tiny_face_model), "--threads", "1"]
    r = CliRunner().invoke(
        app,
        ["video", str(clip), "--every", "4", "--max-frames", "12", "--out", str(tmp_path / "o.mp4"),
         "--progress", *common],
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)  # the progress bar goes to stderr: stdout stays JSON
    assert summary["frames"] == 12 and summary["fps"] > 0 and summary["codec"] in ("libx264", "libopenh264",
                                                                                   "libvpx-vp9")
    assert isinstance(summary["people"], list) and summary["tracks"] == len(summary["people"])
    assert (tmp_path / "o.mp4").stat().st_size > 0
    # detector options reach the video's detector; "off" stays a word (YAML 1.1 would read it as False)
    r = CliRunner().invoke(
        app, ["video", str(clip), "--max-frames", "4", "--detector", "blazeface", "--detector-option", "tiles=off",
              *common],
    )
    assert r.exit_code == 0, r.output
    for args, message in (
        ([str(tmp_path / "none.mp4")], "no such video"),
        ([str(clip), "--out", str(tmp_path / "o.avi")], ".webm"),
    ):
        r = CliRunner().invoke(app, ["video", *args, *common])
        assert r.exit_code == 2 and message in r.stderr, r.output
        assert "Traceback" not in r.output and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "fake.mp4").write_text("not a video")
    r = CliRunner().invoke(app, ["video", str(tmp_path / "fake.mp4"), *common])
    assert r.exit_code == 2 and "error:" in r.stderr and "Traceback" not in r.output
