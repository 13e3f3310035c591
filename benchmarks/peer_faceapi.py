"""Our default face model against face-api.js's age/gender net, end to end on ready face crops, in one run:
decoded UTKFace 200×200 RGB uint8 crops → ages and genders, crops per second.

- ours: ``agegender.load(MODEL, detector="none").predict_batch(crops)`` (resize, normalise, model, decode, typed
  results), with flip TTA as the model says and with ``tta_flip=False``, and (when ONNX Runtime runs one
  single-threaded call per CPU, its default) with ``threads=CPUs``: one model call at a time on every CPU; when
  ``load`` chose another runtime than ONNX Runtime's float32 (OpenVINO's bfloat16 on CPUs with AMX), also with
  ``precision="fp32"``;
- face-api.js: its net on ONNX Runtime doing face-api's steps (``benchmarks/peers/faceapi.py``: pad to square,
  resize to 112, normalise, run), at several crops per ONNX Runtime call, on one session with ONNX Runtime's
  threads and on ``--streams`` single-threaded sessions side by side (one per CPU), which suits its small net
  better on some machines; the peer's best way of running is the one we are compared with. When ours runs in
  bfloat16, face-api.js's net also runs on OpenVINO in bfloat16 (``--streams`` single-threaded streams), and the
  ratios against that are printed too: like for like.

The contenders take turns, ``--rounds`` times (every other round in reverse order), and each keeps its best
round, so a busy machine slows them alike; the ratios ours/face-api are what carry over. Per CPU-second (all threads of this process, the figure of
``crops_per_second.py``) is also given: it is what one idle core would do and moves less with other load.

    python benchmarks/peer_faceapi.py --faceapi DIR [--model default] [--crops 1024] [--rounds 3] [--threads N]
        [--precision int8]

``--precision`` loads ours with that precision instead of what ``load`` picks on this CPU (``int8``: the int8 twin
on OpenVINO). With ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI`` in the environment OpenVINO is held to the instructions
of a CPU without AMX (ONNX Runtime does not read it), which is how the int8 rows of docs/performance.md stand in for
such a CPU on one that has AMX.

DIR is the unpacked ``@vladmandic/face-api`` npm package (or ``FACEAPI_DIR``); see benchmarks/peers/faceapi.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
from _common import REPO, machine
from crops_per_second import rate
from default_path import load_crops
from faceapi import FaceApiAgeGender, FaceApiMissing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faceapi", help="the unpacked @vladmandic/face-api npm package (default: $FACEAPI_DIR)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--crops", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3, help="turns each contender takes (its best is kept)")
    ap.add_argument("--peer-rows", default="16,32,64", help="face-api.js crops per ONNX Runtime call, each timed")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads of both (default: ONNX Runtime's)")
    ap.add_argument("--streams", type=int, default=os.cpu_count() or 1,
                    help="single-threaded sessions of face-api.js's side-by-side runs (default: one per CPU)")
    ap.add_argument("--precision", default=None, help="ours with this precision (fp32, bf16, int8; default: load's choice)")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "utkface" / "images"))
    args = ap.parse_args()
    try:
        peer = FaceApiAgeGender(args.faceapi, threads=args.threads)
    except FaceApiMissing as e:
        sys.exit(f"error: {e}")

    import agegender

    crops = load_crops(args.data, args.crops)
    ours = agegender.load(args.model, detector="none", threads=args.threads, precision=args.precision)
    ours_noflip = agegender.load(args.model, detector="none", threads=args.threads, tta_flip=False,
                                 precision=args.precision)
    flip = "on" if ours.tta_flip else "off"
    contenders = {
        f"ours: load({args.model!r}, detector='none') (flip TTA {flip}, batch {ours.batch_size})": ours.predict_batch,
        f"ours: the same with tta_flip=False (batch {ours_noflip.batch_size})": ours_noflip.predict_batch,
    }
    ours_info = ours.info()
    if (ours_info["backend"], ours_info["precision"]) != ("onnx", "fp32"):  # the float32 path beside the default
        fp32 = agegender.load(args.model, detector="none", threads=args.threads, precision="fp32")
        contenders[f"ours: float32 on ONNX Runtime (precision='fp32', flip TTA {'on' if fp32.tta_flip else 'off'})"] = \
            fp32.predict_batch
    streams = int(getattr(ours.backend, "streams", 1))
    if streams > 1:  # what the pipelines of single-threaded calls (the default) gain over one call at a time
        serial = agegender.load(args.model, detector="none", threads=streams, precision=args.precision)
        contenders[f"ours: one model call at a time on {streams} threads (load(..., threads={streams}), flip TTA "
                   f"{'on' if serial.tta_flip else 'off'})"] = serial.predict_batch
    peer_streams = FaceApiAgeGender(args.faceapi, threads=args.threads, streams=args.streams) if args.streams > 1 else None
    for rows in (int(r) for r in args.peer_rows.split(",")):
        for p, how in ((peer, ""), (peer_streams, f", {args.streams} single-threaded sessions")):
            if p is None:
                continue

            def run(c, rows=rows, p=p):
                p.max_rows = rows
                return p.predict_batch(c)

            contenders[f"face-api.js: {rows} crops per ONNX Runtime call{how}"] = run
    if ours_info["precision"] == "bf16":  # like for like: face-api.js's net in bfloat16 on OpenVINO too
        ov_peer = FaceApiAgeGender(args.faceapi, threads=args.threads, streams=args.streams, runtime="openvino-bf16")
        for rows in (int(r) for r in args.peer_rows.split(",")):

            def run_ov(c, rows=rows):
                ov_peer.max_rows = rows
                return ov_peer.predict_batch(c)

            contenders[f"face-api.js on OpenVINO bf16: {rows} crops per call, {args.streams} single-threaded "
                       f"streams"] = run_ov

    print(f"machine: {machine()}")
    print(f"ours: {args.model} ({ours_info.get('name')}, {ours_info['backend']} backend, {ours_info['precision']}); "
          f"face-api.js: {peer.name}")
    print(f"{len(crops)} decoded {crops[0].shape[1]}×{crops[0].shape[0]} UTKFace crops, {args.rounds} rounds, "
          f"threads {args.threads or 'default'}\n", flush=True)
    best = {k: (0.0, 0.0) for k in contenders}
    for r in range(args.rounds):
        # every other round in reverse order, so no contender always runs first (or right after another)
        for name, fn in (list(contenders.items()) if r % 2 == 0 else list(contenders.items())[::-1]):
            wall, cpu = rate(lambda fn=fn: fn(crops), len(crops), 0.0)
            best[name] = (max(best[name][0], wall), max(best[name][1], cpu))
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print("| net | crops/s | crops per CPU-second |")
    print("|---|---|---|")
    for name, (wall, cpu) in best.items():
        print(f"| {name} | {wall:.0f} | {cpu:.0f} |")
    for prefix, what in (("face-api.js:", "face-api.js"), ("face-api.js on OpenVINO", "face-api.js on OpenVINO bf16")):
        peers_rows = [k for k in best if k.startswith(prefix)]
        if not peers_rows:
            continue
        peer_name = max(peers_rows, key=lambda k: best[k][0])
        pw, pc = best[peer_name]
        print(f"\n{what}'s best: {peer_name.split(': ', 1)[1]}; load average {load_end:.2f} at the end")
        for name in [k for k in best if k.startswith("ours")]:
            w, c = best[name]
            print(f"ours/{what}, {name.split(': ', 1)[1]}: {w / pw:.2f}× per wall second, {c / pc:.2f}× per "
                  "CPU-second")


if __name__ == "__main__":
    main()
