"""Transforms: output shapes and normalisation, eval determinism, and the 10-crop layout of
aminian_noubir (4 corners + centre, then their mirrors), on generated images and grace_hopper.jpg."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from agegender.data.transforms import (
    AUGMENTS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PhotoDegradation,
    average_crops,
    eval_transform,
    ten_crop_transform,
    train_transform,
)
from agegender.errors import AgeGenderError


def random_image(h: int = 90, w: int = 70, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def normalised(arr: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """What the pipelines should produce for an HWC uint8 array that needs no resizing."""
    t = torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0
    return (t - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)


@pytest.mark.parametrize("augment", AUGMENTS)
@pytest.mark.parametrize("size", [64, (64, 32)])
def test_train_transform_shapes(augment, size):
    tf = train_transform(size, IMAGENET_MEAN, IMAGENET_STD, augment=augment)
    h, w = (size, size) if isinstance(size, int) else size
    for img in (random_image(), Image.fromarray(random_image(50, 120))):
        out = tf(img)
        assert type(out) is torch.Tensor and out.dtype == torch.float32 and out.shape == (3, h, w)
        assert torch.isfinite(out).all()


def test_input_kinds_are_all_accepted():
    tf = eval_transform(32)
    rgb = random_image(40, 40)
    ref = tf(rgb)
    assert torch.allclose(tf(Image.fromarray(rgb)), ref)
    rgba = np.concatenate([rgb, np.full((40, 40, 1), 255, np.uint8)], axis=2)
    assert torch.allclose(tf(rgba), ref)
    grey = rgb[:, :, 0]
    out = tf(grey)
    assert out.shape == (3, 32, 32)
    assert torch.allclose(tf(Image.fromarray(grey)), out)
    grey_model = eval_transform(32, mean=(0.5,), std=(0.5,))  # kang2019-style grey input
    assert grey_model(rgb).shape == (1, 32, 32)


def test_eval_is_deterministic_and_normalises():
    img = random_image(64, 64)
    tf = eval_transform(64, IMAGENET_MEAN, IMAGENET_STD)
    a, b = tf(img), tf(img)
    assert torch.equal(a, b)
    assert torch.allclose(a, normalised(img), atol=1e-5)  # same size: resize and crop change nothing
    const = np.full((20, 20, 3), 128, np.uint8)
    out = eval_transform(20, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))(const)
    assert torch.allclose(out, torch.full_like(out, (128 / 255 - 0.5) / 0.25), atol=1e-5)


def test_eval_resizes_then_centre_crops():
    # a wide image: left and right thirds red, middle third blue → the square centre crop is blue
    img = np.zeros((60, 180, 3), np.uint8)
    img[:, :60, 0] = img[:, 120:, 0] = 255
    img[:, 60:120, 2] = 255
    out = eval_transform(30, (0, 0, 0), (1, 1, 1))(img)
    assert out.shape == (3, 30, 30)
    inner = out[:, :, 1:-1]  # the outermost columns blend with red in the antialiased resize
    assert inner[2].min() > 0.95 and inner[0].max() < 0.05
    # resize=40 then crop 30: the crop is the centre 30x30 of a 40x120 image
    out = eval_transform(30, (0, 0, 0), (1, 1, 1), resize=40)(img)
    assert out[2].min() > 0.95
    # PETA-style rectangular input: exact resize to (h, w), nothing cropped away
    assert eval_transform((64, 32))(random_image(200, 50)).shape == (3, 64, 32)


def test_train_randomness_is_seedable():
    img = random_image()
    tf = train_transform(48, augment="strong")
    torch.manual_seed(0)
    a = tf(img)
    torch.manual_seed(0)
    b = tf(img)
    assert torch.equal(a, b)
    torch.manual_seed(1)
    assert not torch.equal(a, tf(img))


def test_transforms_pickle_for_dataloader_workers():
    for tf in (train_transform(32, augment="strong"), eval_transform(32), ten_crop_transform(24, resize=32)):
        clone = pickle.loads(pickle.dumps(tf))
        assert clone(random_image()).shape == tf(random_image()).shape


def test_ten_crop_layout():
    img = random_image(40, 50, seed=3)
    size = 24
    out = ten_crop_transform(size, IMAGENET_MEAN, IMAGENET_STD, resize=(40, 50))(img)  # resize to itself
    assert out.shape == (10, 3, size, size)
    full = normalised(img)
    top, left = (40 - size) // 2, (50 - size) // 2  # both even here, so no rounding question
    regions = [
        full[:, :size, :size],  # 0 top-left
        full[:, :size, -size:],  # 1 top-right
        full[:, -size:, :size],  # 2 bottom-left
        full[:, -size:, -size:],  # 3 bottom-right
        full[:, top:top + size, left:left + size],  # 4 centre
    ]
    for i, region in enumerate(regions):
        assert torch.allclose(out[i], region, atol=1e-5), f"crop {i}"
        assert torch.allclose(out[i + 5], region.flip(-1), atol=1e-5), f"crop {i + 5} mirrors crop {i}"


def test_ten_crop_on_grace_hopper(grace_hopper):
    img = Image.open(grace_hopper)
    out = ten_crop_transform(227, IMAGENET_MEAN, IMAGENET_STD, resize=256)(img)
    assert out.shape == (10, 3, 227, 227) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert torch.equal(out[5], out[0].flip(-1))
    assert torch.equal(ten_crop_transform(227, resize=256)(img), out)  # deterministic
    # the centre crop equals the eval pipeline with the same resize and crop
    assert torch.allclose(out[4], eval_transform(227, resize=256)(img), atol=1e-5)
    with pytest.raises(AgeGenderError):
        ten_crop_transform(227, resize=200)


def test_grace_hopper_train_and_eval(grace_hopper):
    img = np.asarray(Image.open(grace_hopper).convert("RGB"))
    assert eval_transform(112)(img).shape == (3, 112, 112)
    assert train_transform(112)(img).shape == (3, 112, 112)
    assert train_transform((128, 64), augment="strong")(img).shape == (3, 128, 64)


def test_average_crops():
    per_crop = torch.arange(40, dtype=torch.float32).reshape(20, 2)  # 2 images x 10 crops
    avg = average_crops(per_crop, 10)
    assert avg.shape == (2, 2)
    assert torch.allclose(avg, per_crop.reshape(2, 10, 2).mean(1))
    out = average_crops({"gender": per_crop, "age": [per_crop[:, 0].numpy()]}, 10)
    assert torch.allclose(out["gender"], avg)
    assert np.allclose(out["age"][0], avg[:, 0].numpy())
    with pytest.raises(AgeGenderError):
        average_crops(per_crop[:15], 10)


def test_bad_options():
    with pytest.raises(AgeGenderError) as err:
        train_transform(32, augment="extreme")
    assert err.value.code == "bad_config"
    with pytest.raises(AgeGenderError):
        eval_transform(32, mean=(0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert len(IMAGENET_MEAN) == len(IMAGENET_STD) == 3


def _chw(arr: np.ndarray) -> torch.Tensor:
    from torchvision import tv_tensors

    return tv_tensors.Image(torch.from_numpy(arr).permute(2, 0, 1).contiguous())


def test_photo_degradation_keeps_the_image_layout_and_changes_it():
    img = _chw(random_image(64, 48))
    every = PhotoDegradation(p=1.0, tone=1.0, blur=1.0, downscale=1.0, noise=1.0, jpeg=1.0)
    torch.manual_seed(0)
    out = every(img)
    assert out.shape == img.shape and out.dtype == torch.uint8
    assert (out.float() - img.float()).abs().mean() > 5  # a random image loses its detail to blur and JPEG
    assert torch.equal(PhotoDegradation(p=0.0)(img), img)  # never applied
    grey = _chw(random_image(32, 32))[:1]
    assert torch.equal(every(grey), grey)  # one-channel images are left alone


def test_photo_degradation_tones_and_steps_alone():
    img = _chw(random_image(32, 32, seed=3))
    tone_only = PhotoDegradation(p=1.0, tone=1.0, blur=0.0, downscale=0.0, noise=0.0, jpeg=0.0)
    for seed in range(12):  # monochrome, sepia or faded: channels become alike or contrast falls
        torch.manual_seed(seed)
        out = tone_only(img).float()
        spread_before = img.float().std()
        channel_gap = (out[0] - out[2]).abs().mean()
        assert out.std() < spread_before or channel_gap < (img.float()[0] - img.float()[2]).abs().mean()
    torch.manual_seed(1)
    jpeg_only = PhotoDegradation(p=1.0, tone=0.0, blur=0.0, downscale=0.0, noise=0.0, jpeg=1.0)(img)
    assert jpeg_only.shape == img.shape and not torch.equal(jpeg_only, img)


def test_photo_degradation_scale_range_sets_how_much_detail_is_lost():
    """A smaller down-scaling factor keeps less detail: on random pixels the image scaled to 1/8 and back differs
    from the original more than one scaled to 0.9; the range comes from data.degradation through train_transform."""
    img = _chw(random_image(96, 96, seed=2))

    def loss(lo: float, hi: float) -> float:
        step = PhotoDegradation(p=1.0, tone=0.0, blur=0.0, downscale=1.0, noise=0.0, jpeg=0.0, scale=(lo, hi))
        torch.manual_seed(0)
        return float((step(img).float() - img.float()).abs().mean())

    assert loss(0.125, 0.125) > loss(0.9, 0.9) + 10
    tf = train_transform(48, augment="wild", degradation={"scale": [0.12, 0.7], "p": 0.9})
    step = next(t for t in tf.transforms if isinstance(t, PhotoDegradation))
    assert step.scale == (0.12, 0.7) and step.p == 0.9
    default = next(t for t in train_transform(48, augment="wild").transforms if isinstance(t, PhotoDegradation))
    assert default.scale == (0.3, 0.7)


@pytest.mark.parametrize(
    ("augment", "degradation", "message"),
    [
        ("wild", {"scales": [0.1, 0.5]}, "unknown data.degradation key"),
        ("wild", {"scale": [0.5, 0.1]}, "0 < low <= high <= 1"),
        ("wild", {"scale": [0.0, 0.5]}, "0 < low <= high <= 1"),
        ("wild", {"scale": 0.5}, "bad data.degradation"),
        ("strong", {"scale": [0.2, 0.5]}, "applies to augment 'wild'"),
    ],
)
def test_bad_degradation_options_are_one_line_errors(augment, degradation, message):
    with pytest.raises(AgeGenderError, match=message) as e:
        train_transform(48, augment=augment, degradation=degradation)
    assert e.value.code == "bad_config" and "\n" not in str(e.value)


def test_wild_augment_is_reproducible_under_a_seed():
    tf = train_transform(48, augment="wild")
    img = random_image(60, 60)
    torch.manual_seed(5)
    a = tf(img)
    torch.manual_seed(5)
    assert torch.equal(tf(img), a)


def test_resize_rgb_is_one_resize_for_training_and_inference(tmp_path):
    """Shrinking averages pixel areas (anti-aliased: a fine stripe pattern becomes flat grey, not aliased bands),
    enlarging is bilinear, the input size is returned as is, and the training reader and the inference
    preprocessing give the same pixels."""
    import cv2
    from PIL import Image

    from agegender.data.preprocess import Preprocessing, resize_rgb
    from agegender.labels import Sample
    from agegender.training.datamodule import read_resized

    stripes = np.zeros((200, 200, 3), np.uint8)
    stripes[:, ::2] = 255
    small = resize_rgb(stripes, (50, 50))
    assert small.shape == (50, 50, 3) and np.all(np.abs(small.astype(int) - 128) <= 1)
    rgb = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_rgb(rgb, (80, 60)), cv2.resize(rgb, (60, 80), interpolation=cv2.INTER_LINEAR))
    assert resize_rgb(rgb, (40, 30)) is rgb
    Image.fromarray(stripes).save(tmp_path / "s.png")
    pre = Preprocessing.from_meta({"input_size": [64, 64]})
    np.testing.assert_array_equal(read_resized(Sample(path=str(tmp_path / "s.png")), (64, 64)), pre.resize(stripes))
