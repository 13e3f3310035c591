"""The Ray Data path (`agegender predict --ray`) on a local Ray instance with a few hundred images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers_models import write_image_folder

pytest_plugins = ["fixtures_models"]  # tiny_face_model, tiny_body_model, tiny_regression_model

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_predict_ray_writes_parquet(local_ray: None, tiny_face_model: Path, tmp_path: Path) -> None:
    from agegender.cli_inference import app

    kinds = write_image_folder(tmp_path / "imgs", good=200, broken=12, size=(96, 120))
    out = tmp_path / "parquet"
    r = CliRunner().invoke(
        app,
        [
            "predict",
            str(tmp_path / "imgs"),
            str(tmp_path / "missing.jpg"),
            "--ray",
            "--model",
            str(tiny_face_model),
            "--output",
            str(out),
            "--batch-size",
            "32",
            "--detector",
            "none",
        ],
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["images"] == 213 and summary["address"] == "local"
    assert summary["status"]["ok"] == 200 and summary["status"]["missing_file"] == 1
    assert sum(summary["status"].values()) == 213 and summary["people"] == 200
    table = pq.read_table(str(out)).to_pylist()
    images = [row for row in table if row["record"] == "image"]
    persons = [row for row in table if row["record"] == "person"]
    names = {Path(row["source"]).name for row in images}
    assert names == set(kinds) | {"missing.jpg"}
    bad = {Path(row["source"]).name for row in images if row["status"] not in ("ok", "no_face")}
    assert bad == {n for n, k in kinds.items() if k == "broken"} | {"missing.jpg"}
    assert all(row["message"] for row in images if Path(row["source"]).name in bad)
    assert len(persons) == 200 and all(
        0 <= row["age"] <= 100 and row["gender"] in ("male", "female") for row in persons
    )
    # the Python entry point refuses to mix runs in one folder
    from agegender.errors import AgeGenderError
    from agegender.inference.distributed import predict_directory_ray

    with pytest.raises(AgeGenderError):
        predict_directory_ray([tmp_path / "imgs"], out, model=str(tiny_face_model))
