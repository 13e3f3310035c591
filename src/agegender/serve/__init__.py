"""HTTP service (FastAPI) and upload page over the Python API: ``create_app(...)``, ``agegender serve``."""

from agegender.serve.app import create_app, create_app_from_env
from agegender.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "create_app_from_env"]
