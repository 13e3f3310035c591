"""End-to-end milliseconds per 640×480 JPEG photo with one face: decode + detect + crop + predict.

The photo is matplotlib's grace_hopper resized to 480 px high on a 640×480 canvas
(``agegender.inference.samples.photo_640x480``), JPEG-encoded once; each call decodes it again.
Prints the median and 90th percentile per detector setting, with the time split by stage.

    python benchmarks/photo_latency.py [--model default] [--detectors haar,haar-fast,blazeface,dlib] [--threads 1]
        [--roll 20] [--no-face]

``--roll`` turns the photo clockwise by that many degrees on its own 640×480 canvas (edge pixels repeated), so the
face is tilted: what turning it upright before the crop (``centerface`` against ``centerface-noalign``) costs, and
from 30° the second look in the photo turned a quarter (``centerface`` against ``centerface-nosideways``).
``--no-face`` measures a photo without a face instead (the same photo blurred until no face is left in it): what
searching such a photo turned costs (``centerface-search``).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_STANDIN, machine, resolve_model
from detector_photos import turn

#: detector settings measured: name → (detector, options)
SETTINGS: dict[str, tuple[str, dict]] = {
    "haar": ("haar", {}),
    "haar-fast": ("haar", {"max_side": 320, "scale_factor": 1.2}),
    "dlib": ("dlib", {}),
    "blazeface": ("blazeface", {}),
    "blazeface-opencv": ("blazeface", {"runtime": "opencv"}),
    "centerface": ("centerface", {}),
    "centerface-t1": ("centerface", {"threads": 1}),  # one intra-op thread for the detector (default: 2)
    "centerface-noalign": ("centerface", {"align": False}),  # the face cut as it lies, not turned upright
    "centerface-nosideways": ("centerface", {"sideways": False}),  # turned upright, no second look at 30° or more
    "centerface-search": ("centerface", {"search_turned": True}),  # a photo with no face searched turned too
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--fallback", default=DEFAULT_STANDIN, help="config YAML or trunk of the stand-in model")
    ap.add_argument("--detectors", default="haar,haar-fast,blazeface,dlib", help=f"among {', '.join(SETTINGS)}")
    ap.add_argument("--backend", default="onnx", help="onnx (the default path) or torch")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=60)
    ap.add_argument("--roll", type=float, default=0.0, help="turn the photo clockwise by this many degrees")
    ap.add_argument("--no-face", action="store_true", help="a photo without a face: the photo blurred beyond one")
    args = ap.parse_args()

    from PIL import Image

    from agegender.data.images import load_image
    from agegender.inference.predictor import load
    from agegender.inference.samples import photo_640x480

    path, desc = resolve_model(args.model, args.fallback)
    if args.backend == "onnx" and not path.endswith(".onnx"):
        import tempfile

        from agegender.inference.onnx_export import export_onnx

        onnx_path = Path(tempfile.mkdtemp(prefix="agegender-bench-")) / "model.onnx"
        export_onnx(path, onnx_path, verify=False)
        path = str(onnx_path)
    print(f"model: {desc}; backend {args.backend}; threads {args.threads or 'default'}")
    print(f"machine: {machine()}")
    buf = io.BytesIO()
    photo = turn(photo_640x480(), args.roll, grow=False)
    if args.no_face:
        import cv2

        photo = cv2.GaussianBlur(photo, (0, 0), 25)
    Image.fromarray(photo).save(buf, format="JPEG", quality=90)
    jpeg = buf.getvalue()
    print(f"photo: 640x480 JPEG, {len(jpeg)} bytes, " + ("no face (blurred)" if args.no_face else "one face")
          + (f", turned {args.roll:g}°" if args.roll else ""))
    print("ms per photo: wall clock (median, 90th percentile, median per stage) and CPU ms (all threads)")
    print(
        f"{'detector':10} {'median':>7} {'p90':>7} {'decode':>7} {'detect':>7} {'model':>7} {'CPU':>7} {'faces':>5}"
    )
    for name in args.detectors.split(","):
        det, opts = SETTINGS[name]
        p = load(path, detector=det, detector_options=opts, threads=args.threads, backend=args.backend)
        for _ in range(70):  # warm-up to the steady state (the torch backend freezes its network after 64 crops)
            p.predict(jpeg)
        total, dec, detect, model, cpu = [], [], [], [], []
        faces = 0
        for _ in range(args.repeats):
            c0 = time.process_time()
            t0 = time.perf_counter()
            rgb = load_image(jpeg)
            t1 = time.perf_counter()
            boxes, scores, crops = p.detect_crops(rgb)
            t2 = time.perf_counter()
            people = p.people_from_arrays(p.infer_crops(crops), boxes, scores) if crops else []
            t3 = time.perf_counter()
            cpu.append(time.process_time() - c0)
            total.append(t3 - t0)
            dec.append(t1 - t0)
            detect.append(t2 - t1)
            model.append(t3 - t2)
            faces = len(people)
        q = statistics.quantiles(total, n=10)
        print(
            f"{name:10} {1e3 * statistics.median(total):7.1f} {1e3 * q[-1]:7.1f} "
            f"{1e3 * statistics.median(dec):7.1f} {1e3 * statistics.median(detect):7.1f} "
            f"{1e3 * statistics.median(model):7.1f} {1e3 * statistics.median(cpu):7.1f} {faces:5d}",
            flush=True,
        )
        # the same through the public one-call API, to show it adds nothing
        t0 = time.perf_counter()
        for _ in range(10):
            p.predict(jpeg)
        print(f"{'':10} predictor.predict(bytes): {1e3 * (time.perf_counter() - t0) / 10:.1f} ms/photo")


if __name__ == "__main__":
    main()
