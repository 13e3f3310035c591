"""Named models: bundled weights shipped inside the package (``agegender/weights``), or paths to packages / ONNX
files."""

from __future__ import annotations

from pathlib import Path

from agegender.errors import AgeGenderError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # agegender/weights

#: bundled model name → file inside ``agegender/weights`` (a model card sits beside each)
BUNDLED: dict[str, str] = {
    "default": "default-face.safetensors",
    "default-face": "default-face.safetensors",
    "default-body": "default-body.safetensors",
    # a shallower `default` (9 of its 16 blocks): about 1.5x the crops/s, slightly less accurate (see its card)
    "default-fast": "default-fast.safetensors",
    # `default` and a network on dlib's face-recognition ResNet averaged: more accurate, 2-3x the cost (its card)
    "default-accurate": "default-accurate.safetensors",
}


#: bundled models shipped without an ONNX twin (it would add its size again to the installation): the first load
#: exports the package once into the cache folder (agegender.inference.onnx_cache)
WITHOUT_TWIN: frozenset[str] = frozenset({"default-accurate"})

#: bundled names of person mode (agegender.inference.person): (face model, body model)
PERSON_PAIRS: dict[str, tuple[str, str]] = {"default-person": ("default", "default-body")}


def bundled_models() -> dict[str, Path]:
    """Bundled names whose weight file is present in this installation."""
    return {n: WEIGHTS_DIR / f for n, f in BUNDLED.items() if (WEIGHTS_DIR / f).is_file()}


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A bundled model name or an existing file path → the file to load."""
    key = str(name_or_path)
    if key in BUNDLED:
        p = WEIGHTS_DIR / BUNDLED[key]
        if not p.is_file():
            raise AgeGenderError(
                f"bundled model {key!r} is not in this installation ({p} missing); reinstall agegender "
                "or pass a checkpoint path", code="unknown_model")
        return p
    p = Path(key).expanduser()
    if p.is_file():
        return p
    known = ", ".join(sorted({*BUNDLED, *PERSON_PAIRS}))
    raise AgeGenderError(
        f"unknown model {key!r}: not a bundled name ({known}) and no such file", code="unknown_model")


def is_bundled_package(path: str | Path) -> bool:
    """True for a package file among the bundled weights."""
    p = Path(path)
    return p.parent == WEIGHTS_DIR and p.suffix == ".safetensors" and p.is_file()


def onnx_twin(path: str | Path) -> Path | None:
    """The bundled ONNX file exported from a bundled package (same name, ``.onnx``; written by
    ``tools/export_bundled_onnx.py``), which ONNX Runtime runs without torch; None for any other file."""
    twin = Path(path).with_suffix(".onnx")
    return twin if is_bundled_package(path) and twin.is_file() else None


def int8_twin(path: str | Path) -> Path | None:
    """The bundled int8 ONNX file of a bundled package (``<name>.int8.onnx``; written by
    ``tools/export_bundled_onnx.py --int8``), which OpenVINO runs in int8 where a speed check finds it faster; None for
    any other file or where none is shipped."""
    twin = Path(path).with_suffix(".int8.onnx")
    return twin if is_bundled_package(path) and twin.is_file() else None
