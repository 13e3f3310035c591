"""Image transforms for training and evaluation (torchvision.transforms.v2): augmentation presets, the
eval resize + centre crop, and aminian_noubir's 10-crop over-sampling with its averaging helper.

Inputs are HWC uint8 RGB numpy arrays or PIL images; outputs are float CHW tensors normalised with
the given mean/std. The normalisation constants are defined here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

# isort: off
import agegender._compat  # noqa: F401  (must run before torchvision is imported; see ENVIRONMENT.md)
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
# isort: on

from agegender.errors import AgeGenderError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
AUGMENTS: tuple[str, ...] = ("none", "standard", "strong", "wild")

Size = int | Sequence[int]


def size_hw(size: Size) -> tuple[int, int]:
    """(height, width) of an input size given as an int (square) or a (height, width) pair."""
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(v) for v in size)
    return h, w


class ToImage:
    """PIL image or HWC/HW numpy array → uint8 ``tv_tensors.Image`` with ``channels`` channels.

    Grey inputs are repeated to RGB and an alpha channel dropped, so every later step sees one
    layout; with ``channels=1`` (a grey model such as kang2019's) colour inputs are converted.
    A module-level class, not a lambda, so DataLoader workers can pickle it.
    """

    def __init__(self, channels: int = 3) -> None:
        if channels not in (1, 3):
            raise AgeGenderError(f"images must have 1 or 3 channels, not {channels}", code="bad_config")
        self.channels = channels

    def __call__(self, img: Any) -> tv_tensors.Image:
        if isinstance(img, Image.Image):
            img = img.convert("L" if self.channels == 1 else "RGB")
            return F.to_image(img)
        if isinstance(img, torch.Tensor):
            t = img if img.ndim == 3 else img.unsqueeze(0)  # assumed CHW already
        else:
            arr = np.asarray(img)
            if arr.ndim == 2:
                arr = arr[:, :, None]
            if arr.ndim != 3:
                raise AgeGenderError(f"expected an HWC image array, got shape {arr.shape}", code="not_an_image")
            # torch warns on read-only arrays (e.g. np.asarray of a PIL image): copy those
            arr = np.ascontiguousarray(arr) if arr.flags.writeable else arr.copy()
            t = torch.from_numpy(arr).permute(2, 0, 1)
        if t.is_floating_point() and t.numel() and float(t.max()) <= 1.0:
            t = (t * 255).round()  # a float image in [0, 1]
        if t.dtype != torch.uint8:
            t = t.clamp(0, 255).to(torch.uint8)
        if t.shape[0] == 4:
            t = t[:3]  # drop alpha
        if self.channels == 3 and t.shape[0] == 1:
            t = t.expand(3, -1, -1)
        elif self.channels == 1 and t.shape[0] == 3:
            t = F.rgb_to_grayscale(t, num_output_channels=1)
        return tv_tensors.Image(t.contiguous())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(channels={self.channels})"


def _resize_arg(resize: Size) -> int | list[int]:
    """v2.Resize's size: an int (shorter side) or [height, width] (exact)."""
    return int(resize) if isinstance(resize, (int, np.integer)) else list(size_hw(resize))


def _normalise(mean: Sequence[float], std: Sequence[float]) -> list[Any]:
    if len(mean) != len(std):
        raise AgeGenderError(f"mean {tuple(mean)} and std {tuple(std)} differ in length", code="bad_config")
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(map(float, mean)), list(map(float, std)))]


# Outputs are plain tensors: tv_tensors.Image subclasses would leak into user code and batches.
_PLAIN = v2.ToPureTensor


def train_transform(
    input_size: Size,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    augment: str = "standard",
    degradation: Mapping[str, Any] | None = None,
) -> v2.Compose:
    """Training pipeline: image → augmented, normalised float tensor (C, H, W).

    - ``"none"``: the eval pipeline (resize + centre crop), no randomness.
    - ``"standard"``: small rotation (±10°), random resized crop of 80–100 % of the area (aspect
      around the target's), horizontal flip, colour jitter. Mild on purpose: faces and pedestrians
      are already cropped, and a tight crop must keep the whole face.
    - ``"strong"``: standard + RandAugment (2 ops, magnitude 9) + random erasing (p=0.25).
    - ``"wild"``: strong + :class:`PhotoDegradation` (half the images get faded or monochrome tones, blur,
      down-scaling, noise and JPEG artefacts, as old prints and poor cameras give them).

    ``input_size`` is an int (square) or (height, width); ``len(mean)`` sets the channels (1 = grey).
    ``degradation`` (config ``data.degradation``) holds keyword arguments of :class:`PhotoDegradation` for
    ``"wild"``, e.g. ``{scale: [0.12, 0.7]}`` to shrink faces further.
    """
    if augment not in AUGMENTS:
        raise AgeGenderError(f"augment {augment!r} must be one of {', '.join(AUGMENTS)}", code="bad_config")
    if degradation and augment != "wild":
        raise AgeGenderError(f"data.degradation applies to augment 'wild', not {augment!r}: set data.augment: wild "
                             "or remove data.degradation", code="bad_config")
    if augment == "none":
        return eval_transform(input_size, mean, std)
    h, w = size_hw(input_size)
    aspect = w / h
    steps: list[Any] = [
        ToImage(len(mean)),
        v2.RandomRotation(10),
        v2.RandomResizedCrop((h, w), scale=(0.8, 1.0), ratio=(aspect * 3 / 4, aspect * 4 / 3), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2 if len(mean) == 3 else 0.0),
    ]
    if augment in ("strong", "wild"):
        steps.append(v2.RandAugment(num_ops=2, magnitude=9))
    if augment == "wild":
        steps.append(PhotoDegradation.from_config(degradation))
    steps += _normalise(mean, std)
    if augment in ("strong", "wild"):
        steps.append(v2.RandomErasing(p=0.25, scale=(0.02, 0.2)))
    return v2.Compose([*steps, _PLAIN()])


#: sepia toning as a linear map of RGB (rows: output R, G, B)
SEPIA = torch.tensor([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])


class PhotoDegradation:
    """Random degradations of a uint8 ``C×H×W`` image, after Real-ESRGAN's degradation model (Wang et al. 2021,
    §3.1: blur, resize, noise, JPEG compression, in that order), with a tone step first for old prints:
    monochrome, sepia or faded colour. Each image is degraded with probability ``p``; each step then applies
    with its own probability, so the degradations mix.

    Blur, down-scaling and JPEG move age estimates most: a blurred face reads younger (skin detail is an age
    cue). ``benchmarks/degraded_faces.py`` measures a model on degraded validation images. ``scale`` is the
    range of the down-scaling factor (of the training image's side; the image is scaled back up after).
    """

    def __init__(self, p: float = 0.5, tone: float = 0.35, blur: float = 0.4, downscale: float = 0.4,
                 noise: float = 0.2, jpeg: float = 0.4, scale: Sequence[float] = (0.3, 0.7)) -> None:
        lo, hi = (float(v) for v in scale)
        if not 0 < lo <= hi <= 1:
            raise AgeGenderError(f"degradation scale {list(scale)} must be [low, high] with 0 < low <= high <= 1",
                                 code="bad_config")
        self.p, self.tone, self.blur, self.downscale, self.noise, self.jpeg = p, tone, blur, downscale, noise, jpeg
        self.scale = (lo, hi)

    @classmethod
    def from_config(cls, options: Mapping[str, Any] | None) -> PhotoDegradation:
        """From ``data.degradation`` (None or {}: the defaults); an unknown key is a one-line error."""
        options = dict(options or {})
        known = ("p", "tone", "blur", "downscale", "noise", "jpeg", "scale")
        if unknown := sorted(set(options) - set(known)):
            raise AgeGenderError(f"unknown data.degradation key(s) {', '.join(unknown)}; known: {', '.join(known)}",
                                 code="bad_config")
        try:
            return cls(**options)
        except (TypeError, ValueError) as e:
            raise AgeGenderError(f"bad data.degradation {options}: {e}", code="bad_config") from None

    @staticmethod
    def _u(lo: float, hi: float) -> float:
        return float(torch.empty(()).uniform_(lo, hi))

    def _toned(self, t: torch.Tensor) -> torch.Tensor:
        x = t.float()
        kind = int(torch.randint(3, ()))
        if kind == 0:  # monochrome
            x = F.rgb_to_grayscale(x, num_output_channels=3)
        elif kind == 1:  # sepia, partly blended
            k = self._u(0.5, 1.0)
            x = (1 - k) * x + k * torch.einsum("oc,chw->ohw", SEPIA, x)
        # faded: contrast pulled towards mid-grey (every tone, alone for kind 2)
        a = self._u(0.55, 0.9) if kind == 2 or torch.rand(()) < 0.5 else 1.0
        x = a * x + (1 - a) * 128.0
        return x.clamp(0, 255).round().to(torch.uint8)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[0] != 3 or torch.rand(()) >= self.p:
            return img
        t = img.as_subclass(torch.Tensor)
        h, w = t.shape[-2:]
        if torch.rand(()) < self.tone:
            t = self._toned(t)
        if torch.rand(()) < self.blur:
            t = F.gaussian_blur(t, [5, 5], [self._u(0.4, 1.6)] * 2)
        if torch.rand(()) < self.downscale:
            s = self._u(*self.scale)
            small = F.resize(t, [max(8, round(h * s)), max(8, round(w * s))], antialias=True)
            t = F.resize(small, [h, w], antialias=False)
        if torch.rand(()) < self.noise:
            t = (t.float() + torch.randn(t.shape) * self._u(2.0, 10.0)).clamp(0, 255).round().to(torch.uint8)
        if torch.rand(()) < self.jpeg:
            t = _jpeg(t, int(torch.randint(20, 81, ())))
        return tv_tensors.Image(t)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(p={self.p}, tone={self.tone}, blur={self.blur}, downscale={self.downscale}, "
                f"noise={self.noise}, jpeg={self.jpeg}, scale={list(self.scale)})")


def _jpeg(t: torch.Tensor, quality: int) -> torch.Tensor:
    """A uint8 RGB ``C×H×W`` tensor through JPEG at ``quality`` (OpenCV's codec: torchvision's image extension
    is missing from some of its wheels)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(t.permute(1, 2, 0).numpy()[:, :, ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return t
    return torch.from_numpy(np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])).permute(2, 0, 1)


def eval_transform(
    input_size: Size,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize: Size | None = None,
) -> v2.Compose:
    """Evaluation pipeline: resize, centre crop to ``input_size``, normalise. Deterministic.

    ``resize``: an int resizes the shorter side (aspect kept; the centre crop trims the longer
    side); (height, width) resizes exactly. Default: the shorter side to ``input_size`` when that
    is square, so ``112`` and ``(112, 112)`` behave alike; an exact resize to a non-square
    ``input_size`` such as PETA's (256, 128), whose pedestrian crops are stretched to it as in
    chatzitzisi2020.
    """
    h, w = size_hw(input_size)
    size = _resize_arg(resize if resize is not None else (h if h == w else (h, w)))
    return v2.Compose([ToImage(len(mean)), v2.Resize(size, antialias=True), v2.CenterCrop((h, w)),
                       *_normalise(mean, std), _PLAIN()])


class TenCrop:
    """The 4 corner crops + centre crop of an image and their horizontal mirrors, stacked.

    Crop order: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right, 4 centre; 5–9 are the
    mirrors of 0–4 (crop 5 = flip of crop 0). torchvision's own TenCrop flips the *image* before
    cropping, which makes its crop 5 the mirror of the top-right corner instead.
    """

    def __init__(self, size: Size) -> None:
        self.size = list(size_hw(size))

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        five = torch.stack([c.as_subclass(torch.Tensor) for c in F.five_crop(img, self.size)])
        return torch.cat([five, five.flip(-1)])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


def ten_crop_transform(
    input_size: Size,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize: Size = 256,
) -> v2.Compose:
    """aminian_noubir's over-sampling: resize (256), then 10 crops of ``input_size`` (227) → (10, C, H, W).

    Feed ``batch.flatten(0, 1)`` (B·10 images, each image's crops consecutive) to the model and
    reduce its outputs with :func:`average_crops`. ``resize`` follows :func:`eval_transform`.
    """
    h, w = size_hw(input_size)
    size = _resize_arg(resize)
    rh, rw = (size, size) if isinstance(size, int) else size
    if rh < h or rw < w:
        raise AgeGenderError(f"resize {resize} is smaller than the crop {input_size}", code="bad_config")
    return v2.Compose([ToImage(len(mean)), v2.Resize(size, antialias=True), *_normalise(mean, std), TenCrop((h, w))])


def average_crops(outputs: Any, n_crops: int) -> Any:
    """Average per-crop outputs (shape (B·n_crops, ...), each image's crops consecutive) → (B, ...).

    Works on tensors, numpy arrays and (nested) dicts/lists of them, e.g. a model's per-task
    outputs. Average probabilities (after softmax/sigmoid), not logits, to match the paper.
    """
    if n_crops < 1:
        raise AgeGenderError(f"n_crops must be >= 1, got {n_crops}", code="bad_config")
    if isinstance(outputs, Mapping):
        return {k: average_crops(v, n_crops) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(average_crops(v, n_crops) for v in outputs)
    if isinstance(outputs, torch.Tensor):
        if outputs.shape[0] % n_crops:
            raise AgeGenderError(f"{outputs.shape[0]} outputs are not a multiple of {n_crops} crops", code="bad_config")
        x = outputs.reshape(outputs.shape[0] // n_crops, n_crops, *outputs.shape[1:])
        return x.float().mean(dim=1) if not x.is_floating_point() else x.mean(dim=1)
    arr = np.asarray(outputs)
    if arr.shape[0] % n_crops:
        raise AgeGenderError(f"{arr.shape[0]} outputs are not a multiple of {n_crops} crops", code="bad_config")
    return arr.reshape(arr.shape[0] // n_crops, n_crops, *arr.shape[1:]).mean(axis=1)
