"""``/docs`` without the internet: Swagger UI from local files when an installed package ships them, otherwise
a small built-in page that renders ``/openapi.json``. FastAPI's default page loads Swagger UI from a CDN."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: files a Swagger UI folder must hold
SWAGGER_FILES: tuple[str, ...] = ("swagger-ui-bundle.js", "swagger-ui.css")
ASSETS_URL = "/docs/assets"


def _package_dir(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)  # locate without importing (no side effects)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _has_swagger(folder: Path) -> bool:
    return all((folder / f).is_file() for f in SWAGGER_FILES)


def find_swagger_assets(explicit: str | Path | None = None) -> Path | None:
    """A folder with Swagger UI ≥ 5 (needed for FastAPI's OpenAPI 3.1): ``explicit``, else one shipped by
    ``swagger-ui-py`` (``swagger_ui/static``) or ``swagger-ui-bundle`` (only its 5.x builds), else ``None``."""
    if explicit:
        folder = Path(explicit).expanduser()
        return folder if _has_swagger(folder) else None
    pkg = _package_dir("swagger_ui")
    if pkg is not None and _has_swagger(pkg / "static"):
        return pkg / "static"
    pkg = _package_dir("swagger_ui_bundle")
    if pkg is not None:
        for folder in sorted((pkg / "vendor").glob("swagger-ui-*"), reverse=True):
            m = re.match(r"swagger-ui-(\d+)\.", folder.name)
            if m and int(m.group(1)) >= 5 and _has_swagger(folder):
                return folder
    return None


def install_docs(app: FastAPI, assets: Path | None, title: str) -> str:
    """Add ``GET /docs`` to ``app``; returns which kind was installed (``swagger-ui`` or ``builtin``)."""
    if assets is not None:
        app.mount(ASSETS_URL, StaticFiles(directory=str(assets)), name="docs-assets")
        favicon = f"{ASSETS_URL}/favicon-32x32.png" if (assets / "favicon-32x32.png").is_file() else ""

        @app.get("/docs", include_in_schema=False)
        def swagger_docs() -> HTMLResponse:
            return get_swagger_ui_html(
                openapi_url=app.openapi_url or "/openapi.json", title=f"{title} — API docs",
                swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=favicon,
                # no validator badge: it would fetch from validator.swagger.io
                swagger_ui_parameters={"validatorUrl": None})

        return "swagger-ui"

    @app.get("/docs", include_in_schema=False)
    def builtin_docs() -> FileResponse:
        return FileResponse(STATIC_DIR / "docs.html", media_type="text/html")

    return "builtin"
