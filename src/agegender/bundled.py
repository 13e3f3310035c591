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
    # the face model at 80 px: ~35 % more crops/s than `default`, slightly less accurate (see its card)
    "default-fast": "default-fast.safetensors",
}


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


def onnx_twin(path: str | Path) -> Path | None:
    """The bundled ONNX file exported from a bundled package (same name, ``.onnx``; written by
    ``tools/export_bundled_onnx.py``), which ONNX Runtime runs without torch; None for any other file."""
    p = Path(path)
    twin = p.with_suffix(".onnx")
    return twin if p.parent == WEIGHTS_DIR and p.suffix == ".safetensors" and twin.is_file() else None
