"""face-api.js's age/gender net, the most used free peer, runnable beside ours: the network of ``AgeGenderNet``
(TinyXception feature extractor at 112×112, then an age regression and a 2-way gender softmax) rebuilt in
PyTorch from face-api's TypeScript source, loaded with face-api's own weights, exported to ONNX and run with ONNX
Runtime doing what face-api does with a tensor input: pad to square, resize to 112, normalise, run.

A benchmark helper, not part of the package: the weights are not in this repository. Get them (MIT, the
maintained fork ``@vladmandic/face-api`` ships the model files and the source) with

    npm pack @vladmandic/face-api && tar xzf vladmandic-face-api-*.tgz     # -> ./package

and pass that folder as ``--faceapi DIR`` or in ``FACEAPI_DIR``:

    python benchmarks/peers/faceapi.py --faceapi package export   # writes (or finds) the cached ONNX file
    python benchmarks/peers/faceapi.py --faceapi package check    # port vs the original (Node.js + tfjs CPU)

``check`` runs face-api itself through ``faceapi_check.mjs`` on a few crops (the matplotlib Grace Hopper photo,
a face cut from it, UTKFace chips) and fails unless ages agree within 0.1 years and male probabilities within
0.001. It needs Node.js and npm; tfjs is installed with npm into ``--tfjs DIR`` (a cache folder by default).

In Python::

    from faceapi import FaceApiAgeGender          # with benchmarks/peers on sys.path
    ages, p_male = FaceApiAgeGender("package").predict_batch(list_of_rgb_uint8_crops)

Source references are to ``package/src`` of @vladmandic/face-api 1.7.15.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

MANIFEST = "age_gender_model-weights_manifest.json"
#: the net's input side (xception/TinyXception.ts:43, ``input.toBatchTensor(112, true)``)
INPUT_SIZE = 112
#: subtracted from the RGB values before dividing by 255 (xception/TinyXception.ts:44-45)
MEAN_RGB = (122.782, 117.001, 104.298)
HOW_TO_GET = "npm pack @vladmandic/face-api && tar xzf vladmandic-face-api-*.tgz, then --faceapi package"
#: where the exported ONNX files are kept (one per weights file, named by its hash)
CACHE_DIR = Path(tempfile.gettempdir()) / "agegender-peers"
#: the tfjs packages face-api's Node build for pure-JS tfjs requires (faceapi_check.mjs)
TFJS_PACKAGES = ("@tensorflow/tfjs@4.22.0", "@tensorflow/tfjs-backend-wasm@4.22.0")


class FaceApiMissing(RuntimeError):
    """The face-api package folder (with model/age_gender_model*) is not where it was said to be."""


def model_dir(faceapi_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding ``age_gender_model-weights_manifest.json``: ``faceapi_dir`` (or ``$FACEAPI_DIR``) is the
    unpacked npm package (its ``model/`` is used) or that model folder itself."""
    given = faceapi_dir or os.environ.get("FACEAPI_DIR")
    if not given:
        raise FaceApiMissing(f"no face-api folder given (--faceapi DIR or FACEAPI_DIR); get it with: {HOW_TO_GET}")
    root = Path(given).expanduser()
    for d in (root / "model", root):
        if (d / MANIFEST).is_file():
            return d.resolve()
    raise FaceApiMissing(f"{root} holds no model/{MANIFEST}; get face-api with: {HOW_TO_GET}")


def package_dir(faceapi_dir: str | os.PathLike | None = None) -> Path:
    """The unpacked npm package (the folder above ``model/``)."""
    return model_dir(faceapi_dir).parent


# --- weights -----------------------------------------------------------------------------------------------------

def load_weights(mdir: Path) -> dict[str, np.ndarray]:
    """Every tensor of the tfjs weights manifest, dequantised as tfjs does (tfjs-core io_utils.decodeWeights:
    ``value = q * scale + min`` in double precision, stored as float32; float16 widened). The weight groups'
    files are one byte stream, read in manifest order."""
    manifest = json.loads((mdir / MANIFEST).read_text())
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        buf = b"".join((mdir / p).read_bytes() for p in group["paths"])
        off = 0
        for spec in group["weights"]:
            shape = [int(s) for s in spec["shape"]]
            n = int(np.prod(shape)) if shape else 1
            q = spec.get("quantization")
            if q:
                raw_dtype = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}[q["dtype"]]
                raw = np.frombuffer(buf, raw_dtype, n, off)
                if q["dtype"] == "float16":
                    values = raw.astype(np.float32)
                else:
                    values = (raw.astype(np.float64) * float(q["scale"]) + float(q["min"])).astype(np.float32)
            else:
                raw_dtype = {"float32": np.float32, "int32": np.int32}[spec["dtype"]]
                values = np.frombuffer(buf, raw_dtype, n, off)
            off += n * np.dtype(raw_dtype).itemsize
            out[spec["name"]] = np.asarray(values, dtype=np.float32).reshape(shape)
        if off != len(buf):
            raise ValueError(f"{mdir / MANIFEST}: the manifest describes {off} bytes, the files hold {len(buf)}")
    return out


# --- the network (PyTorch, exported to ONNX) ----------------------------------------------------------------------

def build_torch_model(weights: dict[str, np.ndarray]):
    """``AgeGenderNet`` with ``TinyXception(2)`` (ageGenderNet/AgeGenderNet.ts:14) as a torch module with face-api's
    weights. Input: uint8 (or 0-255 float) RGB crops [N, S, S, 3], already square; output (age, p_male)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def tf_same_pad_s2(x, value=0.0):
        # TF's 'same' padding for a 3×3 window at stride 2 on an even side (112, 56, 28) and on 14: total 1,
        # floor(1/2)=0 before and 1 after (tfjs-core conv_util computePadding); torch pads symmetrically.
        return F.pad(x, (0, 1, 0, 1), value=value)

    class SeparableConv(nn.Module):
        """tf.separableConv2d (depthwise 3×3, pointwise 1×1, stride 1, 'same') + bias
        (common/depthwiseSeparableConv.ts:11-12)."""

        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
            self.pointwise = nn.Conv2d(cin, cout, 1)

        def forward(self, x):
            return self.pointwise(self.depthwise(x))

    class ReductionBlock(nn.Module):
        """xception/TinyXception.ts:16-23."""

        def __init__(self, cin: int, cout: int, activate_input: bool = True) -> None:
            super().__init__()
            self.activate_input = activate_input
            self.separable_conv0 = SeparableConv(cin, cout)
            self.separable_conv1 = SeparableConv(cout, cout)
            self.expansion_conv = nn.Conv2d(cin, cout, 1, stride=2)  # 1×1 at stride 2: 'same' pads nothing

        def forward(self, x):
            out = F.relu(x) if self.activate_input else x
            out = self.separable_conv0(out)
            out = self.separable_conv1(F.relu(out))
            out = F.max_pool2d(tf_same_pad_s2(out, float("-inf")), 3, 2)  # tf.maxPool([3,3],[2,2],'same')
            return out + self.expansion_conv(x)

    class MainBlock(nn.Module):
        """xception/TinyXception.ts:25-31."""

        def __init__(self, ch: int) -> None:
            super().__init__()
            self.separable_conv0 = SeparableConv(ch, ch)
            self.separable_conv1 = SeparableConv(ch, ch)
            self.separable_conv2 = SeparableConv(ch, ch)

        def forward(self, x):
            out = self.separable_conv0(F.relu(x))
            out = self.separable_conv1(F.relu(out))
            out = self.separable_conv2(F.relu(out))
            return out + x

    class AgeGenderNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # channel widths: xception/extractParams.ts:54-66
            self.conv_in = nn.Conv2d(3, 32, 3, stride=2)
            self.reduction_block_0 = ReductionBlock(32, 64, activate_input=False)
            self.reduction_block_1 = ReductionBlock(64, 128)
            self.main_block_0 = MainBlock(128)
            self.main_block_1 = MainBlock(128)
            self.exit_reduction_block = ReductionBlock(128, 256)
            self.exit_separable_conv = SeparableConv(256, 512)
            self.fc_age = nn.Linear(512, 1)
            self.fc_gender = nn.Linear(512, 2)
            self.register_buffer("mean", torch.tensor(MEAN_RGB, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, crops):
            x = crops.float().permute(0, 3, 1, 2)
            # dom/NetInput.ts:149-150: tf.image.resizeBilinear(img, [112, 112], alignCorners=false,
            # halfPixelCenters=false). torch has no such mode: export_onnx rewrites this Resize node to ONNX's
            # 'asymmetric' coordinates, which are TF's (x_src = x_dst * in / out); a 112-side input passes unchanged.
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
            x = (x - self.mean) / 255.0  # ops/normalize.ts:11 (subtract the mean RGB), TinyXception.ts:45 (.div(255))
            # xception/TinyXception.ts:46-54
            out = F.relu(self.conv_in(tf_same_pad_s2(x)))  # conv 3×3 stride 2 'same' + bias (TinyXception.ts:12-13)
            out = self.reduction_block_0(out)
            out = self.reduction_block_1(out)
            out = self.main_block_1(self.main_block_0(out))
            out = self.exit_reduction_block(out)
            out = F.relu(self.exit_separable_conv(out))
            # ageGenderNet/AgeGenderNet.ts:36-38: avgPool 7×7 stride 2 'valid' on the 7×7 map, then the two FC layers
            pooled = F.avg_pool2d(out, 7, 2).flatten(1)
            age = self.fc_age(pooled)[:, 0]
            gender = torch.softmax(self.fc_gender(pooled), dim=1)  # AgeGenderNet.ts:45; index 0 is male (:72)
            return age, gender[:, 0]

    net = AgeGenderNet().eval()

    def conv(layer, prefix: str) -> dict:  # filters [kh, kw, in, out] -> [out, in, kh, kw]
        return {f"{layer}.weight": weights[f"{prefix}/filters"].transpose(3, 2, 0, 1),
                f"{layer}.bias": weights[f"{prefix}/bias"]}

    def sep(layer, prefix: str) -> dict:  # depthwise [3, 3, in, 1] -> [in, 1, 3, 3]; pointwise [1, 1, in, out]
        return {f"{layer}.depthwise.weight": weights[f"{prefix}/depthwise_filter"].transpose(2, 3, 0, 1),
                f"{layer}.pointwise.weight": weights[f"{prefix}/pointwise_filter"].transpose(3, 2, 0, 1),
                f"{layer}.pointwise.bias": weights[f"{prefix}/bias"]}

    def reduction(layer, prefix: str) -> dict:
        return {**sep(f"{layer}.separable_conv0", f"{prefix}/separable_conv0"),
                **sep(f"{layer}.separable_conv1", f"{prefix}/separable_conv1"),
                **conv(f"{layer}.expansion_conv", f"{prefix}/expansion_conv")}

    state = {**conv("conv_in", "entry_flow/conv_in"),
             **reduction("reduction_block_0", "entry_flow/reduction_block_0"),
             **reduction("reduction_block_1", "entry_flow/reduction_block_1"),
             **reduction("exit_reduction_block", "exit_flow/reduction_block"),
             **sep("exit_separable_conv", "exit_flow/separable_conv")}
    for b in (0, 1):
        for k in (0, 1, 2):
            state.update(sep(f"main_block_{b}.separable_conv{k}", f"middle_flow/main_block_{b}/separable_conv{k}"))
    for head in ("age", "gender"):  # fully connected: x @ weights [512, n] + bias (common/fullyConnectedLayer.ts)
        state[f"fc_{head}.weight"] = weights[f"fc/{head}/weights"].T
        state[f"fc_{head}.bias"] = weights[f"fc/{head}/bias"]
    if len(state) != len(weights):
        raise ValueError(f"face-api weights: {len(weights)} tensors, {len(state)} mapped")
    tensors = {k: torch.tensor(np.array(v)) for k, v in state.items()}
    net.load_state_dict({**tensors, "mean": net.mean}, strict=True)
    return net


def export_onnx(mdir: Path, cache_dir: Path = CACHE_DIR) -> Path:
    """The ONNX file of the net (input ``crops``: uint8 [N, S, S, 3], dynamic N and S; outputs ``age`` [N] and
    ``p_male`` [N]), exported once per weights file into ``cache_dir``."""
    digest = hashlib.sha256((mdir / MANIFEST).read_bytes())
    for p in json.loads((mdir / MANIFEST).read_text())[0]["paths"]:
        digest.update((mdir / p).read_bytes())
    path = Path(cache_dir) / f"faceapi-age-gender-{digest.hexdigest()[:12]}.onnx"
    if path.is_file():
        return path
    import onnx
    import torch

    net = build_torch_model(load_weights(mdir))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    example = torch.zeros(2, 200, 200, 3, dtype=torch.uint8)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and constant-folding notes
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(tmp), dynamo=False, opset_version=17, input_names=["crops"],
                          output_names=["age", "p_male"],
                          dynamic_axes={"crops": {0: "batch", 1: "side", 2: "side"}, "age": {0: "batch"},
                                        "p_male": {0: "batch"}})
    model = onnx.load(str(tmp))
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    if len(resizes) != 1:
        raise RuntimeError(f"expected one Resize node in the export, found {len(resizes)}")
    for attr in resizes[0].attribute:  # tf.image.resizeBilinear(alignCorners=false, halfPixelCenters=false)
        if attr.name == "coordinate_transformation_mode":
            attr.s = b"asymmetric"
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    return path


# --- the runner ---------------------------------------------------------------------------------------------------

def pad_to_square(crop: np.ndarray) -> np.ndarray:
    """ops/padToSquare.ts with isCenterImage=true (dom/NetInput.ts:146): zeros on the short side, Math.round(diff/2)
    of them after the image and the rest before."""
    h, w = crop.shape[:2]
    if h == w:
        return crop
    diff = abs(h - w)
    after = int(np.floor(diff * 0.5 + 0.5))  # JavaScript's Math.round rounds halves up
    before = diff - after
    pads = ((before, after), (0, 0), (0, 0)) if h < w else ((0, 0), (before, after), (0, 0))
    return np.pad(crop, pads)


def _openvino_bf16(path: Path, streams: int, threads: int | None):
    """The net compiled by OpenVINO in bfloat16 with ``streams`` streams of ``threads`` (default one) threads each,
    as agegender's OpenVINO backend compiles ours (separately compiled single-stream copies share one CPU)."""
    import openvino as ov

    core = ov.Core()
    return core.compile_model(core.read_model(str(path)), "CPU", {
        "INFERENCE_PRECISION_HINT": "bf16", "NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": streams * (threads or 1)})


class _OpenVinoSession:
    """``session.run(None, {"crops": x})`` of an ONNX Runtime session, done by an infer request of a compiled
    OpenVINO model (one per calling thread)."""

    def __init__(self, compiled) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()

    def run(self, _names, feeds: dict) -> list[np.ndarray]:
        res = self.request.infer([feeds["crops"]])
        return [np.array(res[o]) for o in self.compiled.outputs]


class FaceApiAgeGender:
    """face-api.js's age/gender net on ONNX Runtime: ``predict_batch(rgb_uint8_crops) -> (ages, p_male)``, the
    steps of ``AgeGenderNet.predictAgeAndGender`` on tensor inputs (pad to square and the resize to 112 as
    dom/NetInput.ts:139-156, normalisation as xception/TinyXception.ts:43-45, the net, the gender softmax).
    Pad and stack happen in NumPy, resize and normalisation inside the ONNX graph. ``max_rows``: crops per
    ONNX Runtime call; ``streams`` > 1: that many single-threaded sessions take the calls side by side, which
    suits this small net better than one session's threads on some machines."""

    def __init__(self, faceapi_dir: str | os.PathLike | None = None, threads: int | None = None,
                 max_rows: int = 64, cache_dir: Path = CACHE_DIR, streams: int = 1, runtime: str = "onnxruntime") -> None:
        """``runtime``: ``onnxruntime`` (float32) or ``openvino-bf16`` (OpenVINO in bfloat16, for a like-for-like
        row beside our models where those run so)."""
        import onnxruntime as ort

        self.model_dir = model_dir(faceapi_dir)
        self.onnx_path = export_onnx(self.model_dir, cache_dir)
        self.runtime = runtime
        compiled = {}

        def session(n_threads):
            if runtime == "openvino-bf16":  # one compiled model: a stream per session
                if not compiled:
                    compiled["m"] = _openvino_bf16(self.onnx_path, max(1, int(streams)), threads)
                return _OpenVinoSession(compiled["m"])
            opts = ort.SessionOptions()
            if n_threads:
                opts.intra_op_num_threads = int(n_threads)
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            return ort.InferenceSession(str(self.onnx_path), opts, providers=["CPUExecutionProvider"])

        self.session = session(threads)
        self.streams = max(1, int(streams))
        self.stream_sessions = [session(1) for _ in range(self.streams)] if self.streams > 1 else []
        self.pool = ThreadPoolExecutor(self.streams) if self.streams > 1 else None
        self.max_rows = int(max_rows)
        version = json.loads((self.model_dir.parent / "package.json").read_text()).get("version", "?") \
            if (self.model_dir.parent / "package.json").is_file() else "?"
        self.name = f"face-api.js age/gender net (@vladmandic/face-api {version}, TinyXception 112 px)"

    def predict_batch(self, crops: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Age in years and probability of male for each RGB uint8 crop [H, W, 3] (any size; crops of one size
        share ONNX Runtime calls)."""
        squares = [pad_to_square(np.asarray(c, dtype=np.uint8)) for c in crops]
        ages = np.empty(len(squares), dtype=np.float32)
        p_male = np.empty(len(squares), dtype=np.float32)
        by_side: dict[int, list[int]] = {}
        for i, s in enumerate(squares):
            by_side.setdefault(s.shape[0], []).append(i)
        calls = [idx[start:start + self.max_rows] for idx in by_side.values()
                 for start in range(0, len(idx), self.max_rows)]

        def run(session, parts):
            for part in parts:
                ages[part], p_male[part] = session.run(None, {"crops": np.stack([squares[i] for i in part])})

        if self.pool is None or len(calls) < 2:
            run(self.session, calls)
        else:
            list(self.pool.map(run, self.stream_sessions,
                               [calls[k::self.streams] for k in range(self.streams)]))
        return ages, p_male


# --- check against the original -------------------------------------------------------------------------------------

def check_crops() -> list[tuple[str, np.ndarray]]:
    """A few crops of several shapes: the Grace Hopper photo (portrait 512×600: padding), a face cut from it,
    a 112×112 resize of that face (no resize in face-api), UTKFace chips (200×200) and a 97×131 cut."""
    import matplotlib
    from PIL import Image

    photo = np.asarray(Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
                       .convert("RGB"))
    face = photo[70:330, 120:370]  # 260×250, the face with some hair and collar
    crops = [("grace_hopper", photo), ("grace_hopper_face", face),
             ("grace_hopper_face_112", np.asarray(Image.fromarray(face).resize((112, 112), Image.BILINEAR))),
             ("grace_hopper_cut_97x131", face[40:171, 60:157])]
    utk = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "utkface" / "images"
    for f in sorted(utk.glob("*.jpg"))[::2000][:8]:
        crops.append((f.name, np.asarray(Image.open(f).convert("RGB"))))
    return crops


def ensure_tfjs(tfjs_dir: Path) -> Path:
    """``tfjs_dir/node_modules`` with the tfjs packages face-api's Node build needs (installed with npm once)."""
    if not all((tfjs_dir / "node_modules" / p.rsplit("@", 1)[0]).is_dir() for p in TFJS_PACKAGES):
        npm = shutil.which("npm")
        if npm is None:
            raise FaceApiMissing("the check runs face-api in Node.js: npm is not installed")
        tfjs_dir.mkdir(parents=True, exist_ok=True)
        print(f"installing {' '.join(TFJS_PACKAGES)} into {tfjs_dir} ...", flush=True)
        subprocess.run([npm, "install", "--prefix", str(tfjs_dir), "--no-audit", "--no-fund", *TFJS_PACKAGES],
                       check=True, stdout=subprocess.DEVNULL)
    return tfjs_dir / "node_modules"


def check(faceapi_dir: str | None, tfjs_dir: Path, age_tol: float = 0.1, prob_tol: float = 1e-3) -> bool:
    """Run face-api itself (Node.js, tfjs CPU backend) and the port on the same crops; print both and the gaps."""
    node = shutil.which("node")
    if node is None:
        raise FaceApiMissing("the check runs face-api in Node.js: node is not installed")
    pkg = package_dir(faceapi_dir)
    modules = ensure_tfjs(tfjs_dir)
    crops = check_crops()
    with tempfile.TemporaryDirectory(prefix="faceapi-check-") as tmp:
        listing = []
        for i, (name, c) in enumerate(crops):
            (Path(tmp) / f"{i}.rgb").write_bytes(np.ascontiguousarray(c, dtype=np.uint8).tobytes())
            listing.append({"name": name, "height": c.shape[0], "width": c.shape[1], "file": f"{i}.rgb"})
        (Path(tmp) / "crops.json").write_text(json.dumps(listing))
        script = Path(__file__).with_name("faceapi_check.mjs")
        run = subprocess.run([node, str(script), str(pkg), tmp], env={**os.environ, "NODE_PATH": str(modules)},
                             capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise RuntimeError(f"faceapi_check.mjs failed: {run.stderr.strip()[-2000:]}")
        print(run.stdout.strip())
        original = json.loads((Path(tmp) / "faceapi.json").read_text())
    ages, p_male = FaceApiAgeGender(pkg).predict_batch([c for _, c in crops])
    print(f"{'crop':44} {'size':>9} {'age js':>8} {'age port':>8} {'Δ age':>8} {'p_male js':>9} {'port':>9} "
          f"{'Δ p':>9}")
    worst_age = worst_p = 0.0
    for (name, c), o, a, p in zip(crops, original, ages, p_male):
        da, dp = abs(float(a) - o["age"]), abs(float(p) - o["p_male"])
        worst_age, worst_p = max(worst_age, da), max(worst_p, dp)
        print(f"{name[:44]:44} {c.shape[1]:>4}×{c.shape[0]:<4} {o['age']:8.3f} {a:8.3f} {da:8.5f} "
              f"{o['p_male']:9.6f} {p:9.6f} {dp:9.2e}")
    ok = worst_age <= age_tol and worst_p <= prob_tol
    print(f"largest gaps: age {worst_age:.5f} years (limit {age_tol}), p_male {worst_p:.2e} (limit {prob_tol}): "
          f"{'OK' if ok else 'FAILED'}")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faceapi", help="the unpacked @vladmandic/face-api npm package (default: $FACEAPI_DIR)")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("export", help="write (or find) the cached ONNX file and print its path")
    c = sub.add_parser("check", help="compare the port with face-api itself run in Node.js")
    c.add_argument("--tfjs", default=str(CACHE_DIR / "tfjs"), help="npm folder for tfjs (installed if missing)")
    args = ap.parse_args()
    try:
        if args.command == "export":
            print(export_onnx(model_dir(args.faceapi)))
        elif not check(args.faceapi, Path(args.tfjs)):
            sys.exit(1)
    except FaceApiMissing as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
