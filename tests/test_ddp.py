"""Multi-process data-parallel training through Lightning's DDP strategy: 2 CPU processes (gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ddp_two_cpu_processes(utkface_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "agegender.cli", "train", str(REPO / "configs/jamoliddin2022/table2_small_cnn.yaml"),
        "--data", str(utkface_dir), "--output", str(out),
        "--set", "trainer.strategy=ddp", "--set", "trainer.devices=2", "--set", "trainer.max_steps=3",
        "--set", "trainer.max_epochs=5", "--set", "data.limit=240", "--set", "data.num_workers=0",
        "--set", "trainer.threads=1", "--set", "trainer.progress_bar=false", "--set", "trainer.limit_val_batches=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stderr + r.stdout
    assert "distributed_backend=gloo" in log, log[-2000:]
    assert "All distributed processes registered. Starting with 2 processes" in log
    res = json.loads((out / "results.json").read_text())
    # Each process takes its own share of every batch: 3 optimizer steps on 2 ranks.
    assert res["global_step"] == 3
    assert (out / "checkpoints" / "last.ckpt").is_file()
