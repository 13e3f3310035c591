"""Convert MediaPipe's BlazeFace full-range face detector (TFLite, Apache-2.0) to ONNX.

MediaPipe 0.10.14's wheel ships ``face_detection_full_range_sparse.tflite`` (192×192 input, 2,304
anchors). Its weights are stored sparse (TFLite ``DENSIFY``) and fp16 (``DEQUANTIZE``), which the
tflite→ONNX converters on PyPI do not handle, so this script runs the model once in the TFLite
interpreter to read every constant densified, rebuilds the graph op by op as a PyTorch module
(conv, depthwise conv, pad, add, bilinear resize, depth-to-space, reshape), checks it against the
interpreter and exports it with ``torch.onnx.export``. The result is the file that
``agegender.inference.detectors.blazeface`` loads (``src/agegender/weights/blazeface_full_range.onnx``).

Needs, besides the package: ``pip install tflite ai-edge-litert`` and the MediaPipe wheel (any
platform's, it is only unzipped)::

    pip download --no-deps mediapipe==0.10.14 -d /tmp/mp
    python tools/convert_blazeface.py /tmp/mp/mediapipe-0.10.14-*.whl src/agegender/weights/blazeface_full_range.onnx
"""

from __future__ import annotations

import argparse
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MEMBER = "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite"


def _options(op, cls):
    import tflite

    table = op.BuiltinOptions()
    opt = getattr(tflite, cls)()
    opt.Init(table.Bytes, table.Pos)
    return opt


def _act(code: int):
    # TFLite ActivationFunctionType: 0 NONE, 1 RELU, 3 RELU6
    return {0: None, 1: F.relu, 3: F.relu6}[code]


def _same_pad(hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int]) -> tuple[int, int, int, int]:
    """TensorFlow's SAME padding (more on the bottom/right when odd) as ``F.pad`` amounts, computed once
    from the static input size so the exported graph holds constants (OpenCV's importer needs that)."""
    h, w = hw
    ph = max((-(-h // s[0]) - 1) * s[0] + k[0] - h, 0)
    pw = max((-(-w // s[1]) - 1) * s[1] + k[1] - w, 0)
    return (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)


class TFLiteGraph(nn.Module):
    """The TFLite graph replayed in NCHW: input [N, 3, 192, 192] in [-1, 1] → (regressors, scores)."""

    def __init__(self, model_bytes: bytes, consts: dict[int, np.ndarray], inputs: list[int], outputs: list[int]):
        super().__init__()
        import tflite

        model = tflite.Model.GetRootAsModel(model_bytes, 0)
        g = model.Subgraphs(0)
        self.inp, self.outs = inputs[0], outputs
        self.steps: list[tuple] = []
        self.params = nn.ParameterDict()
        B = tflite.BuiltinOperator
        name = {v: k for k, v in B.__dict__.items() if not k.startswith("_")}
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            kind = name[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
            ins = [op.Inputs(j) for j in range(op.InputsLength())]
            out = op.Outputs(0)
            if kind in ("DEQUANTIZE", "DENSIFY"):
                continue  # constants: read densified from the interpreter
            if kind == "CONV_2D":
                o = _options(op, "Conv2DOptions")
                w = consts[ins[1]].transpose(0, 3, 1, 2)  # OHWI → OIHW
                self._param(i, w, consts[ins[2]])
                self.steps.append((i, "conv", ins[0], out, (o.StrideH(), o.StrideW()),
                                   self._pad(g, ins[0], w, o), o.FusedActivationFunction(), 1))
            elif kind == "DEPTHWISE_CONV_2D":
                o = _options(op, "DepthwiseConv2DOptions")
                w = consts[ins[1]].transpose(3, 0, 1, 2)  # 1HWC → C1HW
                self._param(i, w, consts[ins[2]])
                self.steps.append((i, "conv", ins[0], out, (o.StrideH(), o.StrideW()),
                                   self._pad(g, ins[0], w, o), o.FusedActivationFunction(), w.shape[0]))
            elif kind == "PAD":
                p = consts[ins[1]].astype(int)  # NHWC [[before, after]] per dim
                self.steps.append((i, "pad", ins[0], out, (int(p[2, 0]), int(p[2, 1]), int(p[1, 0]), int(p[1, 1]),
                                                           int(p[3, 0]), int(p[3, 1]))))
            elif kind == "ADD":
                o = _options(op, "AddOptions")
                self.steps.append((i, "add", ins[0], out, ins[1], o.FusedActivationFunction()))
            elif kind == "RESIZE_BILINEAR":
                o = _options(op, "ResizeBilinearOptions")
                size = tuple(int(v) for v in consts[ins[1]])
                self.steps.append((i, "resize", ins[0], out, size, o.AlignCorners(), o.HalfPixelCenters()))
            elif kind == "DEPTH_TO_SPACE":
                o = _options(op, "DepthToSpaceOptions")
                self.steps.append((i, "d2s", ins[0], out, o.BlockSize()))
            elif kind == "RESHAPE":
                shape = (-1, *(int(v) for v in model.Subgraphs(0).Tensors(out).ShapeAsNumpy()[1:]))
                self.steps.append((i, "reshape", ins[0], out, shape))
            else:
                raise NotImplementedError(f"TFLite op {kind} (#{i})")

    @staticmethod
    def _pad(g, tensor: int, w: np.ndarray, o) -> tuple[int, int, int, int] | None:
        if o.Padding() != 0:  # VALID
            return None
        shape = g.Tensors(tensor).ShapeAsNumpy()  # NHWC
        return _same_pad((int(shape[1]), int(shape[2])), (w.shape[2], w.shape[3]), (o.StrideH(), o.StrideW()))

    def _param(self, i: int, w: np.ndarray, b: np.ndarray) -> None:
        self.params[f"w{i}"] = nn.Parameter(torch.from_numpy(np.ascontiguousarray(w, np.float32)), requires_grad=False)
        self.params[f"b{i}"] = nn.Parameter(torch.from_numpy(np.ascontiguousarray(b, np.float32)), requires_grad=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t: dict[int, torch.Tensor] = {self.inp: x}
        for step in self.steps:
            i, kind, src, out = step[:4]
            a = t[src]
            if kind == "conv":
                (s, padding, act, groups) = step[4:]
                w = self.params[f"w{i}"]
                if padding is not None:  # SAME
                    a = F.pad(a, padding)
                y = F.conv2d(a, w, self.params[f"b{i}"], stride=s, groups=groups)
                f = _act(act)
                t[out] = f(y) if f else y
            elif kind == "pad":
                # NHWC paddings → F.pad order for NCHW: (W left, W right, H top, H bottom, C front, C back)
                hb, ha, wb, wa, cb, ca = step[4]
                t[out] = F.pad(a, (wb, wa, hb, ha, cb, ca))
            elif kind == "add":
                y = a + t[step[4]]
                f = _act(step[5])
                t[out] = f(y) if f else y
            elif kind == "resize":
                size, align, half = step[4:]
                if not half and not align:
                    raise NotImplementedError("legacy bilinear resize")
                t[out] = F.interpolate(a, size=size, mode="bilinear", align_corners=bool(align))
            elif kind == "d2s":
                # TensorFlow's DCR order: input channel (i * b + j) * C + c → (c, h * b + i, w * b + j)
                b = step[4]
                n, cin, h, w = a.shape
                c = cin // (b * b)
                t[out] = a.reshape(n, b, b, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c, h * b, w * b)
            elif kind == "reshape":
                # [N, C, H, W] → NHWC order first, then TFLite's target shape
                t[out] = a.permute(0, 2, 3, 1).reshape(step[4]) if a.dim() == 4 else a.reshape(step[4])
        return t[self.outs[0]], t[self.outs[1]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel", help="mediapipe 0.10.x wheel (or the .tflite file itself)")
    ap.add_argument("output", help="ONNX file to write")
    args = ap.parse_args()
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    src = Path(args.wheel)
    data = zipfile.ZipFile(src).read(MEMBER) if src.suffix == ".whl" else src.read_bytes()
    tmp = Path(tempfile.mkdtemp()) / "model.tflite"
    tmp.write_bytes(data)
    it = Interpreter(model_path=str(tmp), experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (1, 192, 192, 3)).astype(np.float32)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    consts = {}
    for d in it.get_tensor_details():
        try:
            consts[d["index"]] = it.get_tensor(d["index"])
        except ValueError:
            pass
    outs = [o["index"] for o in it.get_output_details()]
    ref = [it.get_tensor(o) for o in outs]
    net = TFLiteGraph(data, consts, [it.get_input_details()[0]["index"]], outs).eval()
    with torch.no_grad():
        got = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    for r, g in zip(ref, got):
        err = float(np.abs(r - g.numpy()).max())
        print(f"torch vs TFLite: shape {tuple(g.shape)}, max abs diff {err:.2e}")
        assert err < 1e-3, "conversion does not match the TFLite interpreter"
    torch.onnx.export(net, (torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),), args.output,
                      input_names=["input"], output_names=["regressors", "scores"],
                      dynamic_axes={"input": {0: "batch"}, "regressors": {0: "batch"}, "scores": {0: "batch"}},
                      opset_version=17, dynamo=False)
    import onnxruntime as ort

    sess = ort.InferenceSession(args.output, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.transpose(0, 3, 1, 2).copy()})
    for r, g in zip(ref, got):
        print(f"ONNX vs TFLite: max abs diff {float(np.abs(r - g).max()):.2e}")
    print(f"wrote {args.output} ({Path(args.output).stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
