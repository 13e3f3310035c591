"""CLI commands ``predict``, ``video`` and ``export``: thin shells over :mod:`agegender.inference`.

Registered on the main Typer app by importing this module (``agegender.cli`` does at its end).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from agegender.cli_app import app, user_errors
from agegender.errors import AgeGenderError

FORMATS = ("json", "jsonl", "csv")


class RecordWriter:
    """Streams records as a JSON array, JSON Lines or CSV (fixed columns) to a text stream: for JSON one nested
    object per image (:meth:`ImageResult.to_dict <agegender.inference.results.ImageResult.to_dict>`), for CSV
    the flat rows of :func:`~agegender.inference.records.to_records`."""

    def __init__(self, stream: IO[str], fmt: str, columns: list[str]) -> None:
        self.stream, self.fmt, self.columns = stream, fmt, columns
        self.count = 0
        self._csv: csv.DictWriter | None = None
        if fmt == "csv":
            self._csv = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
            self._csv.writeheader()
        elif fmt == "json":
            stream.write("[")

    def write(self, record: dict[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow({k: ("" if v is None else v) for k, v in record.items()})
        elif self.fmt == "json":
            self.stream.write(("," if self.count else "") + "\n" + json.dumps(record))
        else:
            self.stream.write(json.dumps(record) + "\n")
        self.count += 1

    def close(self) -> None:
        if self.fmt == "json":
            self.stream.write("\n]\n")
        self.stream.flush()


def parse_detector_options(items: list[str]) -> dict[str, Any]:
    """``["max_side=320", "scale_factor=1.2"]`` → ``{"max_side": 320, "scale_factor": 1.2}`` (YAML values)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise AgeGenderError(f"--detector-option expects KEY=VALUE, got {item!r}", code="bad_option")
        value = yaml.safe_load(raw) if raw else None
        if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
            value = raw.strip()  # YAML 1.1 reads on/off/yes/no as booleans: tiles=off means the word
        out[key.strip()] = value
    return out


def _annotated_path(out_dir: Path, rel: str) -> Path:
    return out_dir / rel


#: options shared by several commands
Model = Annotated[
    str, typer.Option("--model", "-m", help="bundled model name, checkpoint/package or .onnx file")
]
DetectorOpt = Annotated[
    str | None,
    typer.Option(
        "--detector",
        "-d",
        help="faces: centerface | blazeface | haar | yunet | dlib | path/to/detector.onnx; people (body models): nanodet | hog; none: "
        "the input is the crop (`agegender models` lists them; default: the model's own; haar; nanodet for body models)",
    ),
]
MinConfidence = Annotated[
    float,
    typer.Option("--min-confidence", help="below this top probability a label is reported as 'uncertain'"),
]
Backend = Annotated[
    str | None, typer.Option(
        "--backend",
        help="torch | onnx | openvino | auto (time torch and onnx on this machine, keep the faster; a few seconds "
        "once, then cached: for batch jobs and video) (default: a bundled model runs its ONNX twin, on OpenVINO in "
        "bfloat16 where the CPU has AMX, on its int8 twin where that is measured faster, else on ONNX Runtime; "
        "otherwise from the file extension)",
    ),
]
Threads = Annotated[int | None, typer.Option("--threads", help="model threads (default: torch's)")]
Precision = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help="fp32 (float32 throughout: outputs as `agegender evaluate` gives them) | bf16 (bfloat16: OpenVINO for a "
        "bundled model or an .onnx file, the torch trace for a checkpoint; outputs move slightly) | int8 (a bundled "
        "model's int8 twin on OpenVINO) | auto (torch: time both; OpenVINO: bfloat16 on AMX CPUs) (default for a "
        "bundled model: bfloat16 on an AMX CPU, int8 where a one-time speed check finds it faster, else fp32)",
    ),
]
DetectorOptions = Annotated[
    list[str],
    typer.Option(
        "--detector-option",
        help="detector setting KEY=VALUE, repeatable: e.g. max_side=320, scale_factor=1.2, score_threshold=0.6, "
        "margin=0.3 (crop margin per side), align=off (cut rolled faces as they lie instead of turning them "
        "upright by their eyes), sideways=on|off (a second look in the photo turned a quarter at faces rolled "
        "30° or more; on by default with centerface), search_turned=on|off (search a photo in which no face is "
        "found again turned a quarter each way and upside down; off by default)",
    ),
]
TtaFlip = Annotated[
    bool | None,
    typer.Option(
        "--tta-flip/--no-tta-flip", help="average with mirrored crops (default: the model's setting)"
    ),
]


@app.command()
@user_errors
def predict(
    paths: Annotated[list[str], typer.Argument(help="image files and/or folders (searched recursively)")],
    model: Model = "default",
    detector: DetectorOpt = None,
    mode: Annotated[str | None, typer.Option("--mode", help="face | body | person (default: the model's; person: every person found "
                                        "with the body model, the face model's estimate where the face is seen, "
                                        "and the two fused)")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="write annotated copies of the images here")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="json | jsonl (one nested object per image) | csv (flat "
                                     "rows)")] = "json",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="write records to this file (default stdout); with --ray the Parquet folder",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="crops per model call")] = 64,
    workers: Annotated[
        int | None, typer.Option("--workers", help="decode/detect threads (default min(4, CPUs))")
    ] = None,
    min_confidence: MinConfidence = 0.0,
    scheme: Annotated[
        str | None, typer.Option("--scheme", help="age-group scheme (default: the model's)")
    ] = None,
    backend: Backend = None,
    threads: Threads = None,
    precision: Precision = None,
    tta_flip: TtaFlip = None,
    detector_option: DetectorOptions = [],  # noqa: B006 - Typer reads the default; never mutated
    min_face_size: Annotated[
        float | None, typer.Option("--min-face-size", help="ignore smaller faces (pixels)")
    ] = None,
    recursive: Annotated[
        bool, typer.Option("--recursive/--no-recursive", help="descend into sub-folders")
    ] = True,
    fail_on_error: Annotated[
        bool, typer.Option("--fail-on-error", help="exit 1 if any file could not be read")
    ] = False,
    ray: Annotated[
        bool, typer.Option("--ray", help="run as a Ray Data job writing Parquet (see --output)")
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", help="Ray cluster address, e.g. ray://head:10001 (default: a local instance)"
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress", help="progress bar on stderr (default: on a terminal with 10+ files)"
        ),
    ] = None,
) -> None:
    """Age, gender and ethnicity of every person in images.

    JSON and JSON Lines: one object per image with its status (ok, no_face, or an error such as unreadable) and
    a list of people, each with nested age, gender and ethnicity (the HTTP API's schema); CSV: one status row
    per image plus one row per person. Broken files never stop the run. Examples:

      agegender predict photos/ --out annotated/ --format csv --output people.csv

      agegender predict crops/ --detector none --format jsonl

      agegender predict /data/images --ray --output predictions/
    """
    if fmt not in FORMATS:
        raise AgeGenderError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}", code="bad_option")
    det_opts = parse_detector_options(detector_option)
    if min_face_size is not None:
        det_opts["min_face_size"] = min_face_size
    options: dict[str, Any] = {
        "detector": detector,
        "mode": mode,
        "tta_flip": tta_flip,
        "min_confidence": min_confidence,
        "scheme": scheme,
        "backend": backend,
        "precision": precision,
    }
    if det_opts:
        options["detector_options"] = det_opts
    if ray:
        _predict_ray(
            paths, model, options, out, output, ray_address, batch_size, fail_on_error, recursive, progress
        )
        return

    from agegender.inference.draw import save_annotated
    from agegender.inference.loading import load
    from agegender.inference.predictor import STATUS_NO_FACE, STATUS_OK, list_inputs
    from agegender.inference.records import to_records

    predictor = load(model, batch_size=batch_size, threads=threads, workers=workers, **options)
    inputs = list_inputs(paths, recursive)
    if not inputs:
        raise AgeGenderError("no image files found in the given paths", code="missing_file")
    columns = predictor.record_schema()
    stream: IO[str] = open(output, "w", newline="", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
    writer = RecordWriter(stream, fmt, [c for c, _ in columns])
    counts: dict[str, int] = {}
    people = 0
    show = progress if progress is not None else (len(inputs) >= 10 and sys.stderr.isatty())
    t0 = time.perf_counter()
    try:
        from tqdm import tqdm

        bar = tqdm(total=len(inputs), unit="img", file=sys.stderr, disable=not show, desc="predict")
        results: Iterator[Any] = predictor.iter_predict(
            [f for f, _ in inputs], sources=[f for f, _ in inputs], return_images=out is not None
        )
        for i, item in enumerate(results):
            res, rgb = item if out is not None else (item, None)
            counts[res.status] = counts.get(res.status, 0) + 1
            people += len(res.people)
            for rec in to_records(res, columns) if fmt == "csv" else [res.to_dict()]:
                writer.write(rec)
            if out is not None and rgb is not None and res.status in (STATUS_OK, STATUS_NO_FACE):
                save_annotated(_annotated_path(out, inputs[i][1]), rgb, res.people)
            bar.update(1)
        bar.close()
    finally:
        writer.close()
        if output:
            stream.close()
    seconds = time.perf_counter() - t0
    errors = sum(v for k, v in counts.items() if k not in (STATUS_OK, STATUS_NO_FACE))
    detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    typer.echo(
        f"{len(inputs)} images ({detail}), {people} people, {len(inputs) / max(seconds, 1e-9):.1f} images/s"
        + f"; {_backend_note(predictor)}"
        + (f"; records in {output}" if output else "")
        + (f"; annotated copies in {out}" if out else ""),
        err=True,
    )
    missing = [p for p in paths if not Path(p).exists()]
    if missing:  # their records say missing_file; the run still covered every other path
        raise AgeGenderError(f"{len(missing)} of the paths given do not exist ({', '.join(missing[:3])}"
                             f"{', ...' if len(missing) > 3 else ''}); check them", code="missing_file")
    if fail_on_error and errors:
        raise typer.Exit(1)


def _backend_note(predictor: Any) -> str:
    """``backend onnx`` or, for ``--backend auto``, the timings it chose by."""
    info = predictor.info()
    note = f"backend {info['backend']}" + (f" {info['precision']}" if info["backend"] in ("torch", "openvino") else "")
    sel = info.get("backend_selection")
    if sel:
        rates = ", ".join(f"{k} {v:.0f}" for k, v in sel["crops_per_second"].items())
        note += f" (auto{', cached' if sel.get('cached') else ''}: {rates} crops/s)"
    return note


def _predict_ray(
    paths: list[str],
    model: str,
    options: dict[str, Any],
    out: Path | None,
    output: Path | None,
    address: str | None,
    batch_size: int,
    fail_on_error: bool,
    recursive: bool,
    progress: bool | None,
) -> None:
    from agegender.inference.distributed import predict_directory_ray

    if out is not None:
        raise AgeGenderError(
            "--out (annotated copies) is not available with --ray; drop one of them", code="bad_option"
        )
    summary = predict_directory_ray(
        paths,
        output or Path("predictions"),
        model=model,
        address=address,
        batch_size=batch_size,
        recursive=recursive,
        progress=bool(progress),
        **{k: v for k, v in options.items() if v is not None},
    )
    typer.echo(json.dumps(summary, indent=2))
    errors = sum(v for k, v in summary["status"].items() if k not in ("ok", "no_face"))
    if fail_on_error and errors:
        raise typer.Exit(1)


@app.command()
@user_errors
def video(
    source: Annotated[str, typer.Argument(help="video file, or a camera index such as 0")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="write the annotated video here: .mp4 is H.264 (libx264, as PyAV's FFmpeg offers it; then "
            "OpenH264, VP9), .webm is VP9 — both play in browsers",
        ),
    ] = None,
    every: Annotated[
        int,
        typer.Option(
            "--every", help="detect + predict every N frames; the tracker carries the boxes in between"
        ),
    ] = 3,
    model: Model = "default",
    detector: DetectorOpt = None,
    max_frames: Annotated[
        int | None, typer.Option("--max-frames", help="stop after N frames (cameras never end)")
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="write the summary and per-frame results (JSON) here"),
    ] = None,
    max_lost: Annotated[
        float,
        typer.Option(
            "--max-lost",
            help="seconds a face may go undetected (turned away, hidden) and keep its track id",
        ),
    ] = 1.0,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress", help="progress bar on stderr (default: on a terminal, for video files)"
        ),
    ] = None,
    min_confidence: MinConfidence = 0.0,
    backend: Backend = None,
    threads: Threads = None,
    precision: Precision = None,
    tta_flip: TtaFlip = None,
    detector_option: DetectorOptions = [],  # noqa: B006 - Typer reads the default; never mutated
) -> None:
    """Track and label faces in a video or camera stream; prints a JSON summary: frames per second and, per
    track, its first and last frame, frames seen, median age, gender and ethnicity with their probability.

    Faces are linked across frames by ByteTrack (the trackers package); each track's age, gender and ethnicity
    are the detector-score-weighted mean of its per-frame outputs. A camera runs until Ctrl-C (or --max-frames).
    Examples:

      agegender video clip.mp4 --out annotated.mp4 --every 3 --json frames.json

      agegender video 0 --max-frames 300 --out webcam.webm
    """
    from agegender.inference.loading import load
    from agegender.inference.video import process_video

    det_opts = parse_detector_options(detector_option)
    predictor = load(
        model,
        detector=detector,
        min_confidence=min_confidence,
        backend=backend,
        threads=threads,
        precision=precision,
        tta_flip=tta_flip,
        **({"detector_options": det_opts} if det_opts else {}),
    )
    summary = process_video(
        predictor,
        source,
        out=out,
        every=every,
        max_frames=max_frames,
        json_path=json_path,
        max_lost_seconds=max_lost,
        progress=progress if progress is not None else sys.stderr.isatty(),
    )
    typer.echo(json.dumps(summary.to_dict(), indent=2))


@app.command()
@user_errors
def export(
    checkpoint: Annotated[str, typer.Argument(help="checkpoint/package path or bundled model name")],
    onnx: Annotated[Path, typer.Option("--onnx", help="output .onnx file")],
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset version")] = 17,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="compare ONNX Runtime with torch on a random batch")
    ] = True,
    int8_calibration: Annotated[
        Path | None,
        typer.Option(
            "--int8-calibration",
            help="quantize to int8, calibrating on the face crops in this folder (faster on CPUs with VNNI)",
        ),
    ] = None,
    calibration_limit: Annotated[
        int, typer.Option("--calibration-limit", help="crops used for calibration")
    ] = 256,
    input_format: Annotated[
        str,
        typer.Option(
            "--input-format",
            help="auto | uint8 (RGB uint8 crops [N,H,W,3], normalised inside the graph; fastest) | "
            "float (normalised [N,C,h,w] batch)",
        ),
    ] = "auto",
) -> None:
    """Export a model to ONNX (dynamic batch, decoded outputs, preprocessing in the file's metadata)."""
    from agegender.inference.onnx_export import export_onnx

    if onnx.suffix.lower() != ".onnx":
        raise AgeGenderError(f"--onnx must name a .onnx file, not {onnx}", code="bad_option")
    if int8_calibration is not None and not int8_calibration.exists():
        raise AgeGenderError(f"calibration folder {int8_calibration} does not exist", code="missing_file")
    summary = export_onnx(
        checkpoint,
        onnx,
        opset=opset,
        verify=verify,
        int8_calibration=int8_calibration,
        calibration_limit=calibration_limit,
        input_format=input_format,
    )
    typer.echo(json.dumps(summary, indent=2))
