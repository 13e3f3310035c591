"""ONNX exports of model packages kept in the cache folder (``$AGEGENDER_CACHE_DIR/onnx``, default
``~/.cache/agegender/onnx``): made once, on first use, then loaded without torch. They serve the ``auto`` backend
(:mod:`agegender.inference.backend_choice`) and the bundled packages shipped without an ONNX twin
(``default-accurate``, whose twin would add 19 MB to the installation).

An export is keyed by the package's name, size and modification time, so a changed file gets a new one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from agegender.inference.machine import cache_dir

log = logging.getLogger(__name__)


def cached_export_path(path: str | Path) -> Path:
    """Where the export of the package at ``path`` is kept (it may not exist yet)."""
    p = Path(path)
    st = p.resolve().stat()
    return cache_dir() / "onnx" / f"{p.stem}-{st.st_size}-{st.st_mtime_ns}.onnx"


def cached_export(path: str | Path) -> Path:
    """The package's ONNX export in the cache folder, exported now if it is not there yet (which imports torch and
    takes seconds). Raises ``OSError`` when the cache folder is not writable and ``AgeGenderError`` when the export
    fails; a failed export leaves nothing behind."""
    out = cached_export_path(path)
    if out.is_file():
        return out
    from agegender.inference.onnx_export import export_onnx

    tmp = out.with_suffix(f".{os.getpid()}.tmp.onnx")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        log.info("exporting %s to ONNX once, into %s", Path(path).name, out.parent)
        export_onnx(path, tmp, verify=False)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
