"""Person mode: one person, two views. Every person the body model's person detector finds gets the body
estimate, the face estimate when a face is visible inside the person's box, and their fusion.

The fusion follows MiVOLO's idea (Kuprashevich & Tolstykh, "MiVOLO: Multi-input Transformer for Age and Gender
Estimation", 2023, §3: a face and a body view of one person, with the body alone when no face is seen) on a CPU,
without a joint network: each model's gender probability is temperature-scaled on its own validation split
(the bundled packages store the temperature), so the two are fused as independent experts in log-odds,

    logit(p_fused) = w_face · logit(p_face) + w_body · logit(p_body),

and a confident view outweighs an unsure one. With the weights at 1 this is Bayes' rule for two conditionally
independent views under an even prior. Two guards keep each view to what its model knows:

- a face is read only from ``FACE_RAMP[0]`` pixels wide, and its weight grows linearly to ``w_face`` at
  ``FACE_RAMP[1]``. On PETA's validation pedestrians the face detectors find a face of 32-40 px in about 1 %
  of them (surveillance images, often seen from behind), and the face model reads gender right on under half
  of those where the body model reads 82-88 % (``python benchmarks/person_fusion.py``, docs/results.md): such
  faces would only add noise;
- a "person" whose face fills more than ``BODY_MAX_FACE_SHARE`` of the box height is a portrait or a head
  shot, not the full-body pedestrian the body model was trained on, so the body view is not used. Age (years and group) and ethnicity come from the face when it is seen
(the body model gives only a coarse age group: 57 % on PETA's five groups against the face model's years);
without a face, the body's age group. Appearance attributes are the body's.

>>> import agegender
>>> people = agegender.load("default-person").predict("street.jpg")     # doctest: +SKIP
>>> [(p.gender, sorted(p.views)) for p in people]                        # doctest: +SKIP
[('female', ['body', 'face']), ('male', ['body'])]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Any

import cv2
import numpy as np

from agegender.data.images import load_image
from agegender.errors import AgeGenderError
from agegender.inference.options import PredictorOptions
from agegender.inference.predictor import STATUS_ERROR, Predictor, source_name
from agegender.inference.results import STATUS_NO_FACE, STATUS_OK, ImageResult, PersonResult

#: the bundled pair behind ``agegender.load("default-person")``
DEFAULT_FACE_MODEL = "default"
DEFAULT_BODY_MODEL = "default-body"
#: a face belongs to a person when its centre lies in this top fraction of the person's box
HEAD_FRACTION = 0.45
#: the head region of a person whose face the whole-image pass missed is upscaled to at least this height
HEAD_REGION_HEIGHT = 256
#: a face's weight in the fusion: 0 below FACE_RAMP[0] pixels wide (not used), rising linearly to w_face at
#: FACE_RAMP[1] pixels and above
FACE_RAMP = (40.0, 80.0)
#: the body view is not used when the face is taller than this share of the person's box (a portrait)
BODY_MAX_FACE_SHARE = 0.3
#: faces narrower than this many pixels of the input image are not used
MIN_FACE_PIXELS = FACE_RAMP[0]
_EPS = 1e-4


def fuse_gender(p_face: float, p_body: float, w_face: float = 1.0, w_body: float = 1.0) -> float:
    """P(female) of two views fused as independent experts in log-odds (module docstring)."""
    lf = _logit(p_face)
    lb = _logit(p_body)
    z = w_face * lf + w_body * lb
    return float(1.0 / (1.0 + np.exp(-z)))


def _logit(p: float) -> float:
    q = min(max(float(p), _EPS), 1.0 - _EPS)
    return float(np.log(q / (1.0 - q)))


class PersonPredictor:
    """Face + body per person. Build it with :func:`load_person` (or ``agegender.load("default-person")``).

    Args:
        body: a body-mode :class:`Predictor` (its detector finds the people).
        face: a face-mode :class:`Predictor` (its detector finds faces in the image and in each head region).
        face_weight, body_weight: the views' weights in the log-odds fusion.
        min_face_pixels: the head-region search ignores smaller faces (width in input pixels); faces found in the
            whole image outside every person are reported on their own at the face detector's own size limit.
    """

    def __init__(self, body: Predictor, face: Predictor, face_weight: float = 1.0, body_weight: float = 1.0,
                 min_face_pixels: float = MIN_FACE_PIXELS) -> None:
        if body.mode != "body":
            raise AgeGenderError(f"person mode needs a body model for the people, and {body.name!r} is a "
                                 f"{body.mode} model; use default-body", code="bad_option")
        if face.mode != "face":
            raise AgeGenderError(f"person mode needs a face model for the faces, and {face.name!r} is a "
                                 f"{face.mode} model; use default", code="bad_option")
        if face_weight < 0 or body_weight < 0 or face_weight + body_weight <= 0:
            raise AgeGenderError("the view weights must be >= 0 and not both 0", code="bad_option")
        self.body, self.face = body, face
        self.face_weight, self.body_weight = float(face_weight), float(body_weight)
        self.min_face_pixels = float(min_face_pixels)
        self.mode = "person"
        self.max_pixels = body.max_pixels
        self.workers = body.workers

    @property
    def name(self) -> str:
        return f"{self.face.name}+{self.body.name}"

    def info(self) -> dict[str, Any]:
        face = self.face.info()
        return {"name": self.name, "mode": "person", "tasks": self.tasks(), "face": face,
                "body": self.body.info(), "face_weight": self.face_weight, "body_weight": self.body_weight,
                "min_face_pixels": self.min_face_pixels, "backend": face["backend"],
                "precision": face["precision"], "backend_selection": None}

    def tasks(self) -> list[str]:
        return sorted(set(self.face.tasks()) | set(self.body.tasks()),
                      key=["age", "age_group", "gender", "ethnicity", "attributes"].index)

    def record_schema(self) -> list[tuple[str, str]]:
        from agegender.inference.records import record_schema

        tasks = self.tasks()
        return record_schema(
            self.face.gender_names,
            self.face.scheme.labels,
            self.face.ethnicity_names if "ethnicity" in tasks else (),
            self.body.attribute_names if "attributes" in tasks else (),
            views=True,
        )

    # -- predicting

    def predict(self, image: Any, channel_order: str = "RGB") -> list[PersonResult]:
        """Everyone in one image; raises :class:`AgeGenderError` for input that is not a readable image."""
        rgb = load_image(image, channel_order=channel_order, max_pixels=self.max_pixels)
        return self._people(rgb)

    def predict_image(self, image: Any, source: str | None = None, channel_order: str = "RGB") -> ImageResult:
        """Like :meth:`predict`, never raising for bad input: the result's ``status`` says what happened."""
        return self._image(image, source or source_name(image), channel_order, False)[0]

    def predict_batch(self, images: Iterable[Any], workers: int | None = None, channel_order: str = "RGB",
                      sources: Sequence[str] | None = None) -> list[ImageResult]:
        return list(self.iter_predict(images, workers=workers, channel_order=channel_order, sources=sources))

    def iter_predict(self, images: Iterable[Any], workers: int | None = None, channel_order: str = "RGB",
                     sources: Sequence[str] | None = None, return_images: bool = False) -> Iterator[Any]:
        """Results in input order (``(ImageResult, rgb or None)`` pairs with ``return_images``); bad inputs get
        an error status and never stop the run."""
        n = max(1, int(workers or self.workers))
        names = iter(sources) if sources is not None else None
        it = iter(images)
        with ThreadPoolExecutor(n, thread_name_prefix="agegender-person") as ex:
            while True:
                chunk = list(islice(it, 2 * n))
                if not chunk:
                    return
                futs = [ex.submit(self._image, img, next(names) if names is not None else source_name(img),
                                  channel_order, return_images) for img in chunk]
                for f in futs:
                    res, rgb = f.result()
                    yield (res, rgb) if return_images else res

    def _image(self, image: Any, name: str, channel_order: str, keep: bool) -> tuple[ImageResult, np.ndarray | None]:
        res = ImageResult(source=name, status=STATUS_OK)
        rgb = None
        try:
            rgb = load_image(image, channel_order=channel_order, max_pixels=self.max_pixels)
            res.height, res.width = int(rgb.shape[0]), int(rgb.shape[1])
            res.people = self._people(rgb)
            if not res.people:
                res.status = STATUS_NO_FACE
                res.message = (f"no person found by the {self.body.detector_name!r} person detector and no face by "
                               f"the {self.face.detector_name!r} face detector")
        except AgeGenderError as e:
            res.status, res.message = e.code, str(e)
        except Exception as e:  # a bug: reported on this image, the batch goes on
            res.status, res.message = STATUS_ERROR, f"{type(e).__name__}: {e}"
        return res, (rgb if keep else None)

    def _people(self, rgb: np.ndarray) -> list[PersonResult]:
        bodies = self.body.predict(rgb)
        faces = self.face.predict(rgb)
        used: set[int] = set()
        out = []
        for body in bodies:
            face = None
            inside = [i for i, f in enumerate(faces) if i not in used and _in_head(f.box, body.box)]
            if inside:
                best = max(inside, key=lambda i: faces[i].detector_score)
                used.add(best)
                face = faces[best]
            else:
                face = self._face_in_head(rgb, body.box)
            out.append(self.fuse(face, body))
        # faces outside every person's box (bodies hidden or cut by the frame): face-only people
        out += [self.fuse(f, None) for i, f in enumerate(faces) if i not in used]
        return out

    def _face_in_head(self, rgb: np.ndarray, box: Sequence[float]) -> PersonResult | None:
        """The best face in the person's head region, looked for again at a larger scale."""
        h, w = rgb.shape[:2]
        x1, y1, x2, y2 = box
        bw = x2 - x1
        rx1, rx2 = int(max(0, np.floor(x1 - 0.1 * bw))), int(min(w, np.ceil(x2 + 0.1 * bw)))
        ry1, ry2 = int(max(0, np.floor(y1))), int(min(h, np.ceil(y1 + HEAD_FRACTION * (y2 - y1))))
        if rx2 - rx1 < 4 or ry2 - ry1 < 4:
            return None
        region = rgb[ry1:ry2, rx1:rx2]
        scale = max(1.0, HEAD_REGION_HEIGHT / region.shape[0])
        if scale > 1.0:
            region = cv2.resize(region, (round(region.shape[1] * scale), round(region.shape[0] * scale)),
                                interpolation=cv2.INTER_LINEAR)
        found = [f for f in self.face.predict(np.ascontiguousarray(region))
                 if _width(f.box) / scale >= self.min_face_pixels]
        if not found:
            return None
        best = max(found, key=lambda f: f.detector_score)
        b = best.box
        mapped = (b[0] / scale + rx1, b[1] / scale + ry1, b[2] / scale + rx1, b[3] / scale + ry1)
        return best.model_copy(update={"box": mapped})

    def fuse(self, face: PersonResult | None, body: PersonResult | None) -> PersonResult:
        """One person from a face estimate, a body estimate or both (the module docstring's rule)."""
        if face is None and body is None:
            raise AgeGenderError("fuse needs a face or a body estimate", code="bad_option")
        w_face = self.face_weight * face_reliability(_width(face.box)) if face is not None else 0.0
        if face is not None and body is not None:
            if w_face <= 0.0:
                face = None  # too small to read: the body alone
            elif (face.box[3] - face.box[1]) > BODY_MAX_FACE_SHARE * (body.box[3] - body.box[1]):
                body = None  # a portrait or a head shot, not a pedestrian: the face alone
        views = {k: v for k, v in (("face", face), ("body", body)) if v is not None}
        main = body if body is not None else face
        assert main is not None
        update: dict[str, Any] = {"views": views}
        if face is not None:
            update.update(age=face.age, ethnicity=face.ethnicity, ethnicity_probs=face.ethnicity_probs)
        if face is not None and body is not None and face.gender_probs and body.gender_probs:
            names = self.face.gender_names
            p = fuse_gender(face.gender_probs[names[1]], body.gender_probs.get(names[1], 0.5), w_face,
                            self.body_weight)
            probs = np.asarray([1.0 - p, p])
            update["gender_probs"] = {n: round(float(v), 5) for n, v in zip(names, probs)}
            update["gender"] = self.face._pick(probs, names)
        elif face is not None:
            update.update(gender=face.gender, gender_probs=face.gender_probs)
        return main.model_copy(update=update)


def face_reliability(width: float) -> float:
    """A face's weight factor from its width in pixels: 0 below FACE_RAMP[0], 1 from FACE_RAMP[1], linear between."""
    lo, hi = FACE_RAMP
    return float(min(1.0, max(0.0, (width - lo) / (hi - lo))))


def _width(box: Sequence[float]) -> float:
    return float(box[2] - box[0])


def _in_head(face: Sequence[float], person: Sequence[float]) -> bool:
    cx, cy = (face[0] + face[2]) / 2.0, (face[1] + face[3]) / 2.0
    return (person[0] <= cx <= person[2] and person[1] <= cy <= person[1] + HEAD_FRACTION * (person[3] - person[1])
            and _width(face) <= 0.9 * _width(person))


def load_person(face: str | os.PathLike = DEFAULT_FACE_MODEL, body: str | os.PathLike = DEFAULT_BODY_MODEL,
                face_weight: float = 1.0, body_weight: float = 1.0, min_face_pixels: float = MIN_FACE_PIXELS,
                options: PredictorOptions | None = None, **overrides: Any) -> PersonPredictor:
    """A :class:`PersonPredictor` of a face model and a body model, each loaded by
    :func:`agegender.inference.predictor.load` with the predictor options (``detector_options`` go to the face
    detector). ``detector`` cannot be set: the body model's person detector finds the people and the face
    model's face detector their faces. Without a ``scheme``, the body's age groups are given in the face
    model's scheme, so every person of a result has the same groups."""
    from agegender.inference.predictor import load

    opts = PredictorOptions.of(options, **overrides)
    if opts.detector is not None:
        raise AgeGenderError("--detector cannot be set in person mode: the body model's person detector finds the "
                             "people and the face model's face detector their faces", code="bad_option")
    face_p = load(face, opts.model_copy(update={"mode": "face"}))
    body_opts = opts.model_copy(update={"mode": "body", "detector_options": {},
                                        "scheme": opts.scheme or face_p.scheme.name})
    return PersonPredictor(load(body, body_opts), face_p, face_weight, body_weight, min_face_pixels)


def load_person_pair(name: str | os.PathLike, options: PredictorOptions) -> PersonPredictor:
    """Person mode from one name: a bundled pair (``default-person``), or one model of the pair (a face model
    takes the bundled body model as its partner, a body model the bundled face model)."""
    from agegender.bundled import PERSON_PAIRS
    from agegender.inference.predictor import load

    key = str(name)
    options = options.model_copy(update={"mode": None})
    if key in PERSON_PAIRS:
        face, body = PERSON_PAIRS[key]
    elif key == DEFAULT_BODY_MODEL or load(key, options.model_copy(update={"detector": "none"})).mode == "body":
        face, body = DEFAULT_FACE_MODEL, key
    else:
        face, body = key, DEFAULT_BODY_MODEL
    return load_person(face, body, options=options)
