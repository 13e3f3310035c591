"""The typed preprocessing of a model (torchvision's weights-carry-their-transforms idea): input size, resize size,
mean/std, channel order and crop framing, read from the model file's metadata, with the training/evaluation
transform and the inference batch function built from the same numbers.

NumPy and OpenCV only; torch/torchvision are imported only by :meth:`Preprocessing.transform`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from agegender.errors import AgeGenderError

#: ImageNet normalisation, the default of every trunk here
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An RGB uint8 image resized to ``size`` (height, width): OpenCV's pixel-area average when shrinking (the
    anti-aliased resize; Pillow's bilinear filter, which widens to the scale, gives the same figures on the face
    models at about 1.4× the time: docs/performance.md), bilinear when enlarging. The one resize of model inputs, in
    training (``datamodule.read_resized``) and in use (:meth:`Preprocessing.resize`), so a model sees the same
    pixels in both."""
    h, w = size
    if rgb.shape[0] == h and rgb.shape[1] == w:
        return rgb
    shrink = h <= rgb.shape[0] and w <= rgb.shape[1]
    return cv2.resize(np.ascontiguousarray(rgb), (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """(height, width) of an input size given as an int (square) or a (height, width) pair."""
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(v) for v in size)
    return h, w


@dataclass(frozen=True)
class Preprocessing:
    """How crops become a model's input.

    A crop is resized (:func:`resize_rgb`, as in training) to ``resize_hw``, centre-cropped to ``input_hw``,
    put in ``channel_order`` (or made grey when ``mean`` has one value), scaled to [0, 1] and normalised with
    ``mean``/``std``. ``crop_margin`` > 0 says the model was trained on dataset boxes grown by that fraction per
    side (not squared); 0 means square crops framed like UTKFace's, by the detector's own framing.
    """

    input_hw: tuple[int, int]
    resize_hw: tuple[int, int]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channel_order: str = "RGB"
    crop_margin: float = 0.0

    @classmethod
    def from_meta(cls, pp: Mapping[str, Any] | None, source: str = "the model") -> Preprocessing:
        """From a package's / ONNX file's ``preprocess`` metadata; a missing input size is a ``bad_model`` error."""
        pp = dict(pp or {})
        if "input_size" not in pp:
            raise AgeGenderError(f"{source} carries no preprocessing metadata (input_size); re-package it with "
                                 "`agegender package`", code="bad_model")
        order = str(pp.get("channel_order", "RGB")).upper()
        if order not in ("RGB", "BGR"):
            raise AgeGenderError(f"{source}: channel_order must be RGB or BGR, not {order!r}", code="bad_model")
        input_hw = size_hw(pp["input_size"])
        return cls(input_hw, size_hw(pp.get("resize") or input_hw),
                   tuple(float(v) for v in pp.get("mean") or IMAGENET_MEAN),
                   tuple(float(v) for v in pp.get("std") or IMAGENET_STD), order, float(pp.get("crop_margin") or 0.0))

    def to_meta(self) -> dict[str, Any]:
        return {"input_size": list(self.input_hw), "resize": list(self.resize_hw), "mean": list(self.mean),
                "std": list(self.std), "channel_order": self.channel_order, "crop_margin": self.crop_margin}

    @property
    def channels(self) -> int:
        return len(self.mean)

    @property
    def crop_square(self) -> bool:
        """Whether detections are squared before cropping (no dataset ``crop_margin``)."""
        return not self.crop_margin

    def resize(self, rgb: np.ndarray) -> np.ndarray:
        """An RGB uint8 crop at the resize size (:func:`resize_rgb`, as ``datamodule.read_resized`` in training)."""
        return resize_rgb(rgb, self.resize_hw)

    def batch(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Normalised float32 NCHW batch of uint8 RGB crops at the resize size: what :meth:`transform` makes of
        them. Crops already at the input size (every bundled model) take a vectorised NumPy path; others (a resize
        size larger than the input, as aminian_noubir's 256 → 227) go through the torchvision transform."""
        x = np.asarray(crops) if isinstance(crops, np.ndarray) else np.stack(crops)
        if x.shape[1:3] != self.input_hw:
            import torch

            return self.transform_batch(torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)).numpy()
        x = x.astype(np.float32)
        if self.channels == 1:  # ITU-R 601-2 luma truncated to uint8, as torchvision's rgb_to_grayscale
            x = np.floor(x @ np.asarray([0.2989, 0.587, 0.114], dtype=np.float32))[..., None]
        elif self.channel_order == "BGR":
            x = x[..., ::-1]
        x = (x / 255.0 - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)

    def transform(self) -> Any:
        """The deterministic torchvision transform of validation/test images in training and of evaluation
        (applied to crops at the resize size: resize to the input size, centre crop, normalise)."""
        from agegender.data.transforms import eval_transform

        return eval_transform(self.input_hw, self.mean, self.std)

    def transform_batch(self, x: Any) -> Any:
        """:meth:`transform` on a uint8 NCHW RGB tensor batch (channels and order as :meth:`batch`)."""
        if self.channels == 1:
            from torchvision.transforms.v2 import functional as F

            x = F.rgb_to_grayscale(x, num_output_channels=1)
        elif self.channel_order == "BGR":
            x = x.flip(1)
        tf = self.transform()
        return type(tf)(tf.transforms[1:])(x.contiguous())  # after ToImage: the batch is already a tensor
