"""Tiny model packages and sample/bad image files shared by the inference tests (random weights, built in
seconds). The pytest fixtures wrapping them live in ``fixtures_models.py`` (load it with ``pytest_plugins``)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

import agegender  # noqa: F401  (torchvision compat first)

TINY_DIMS: dict[str, int] = {"age_group": 8, "gender": 2, "ethnicity": 5, "attributes": 0, "pedestrian": 9}


def tiny_bundle(kind: str = "face", seed: int = 0, input_size: int = 64) -> Any:
    """A small-CNN ModelBundle with random weights: ``face`` (age distribution + gender + ethnicity),
    ``body`` (PETA-style pedestrian head: gender + 5 age groups) or ``regression`` (years + age groups)."""
    import torch

    from agegender.labels import ETHNICITIES, GENDERS, get_scheme
    from agegender.models import build_model
    from agegender.models.package import ModelBundle

    torch.manual_seed(seed)
    scheme = "peta5" if kind == "body" else "adience8"
    dims = dict(
        TINY_DIMS, age_group=get_scheme(scheme).num_groups, pedestrian=1 + get_scheme(scheme).num_groups
    )
    if kind == "face":
        heads = {
            "age": {"type": "age_distribution"},
            "gender": {"type": "classification"},
            "ethnicity": {"type": "classification"},
        }
        dataset, size = "utkface", [input_size, input_size]
    elif kind == "body":
        heads = {"pedestrian": {"type": "multilabel"}}
        dataset, size = "peta", [input_size * 2, input_size]
    elif kind == "regression":
        heads = {
            "age": {"type": "age_regression"},
            "age_group": {"type": "classification"},
            "gender": {"type": "binary"},
        }
        dataset, size = "utkface", [input_size, input_size]
    else:
        raise ValueError(kind)
    model_cfg = {"trunk": {"name": "small_cnn"}, "heads": heads}
    model = build_model(model_cfg, dims, stats=None, with_losses=False).eval()
    config = {"name": f"tiny-{kind}", "model": model_cfg, "data": {"dataset": dataset, "age_scheme": scheme}}
    preprocess = {
        "input_size": size,
        "resize": size,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "channel_order": "RGB",
        "crop_margin": 0.0,
    }
    labels = {
        "gender": list(GENDERS),
        "ethnicity": list(ETHNICITIES),
        "age_scheme": scheme,
        "age_groups": list(get_scheme(scheme).labels),
        "attributes": [],
    }
    return ModelBundle(model, config, dims, preprocess, labels, {"name": f"tiny-{kind}", "version": "test"})


def write_tiny_package(path: Path, kind: str = "face", seed: int = 0) -> Path:
    from agegender.models.package import save_package

    return save_package(tiny_bundle(kind, seed), path)


def grace_hopper_path() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def grace_rgb() -> np.ndarray:
    from PIL import Image

    with Image.open(grace_hopper_path()) as im:
        return np.asarray(im.convert("RGB"))


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_image_folder(
    folder: Path, good: int, broken: int, size: tuple[int, int] = (128, 160)
) -> dict[str, str]:
    """``good`` small grace_hopper JPEGs and ``broken`` bad files (zero-byte, truncated, text) in ``folder``;
    returns {file name: "good" | "broken"}."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    small = np.asarray(Image.fromarray(grace_rgb()).resize((w, h), Image.BILINEAR))
    data = jpeg_bytes(small)
    kinds: dict[str, str] = {}
    for i in range(good):
        (folder / f"img_{i:04d}.jpg").write_bytes(data)
        kinds[f"img_{i:04d}.jpg"] = "good"
    for i in range(broken):
        name = f"bad_{i:04d}.jpg"
        if i % 3 == 0:
            (folder / name).write_bytes(b"")
        elif i % 3 == 1:
            (folder / name).write_bytes(data[: len(data) // 3])
        else:
            (folder / name).write_text("this is not an image\n")
        kinds[name] = "broken"
    return kinds


def png_with_header_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width``×``height`` pixels (a decompression-bomb stand-in)."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


#: bad-input case → expected image status; "face" means the image must decode and the face be found
BAD_INPUT_CASES: dict[str, str] = {
    "zero_byte.jpg": "empty_file",
    "truncated.jpg": "unreadable",
    "text.jpg": "not_an_image",
    "bomb.png": "too_large",
    "grayscale.png": "face",
    "rgba.png": "face",
    "palette.png": "face",
    "cmyk.jpg": "face",
    "gray16.png": "face",
    "exif_rotated.jpg": "face",
    "animated.gif": "face",
}


def write_bad_inputs(folder: Path) -> dict[str, Path]:
    """Write one file per :data:`BAD_INPUT_CASES` entry (all derived from grace_hopper)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rgb = grace_rgb()
    im = Image.fromarray(rgb)
    full = jpeg_bytes(rgb)
    paths = {name: folder / name for name in BAD_INPUT_CASES}
    paths["zero_byte.jpg"].write_bytes(b"")
    paths["truncated.jpg"].write_bytes(full[: len(full) // 2])
    paths["text.jpg"].write_text("hello, I am not a JPEG\n")
    paths["bomb.png"].write_bytes(png_with_header_size(100_000, 100_000))
    im.convert("L").save(paths["grayscale.png"])
    rgba = im.convert("RGBA")
    rgba.putalpha(255)
    rgba.save(paths["rgba.png"])
    im.convert("P", palette=Image.ADAPTIVE, colors=256).save(paths["palette.png"])
    im.convert("CMYK").save(paths["cmyk.jpg"], quality=90)
    gray16 = (np.asarray(im.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(paths["gray16.png"])
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: stored rotated, viewers turn it 90° clockwise
    im.transpose(Image.Transpose.ROTATE_90).save(paths["exif_rotated.jpg"], exif=exif, quality=90)
    blank = Image.new("RGB", im.size, (128, 128, 128))
    im.save(paths["animated.gif"], save_all=True, append_images=[blank], duration=100, loop=0)
    return paths
