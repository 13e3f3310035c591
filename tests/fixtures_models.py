"""Session fixtures for the inference tests: tiny random-weight model packages (face, body, regression).

Test modules load this with ``pytest_plugins = ["fixtures_models"]`` (tests/conftest.py is shared and left alone).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers_models import write_tiny_package


@pytest.fixture(scope="session")
def tiny_face_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_package(tmp_path_factory.mktemp("models") / "tiny-face.safetensors", "face")


@pytest.fixture(scope="session")
def tiny_body_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_package(tmp_path_factory.mktemp("models") / "tiny-body.safetensors", "body")


@pytest.fixture(scope="session")
def tiny_regression_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_package(tmp_path_factory.mktemp("models") / "tiny-regression.safetensors", "regression")
