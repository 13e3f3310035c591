"""The predictor: image → detector → crops → batched model → typed results, with preprocessing taken
strictly from the model's own metadata. ``agegender.load(...)`` returns one.

>>> import agegender
>>> p = agegender.load("default")                        # doctest: +SKIP
>>> [(r.gender, r.age.years) for r in p.predict("photo.jpg")]   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from agegender.bundled import PERSON_PAIRS, int8_twin, is_bundled_package, onnx_twin, resolve_model_path
from agegender.data.images import load_image
from agegender.data.preprocess import Preprocessing
from agegender.decode import Decoded, OutputDecoder, age_interval  # noqa: F401  (age_interval: public here too)
from agegender.errors import AgeGenderError
from agegender.inference.cropper import Cropper
from agegender.inference.options import PredictorOptions
from agegender.inference.results import (
    STATUS_NO_FACE,
    STATUS_OK,
    UNCERTAIN,
    AgeEstimate,
    ImageResult,
    PersonResult,
)
from agegender.inference.runner import Runner
from agegender.inference.runtime import Backend, open_backend
from agegender.labels import ETHNICITIES, GENDERS, get_scheme

log = logging.getLogger(__name__)

#: datasets whose models take whole-person (pedestrian) crops rather than faces
BODY_DATASETS: tuple[str, ...] = ("peta", "rap")
#: status of an image whose processing failed for a reason that is not a known user error (a bug)
STATUS_ERROR = "error"


def source_name(image: Any) -> str:
    """How an input is named in results: its path, or a placeholder for in-memory images."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(image, Image.Image):
        return "<PIL image>"
    if isinstance(image, np.ndarray):
        return "<array>"
    return f"<{type(image).__name__}>"


@dataclass
class Prepared:
    """One image after decoding and detection: its (partial) result and the model-ready crops."""

    result: ImageResult
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)  # uint8 RGB at the model's resize size
    image: np.ndarray | None = None
    kinds: list[str] = field(default_factory=list)  # how each crop was taken: detected, whole_image


class Predictor:
    """Age, gender and ethnicity for every person in images. Build it with :func:`load`.

    The model's metadata fixes the preprocessing (input size, resize, mean/std, channel order, crop
    margin) and the label names; the detector finds faces, or whole people in body mode (a ready pedestrian crop
    stays one person; with detector ``none`` the whole image is always the crop). See :func:`load` for the options.
    """

    def __init__(self, backend: Backend, options: PredictorOptions | None = None, **overrides: Any) -> None:
        """``options`` / ``overrides``: a :class:`~agegender.inference.options.PredictorOptions` and its fields
        (the runtime ones, device to threads, are :func:`load`'s and ignored here)."""
        opts = PredictorOptions.of(options, **overrides)
        detector, detector_options, mode, scheme = opts.detector, opts.detector_options, opts.mode, opts.scheme
        interval, min_confidence, tta_flip = opts.interval, opts.min_confidence, opts.tta_flip
        batch_size, workers, max_pixels = opts.batch_size, opts.workers, opts.max_pixels
        self.options = opts
        self.backend = backend
        #: the model's own preprocessing (from its file): resize, crop, channels, normalisation
        self.pre = Preprocessing.from_meta(backend.preprocess, f"model {backend.source}")
        self.model_mode = self._model_mode()
        self.mode = mode or self.model_mode
        if self.mode not in ("face", "body"):
            raise AgeGenderError(f"mode must be 'face' or 'body', not {self.mode!r} (person mode: "
                                 "agegender.load(..., mode='person'))", code="bad_option")
        #: detector + framing → crops
        self.cropper = Cropper(detector if detector is not None else self._default_detector(), self.pre,
                               detector_options)
        default_tta = bool((backend.config.get("eval") or {}).get("tta_flip", False))
        #: preprocessing + runtime + batches + flip average → outputs
        self.runner = Runner(backend, self.pre, batch_size, default_tta if tta_flip is None else bool(tta_flip))
        labels = backend.labels or {}
        self.gender_names = list(labels.get("gender") or GENDERS)
        self.ethnicity_names = list(labels.get("ethnicity") or ETHNICITIES)
        self.attribute_names = list(labels.get("attributes") or [])
        self.model_scheme = get_scheme(
            labels.get("age_scheme") or backend.config.get("data", {}).get("age_scheme") or "adience8"
        )
        self.scheme = get_scheme(scheme) if scheme is not None else self.model_scheme
        self.interval = float(interval)
        self.min_confidence = float(min_confidence)
        self.workers = max(1, int(workers or min(4, os.cpu_count() or 1)))
        self.max_pixels = max_pixels
        #: outputs → years, groups in ``scheme``, probabilities
        self.decoder = OutputDecoder(self.model_scheme, self.scheme, self.interval)

    # the parts' settings, as attributes of the predictor
    detector_name = property(lambda self: self.cropper.name)
    detector = property(lambda self: self.cropper.detector)
    crop_margin = property(lambda self: self.cropper.margin)
    crop_shift = property(lambda self: self.cropper.shift)
    #: the smallest roll (degrees) a face is turned upright by before cutting; None when faces are cut as they lie
    crop_align = property(lambda self: None if self.cropper.person else self.cropper.align)
    #: whether a face rolled 30° or more is looked for again in the photo turned a quarter towards upright
    crop_sideways = property(lambda self: False if self.cropper.person else self.cropper.sideways)
    #: whether a photo with no face found is searched turned a quarter each way and upside down
    crop_search_turned = property(lambda self: False if self.cropper.person else self.cropper.search_turned)

    @property
    def tta_flip(self) -> bool:
        return self.runner.tta_flip

    @tta_flip.setter
    def tta_flip(self, value: bool) -> None:
        self.runner.tta_flip = bool(value)

    @property
    def batch_size(self) -> int:
        return self.runner.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self.runner.batch_size = max(1, int(value))

    # ------------------------------------------------------------------------------------------- public API

    @property
    def name(self) -> str:
        return self.backend.model_name

    def info(self) -> dict[str, Any]:
        """What this predictor runs: model name/version/source, tasks, preprocessing, detector, scheme."""
        from agegender._version import __version__

        meta = self.backend.meta or {}
        return {
            "name": self.name,
            "version": str(meta.get("version") or __version__),
            "source": self.backend.source,
            "backend": self.backend.name,
            "precision": getattr(self.backend, "precision", "fp32"),
            "backend_selection": getattr(self.backend, "selection", None),
            "mode": self.mode,
            "tasks": self.tasks(),
            "preprocess": dict(self.backend.preprocess),
            "labels": dict(self.backend.labels or {}),
            "age_scheme": self.scheme.name,
            "age_groups": list(self.scheme.labels),
            "detector": {
                "name": self.detector_name,
                "repr": repr(self.detector),
                "crop_margin": self.crop_margin,
                "crop_shift": self.crop_shift,
                "crop_align": self.crop_align,
                "crop_sideways": self.crop_sideways,
                "crop_search_turned": self.crop_search_turned,
            },
            "interval": self.interval,
            "min_confidence": self.min_confidence,
            "tta_flip": self.tta_flip,
            "meta": {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool, type(None)))},
        }

    def tasks(self) -> list[str]:
        """Tasks the model answers: among age, age_group, gender, ethnicity, attributes."""
        heads = (self.backend.config.get("model") or {}).get("heads") or {}
        kinds = {str(h.get("task", n)) for n, h in heads.items()}
        out = []
        if "age" in kinds or "pedestrian" in kinds or "age_group" in kinds:
            out += (["age"] if "age" in kinds else []) + ["age_group"]
        if "gender" in kinds or "pedestrian" in kinds:
            out.append("gender")
        if "ethnicity" in kinds:
            out.append("ethnicity")
        if "attributes" in kinds:
            out.append("attributes")
        return out

    def record_schema(self) -> list[tuple[str, str]]:
        """Columns of the flat records (:mod:`agegender.inference.records`) this predictor produces."""
        from agegender.inference.records import record_schema

        tasks = self.tasks()
        return record_schema(
            self.gender_names if "gender" in tasks else (),
            self.scheme.labels if "age_group" in tasks else (),
            self.ethnicity_names if "ethnicity" in tasks else (),
            self.attribute_names if "attributes" in tasks else (),
        )

    def predict(self, image: Any, channel_order: str = "RGB") -> list[PersonResult]:
        """Everyone in one image (path, bytes, PIL image or H×W×3 array in ``channel_order`` RGB/BGR).

        Raises :class:`AgeGenderError` for input that is not a readable image; returns ``[]`` when the
        detector finds nobody.
        """
        prep = self._prepare(image, source_name(image), channel_order, keep_image=False, catch=False)
        return self._run([prep])[0].result.people

    def predict_image(self, image: Any, source: str | None = None, channel_order: str = "RGB") -> ImageResult:
        """Like :meth:`predict` but never raises for bad input: the result's ``status`` says what happened."""
        prep = self._prepare(image, source or source_name(image), channel_order, keep_image=False, catch=True)
        return self._run([prep])[0].result

    def predict_batch(
        self,
        images: Iterable[Any],
        workers: int | None = None,
        channel_order: str = "RGB",
        sources: Sequence[str] | None = None,
    ) -> list[ImageResult]:
        """One :class:`ImageResult` per input, in order; decoding and detection run in a thread pool and the
        crops of all images share model batches. Bad inputs get an error status, never an exception."""
        return list(self.iter_predict(images, workers=workers, channel_order=channel_order, sources=sources))

    def iter_predict(
        self,
        images: Iterable[Any],
        workers: int | None = None,
        channel_order: str = "RGB",
        sources: Sequence[str] | None = None,
        return_images: bool = False,
    ) -> Iterator[Any]:
        """Stream :meth:`predict_batch`: yields results in input order as soon as their batch is done
        (``(ImageResult, rgb array or None)`` pairs with ``return_images``), decoding the next chunk
        while the model runs on the current one."""
        n_workers = max(1, int(workers or self.workers))
        names = iter(sources) if sources is not None else None
        it = iter(images)
        if getattr(self.backend, "streams", 1) > 1:
            yield from self._iter_pipelines(it, names, n_workers, channel_order, return_images)
            return
        # Decoded images are kept only with return_images: then a smaller chunk bounds memory (big photos).
        chunk = 2 * n_workers if return_images else max(self.batch_size, 4 * n_workers)

        def submit(ex: ThreadPoolExecutor) -> list[Future]:
            futs = []
            for img in islice(it, chunk):
                name = next(names) if names is not None else source_name(img)
                futs.append(ex.submit(self._prepare, img, name, channel_order, return_images, True))
            return futs

        with ThreadPoolExecutor(n_workers, thread_name_prefix="agegender-decode") as ex:
            pending = submit(ex)
            while pending:
                following = submit(ex)  # decode ahead while the model runs on `pending`
                preps = self._run([f.result() for f in pending])
                for p in preps:
                    yield (p.result, p.image) if return_images else p.result
                pending = following

    def _iter_pipelines(self, it: Iterator[Any], names: Iterator[str] | None, n_workers: int, channel_order: str,
                        return_images: bool) -> Iterator[Any]:
        """:meth:`iter_predict` on a runtime that runs several model calls at once (ONNX Runtime's
        ``streams``): each worker thread decodes, detects and runs the model on its own few images, so no
        thread waits on another (docs/performance.md has the gain); results are yielded in input order."""
        # Decoded images are kept only with return_images: then one image per task bounds memory (big photos).
        per_task = 1 if return_images else int(getattr(self.backend, "max_rows", 16))
        n_workers = max(n_workers, int(getattr(self.backend, "streams", 1)))  # the workers run the model too

        def work(items: list[tuple[Any, str]]) -> list[Prepared]:
            return self._run([self._prepare(img, name, channel_order, return_images, True) for img, name in items])

        with ThreadPoolExecutor(n_workers, thread_name_prefix="agegender-pipeline") as ex:
            pending: deque[Future] = deque()
            while True:
                while len(pending) < 2 * n_workers:  # keep every worker busy, and the next task ready
                    items = [(img, next(names) if names is not None else source_name(img))
                             for img in islice(it, per_task)]
                    if not items:
                        break
                    pending.append(ex.submit(work, items))
                if not pending:
                    return
                for p in pending.popleft().result():
                    yield (p.result, p.image) if return_images else p.result

    def predict_crops(self, crops: Sequence[Any], channel_order: str = "RGB") -> list[PersonResult]:
        """Results for ready-made crops (faces, or persons in body mode): no detection, box = whole crop."""
        preps = []
        for c in crops:
            rgb = load_image(c, channel_order=channel_order, max_pixels=self.max_pixels)
            h, w = rgb.shape[:2]
            res = ImageResult(source=source_name(c), status=STATUS_OK, width=w, height=h)
            preps.append(Prepared(res, [(0.0, 0.0, float(w), float(h))], [1.0], [self._resize(rgb)],
                                  kinds=["whole_image"]))
        return [p for prep in self._run(preps) for p in prep.result.people]

    def detect_crops(
        self, rgb: np.ndarray
    ) -> tuple[list[tuple[float, float, float, float]], list[float], list[np.ndarray]]:
        """Boxes, detector scores and model-ready crops (uint8, resized) of everyone in an RGB image."""
        return self.cropper(rgb)

    def predict_arrays(self, crops: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Raw decoded model outputs (``age``, ``age_probs``, ``gender_probs``, ...) for RGB uint8 crops."""
        return self.infer_crops([self._resize(np.asarray(c)) for c in crops])

    def people_from_arrays(
        self, arrays: dict[str, np.ndarray], boxes: Sequence[Sequence[float]], scores: Sequence[float]
    ) -> list[PersonResult]:
        """Typed results from raw model outputs (one row per box); shared by images, video and Ray."""
        if len(boxes) == 0:
            return []
        return self._people(self.decoder(arrays), 0, boxes, scores)

    def _people(self, dec: Decoded, start: int, boxes: Sequence[Sequence[float]], scores: Sequence[float],
                kinds: Sequence[str] = ()) -> list[PersonResult]:
        """Typed results of rows ``start``.. of decoded outputs, one per box."""
        fem, eth, attrs = dec.female, dec.ethnicity_probs, dec.attributes_probs
        years, years_lo, years_hi, group = dec.years, dec.years_low, dec.years_high, dec.group_probs
        out = []
        for j in range(len(boxes)):
            i = start + j
            age = None
            if group is not None or years is not None:
                gp = group[i] if group is not None else None
                age = AgeEstimate(
                    years=None if years is None else round(float(years[i]), 2),
                    interval=None
                    if years_lo is None
                    else (round(float(years_lo[i]), 1), round(float(years_hi[i]), 1)),
                    interval_mass=None if years_lo is None else self.interval,
                    p_under_18=None if dec.p_under_18 is None else round(float(dec.p_under_18[i]), 5),
                    group=self._pick(gp, self.scheme.labels) if gp is not None else "",
                    group_probs={}
                    if gp is None
                    else {lab: round(float(v), 5) for lab, v in zip(self.scheme.labels, gp)},
                    scheme=self.scheme.name,
                )
            gender = gender_probs = ethnicity = ethnicity_probs = attributes = None
            if fem is not None:
                gvec = np.asarray([1.0 - fem[i], fem[i]])
                gender_probs = {n_: round(float(v), 5) for n_, v in zip(self.gender_names, gvec)}
                gender = self._pick(gvec, self.gender_names)
            if eth is not None:
                ethnicity_probs = {n_: round(float(v), 5) for n_, v in zip(self.ethnicity_names, eth[i])}
                ethnicity = self._pick(eth[i], self.ethnicity_names)
            if attrs is not None:
                names = self.attribute_names or [f"attr_{j}" for j in range(attrs.shape[1])]
                attributes = {n_: round(float(v), 5) for n_, v in zip(names, attrs[i])}
            b = tuple(float(v) for v in boxes[j])
            out.append(
                PersonResult(
                    box=b,
                    detector_score=float(scores[j]),
                    crop=kinds[j] if j < len(kinds) else "detected",
                    age=age,
                    gender=gender,  # type: ignore[arg-type]
                    gender_probs=gender_probs,
                    ethnicity=ethnicity,
                    ethnicity_probs=ethnicity_probs,
                    attributes=attributes,
                )
            )
        return out

    # ------------------------------------------------------------------------------------------- internals

    def _model_mode(self) -> str:
        pp, meta, cfg = self.backend.preprocess or {}, self.backend.meta or {}, self.backend.config or {}
        for src in (pp, meta):
            if src.get("mode") in ("face", "body"):
                return str(src["mode"])
        return "body" if str((cfg.get("data") or {}).get("dataset", "")).lower() in BODY_DATASETS else "face"

    def _default_detector(self) -> str:
        # A package may name its detector (meta.default_detector), valid for the model's own mode. Body packages
        # name "none" from before there were person detectors: the person detector still takes a ready pedestrian
        # crop as one whole-image person (Cropper), and finds each person in a scene.
        from agegender.inference.detectors import default_person_detector

        named = (self.backend.meta or {}).get("default_detector")
        if named and self.mode == self.model_mode and not (self.mode == "body" and named == "none"):
            return str(named)
        return default_person_detector() if self.mode == "body" else "haar"

    def _nothing_found_message(self) -> str:
        """What a "no_face" result says, with what to try next."""
        if self.mode == "body":
            return (f"no person found by the {self.detector_name!r} detector; if the image is one person's "
                    "full-body crop, use the detector 'none' (--detector none); small people may need a larger "
                    "image or the nanodet detector's tiles='auto'")
        return (f"no face found by the {self.detector_name!r} detector; if the image is already a face crop, "
                "use the detector 'none' (--detector none); for full-body pedestrian images use the body model "
                "(--model default-body); small or turned faces may need a larger image or another detector")

    def _prepare(self, image: Any, name: str, channel_order: str, keep_image: bool, catch: bool) -> Prepared:
        res = ImageResult(source=name, status=STATUS_OK)
        try:
            rgb = load_image(image, channel_order=channel_order, max_pixels=self.max_pixels)
            res.height, res.width = int(rgb.shape[0]), int(rgb.shape[1])
            boxes, scores, crops, kinds = self.cropper.find(rgb, whole_image_crops=True)
            prep = Prepared(res, boxes, scores, crops, image=rgb if keep_image else None, kinds=kinds)
            if not prep.crops:
                res.status = STATUS_NO_FACE
                res.message = self._nothing_found_message()
            return prep
        except AgeGenderError as e:
            if not catch:
                raise
            res.status, res.message = e.code, str(e)
        except Exception as e:
            if not catch:
                raise
            log.warning("unexpected error on %s", name, exc_info=True)
            res.status, res.message = STATUS_ERROR, f"{type(e).__name__}: {e}"
        return Prepared(res)

    def _resize(self, rgb: np.ndarray) -> np.ndarray:
        return self.pre.resize(rgb)

    def model_input(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """A batch of resized crops as the backend takes it (see :meth:`Runner.model_input`)."""
        return self.runner.model_input(crops)

    def infer_crops(self, crops: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Raw model outputs for crops already resized by :meth:`detect_crops` (batched by ``batch_size``)."""
        return self.runner(crops)

    def _run(self, preps: list[Prepared]) -> list[Prepared]:
        crops = [c for p in preps for c in p.crops]
        if not crops:
            return preps
        dec = self.decoder(self.infer_crops(crops))  # decoded once for every crop of the batch
        start = 0
        for p in preps:
            n = len(p.crops)
            if n:
                p.result.people = self._people(dec, start, p.boxes, p.scores, p.kinds)
                p.crops = []
            start += n
        return preps

    def _pick(self, probs: np.ndarray, names: Sequence[str]) -> str:
        i = int(np.argmax(probs))
        return UNCERTAIN if float(probs[i]) < self.min_confidence else str(names[i])

def list_inputs(paths: Iterable[str | os.PathLike], recursive: bool = True) -> list[tuple[str, str]]:
    """Expand files and folders into ``(path, name relative to the argument it came from)`` pairs.

    Folders give their image files (see :func:`~agegender.data.images.iter_image_files`); a path that
    does not exist is kept, so it gets a ``missing_file`` record instead of vanishing or aborting the run.
    """
    from agegender.data.images import iter_image_files

    out: list[tuple[str, str]] = []
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            out += [(str(f), str(f.relative_to(p))) for f in iter_image_files([p], recursive)]
        else:
            out.append((str(p), p.name))
    return out


def _cached_twin(path: Path) -> Path | None:
    """A bundled package shipped without an ONNX twin: its export in the cache folder, made on the first load; None
    (so PyTorch runs it) when no export can be made here (no ``onnx`` package, no writable cache)."""
    from agegender.inference.onnx_cache import cached_export, cached_export_path

    kept = cached_export_path(path)
    if kept.is_file():
        return kept
    try:
        import onnx  # noqa: F401  (the export needs it: pip install 'agegender[onnx]')
    except ImportError:
        log.info("%s runs on PyTorch: exporting it to ONNX needs pip install 'agegender[onnx]'", path.name)
        return None
    try:
        return cached_export(path)
    except (OSError, AgeGenderError) as e:
        log.info("%s runs on PyTorch: no ONNX export could be kept (%s)", path.name, e)
        return None


def _int8_path(path: Path, backend: str | None, device: str) -> Path:
    """The int8 file ``precision="int8"`` runs on OpenVINO: a bundled model's int8 twin, or an int8 ``.onnx`` file."""
    from agegender.inference.openvino_runtime import openvino_available

    if backend not in (None, "openvino") or str(device) != "cpu" or not openvino_available():
        raise AgeGenderError("precision 'int8' runs on OpenVINO on the CPU (pip install openvino); leave backend "
                             "and device unset", code="bad_option")
    int8 = int8_twin(path) or (path if path.name.lower().endswith(".onnx") else None)
    if int8 is None:
        raise AgeGenderError(f"{path.name} has no int8 version: use a bundled model that ships one (default, "
                             "default-fast) or an .onnx file from `agegender export --int8-calibration`",
                             code="bad_option")
    return int8


def load(name_or_path: str | Path = "default", options: PredictorOptions | None = None, **overrides: Any) -> Predictor:
    """Load a model and wrap it in a :class:`Predictor`.

    ``name_or_path``: a bundled name (``default``, ``default-fast``, ``default-accurate``, ``default-body``; person mode,
    ``default-person``, is :func:`agegender.inference.loading.load`'s), a package (``.safetensors``) or ``.ckpt`` file,
    or an exported ``.onnx`` file. ``options`` and ``overrides`` (keyword
    arguments named like its fields, e.g. ``detector="none"``, ``tta_flip=False``) are the
    :class:`~agegender.inference.options.PredictorOptions`: runtime, precision, threads, detector and its options,
    mode, age-group scheme, interval, min_confidence, flip TTA, batch size, workers and the pixel limit; each is
    documented there. A bad option is a one-line ``AgeGenderError``.
    """
    opts = PredictorOptions.of(options, **overrides)
    if opts.mode == "person" or str(name_or_path) in PERSON_PAIRS:
        raise AgeGenderError("person mode pairs two models: load it with agegender.load (agegender.inference.loading)",
                             code="bad_option")
    path = resolve_model_path(name_or_path)
    backend, device, threads, precision = opts.backend, opts.device, opts.threads, opts.precision
    twin = onnx_twin(path)
    wants_onnx = backend in ("onnx", "openvino") or backend is None and str(device) == "cpu"
    if twin is None and wants_onnx and is_bundled_package(path):
        twin = _cached_twin(path)
    if precision == "int8":
        path = _int8_path(path, backend, device)
        backend, precision = "openvino", "fp32"
    elif backend is None and twin is not None and str(device) == "cpu" and precision in (None, "fp32", "bf16"):
        # a bundled model: its ONNX twin, the fastest path on a CPU without loading torch: OpenVINO's bfloat16
        # where the CPU has bfloat16 matrix units (or bfloat16 is asked for), OpenVINO's int8 on its int8 twin
        # where a speed check finds that faster, else ONNX Runtime's float32
        from agegender.inference.openvino_runtime import openvino_available, preferred_precision

        int8 = int8_twin(path)
        choice = preferred_precision(twin, int8) if precision is None else None
        if precision == "bf16" and openvino_available() or choice == "bf16":
            path, backend, precision = twin, "openvino", "bf16"
        elif choice == "int8" and int8 is not None:
            path, backend, precision = int8, "openvino", "fp32"
        elif precision != "bf16":
            path, backend = twin, "onnx"
    elif backend in ("onnx", "openvino") and twin is not None:
        path = twin  # the bundled export, not one made on the fly
    if backend == "auto":
        from agegender.inference.backend_choice import open_fastest_backend

        be = open_fastest_backend(path, device, threads, precision or "fp32", opts.batch_size,
                                  tta_flip=bool(opts.tta_flip))
    else:
        be = open_backend(path, backend, device, threads, precision=precision)
        if backend is None and be.name == "onnx" and be.meta.get("quantized") == "int8" and str(device) == "cpu":
            # an int8 file (`agegender export --int8-calibration`): OpenVINO runs it in int8, ONNX Runtime about
            # seven times slower than its float32 (docs/performance.md)
            from agegender.inference.openvino_runtime import openvino_available

            if openvino_available():
                be = open_backend(path, "openvino", device, threads, precision="fp32")
    if opts.precision == "int8" and getattr(be, "precision", None) != "int8":
        raise AgeGenderError(f"{path.name} is not an int8 file; make one with `agegender export MODEL --onnx OUT.onnx "
                             "--int8-calibration CROPS`", code="bad_option")
    return Predictor(be, opts)
