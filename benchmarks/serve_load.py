"""Bounded load on the HTTP service over loopback: real photos plus a share of bad uploads, at a fixed
concurrency; prints throughput, latency percentiles and error counts (and /healthz latency under load).

    python benchmarks/serve_load.py --requests 500 --concurrency 8

Starts ``agegender serve`` in a subprocess on a free 127.0.0.1 port and stops it at the end. Exits 1 when a good
request failed or a bad upload was not answered with its 4xx code. Only loopback traffic; the request count and
every timeout are bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
UTKFACE_IMAGES = (
    Path(os.environ.get("AGEGENDER_SHARED", REPO.parent / "shared")) / "data" / "utkface" / "images"
)
MB = 1024 * 1024


@dataclass
class Case:
    kind: str  # "good" or the name of the bad case
    filename: str
    data: bytes
    content_type: str
    expect: int  # expected HTTP status
    expect_code: str | None = None


@dataclass
class Outcome:
    case: Case
    status: int  # 0: transport error
    code: str | None
    seconds: float


def grace_hopper() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def good_cases(n_utk: int) -> list[Case]:
    cases = [Case("good", "grace_hopper.jpg", grace_hopper().read_bytes(), "image/jpeg", 200)]
    if UTKFACE_IMAGES.is_dir():
        for p in sorted(UTKFACE_IMAGES.glob("*.jpg"))[::997][:n_utk]:  # spread over ages/genders
            cases.append(Case("good", p.name, p.read_bytes(), "image/jpeg", 200))
    return cases


def bad_cases(max_upload_bytes: int) -> list[Case]:
    jpeg = grace_hopper().read_bytes()
    oversized = b"\xff\xd8\xff\xe0" + np.random.default_rng(0).bytes(max_upload_bytes + MB)
    return [
        Case(
            "text",
            "notes.jpg",
            b"this is a text file, not a photo\n" * 20,
            "image/jpeg",
            415,
            "unsupported_media_type",
        ),
        Case("truncated", "cut.jpg", jpeg[: len(jpeg) // 2], "image/jpeg", 400, "unreadable"),
        Case("oversized", "huge.jpg", oversized, "image/jpeg", 413, "upload_too_large"),
        Case("empty", "empty.jpg", b"", "image/jpeg", 400, "empty_file"),
    ]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tiny_model(folder: Path) -> Path:
    """A small CNN with random weights, for when no bundled model is installed (speed figures only)."""
    import agegender  # noqa: F401
    from agegender.labels import ETHNICITIES, GENDERS, get_scheme
    from agegender.models import build_model
    from agegender.models.package import ModelBundle, save_package

    cfg = {
        "trunk": {"name": "small_cnn"},
        "heads": {
            "age": {"type": "age_distribution"},
            "gender": {"type": "classification"},
            "ethnicity": {"type": "classification"},
        },
    }
    dims = {"age_group": 8, "gender": 2, "ethnicity": 5, "attributes": 0, "pedestrian": 9}
    model = build_model(cfg, dims, stats=None, with_losses=False).eval()
    pre = {
        "input_size": [64, 64],
        "resize": [64, 64],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "channel_order": "RGB",
    }
    labels = {
        "gender": list(GENDERS),
        "ethnicity": list(ETHNICITIES),
        "age_scheme": "adience8",
        "age_groups": list(get_scheme("adience8").labels),
        "attributes": [],
    }
    bundle = ModelBundle(
        model,
        {"name": "random-small-cnn", "model": cfg, "data": {"dataset": "utkface"}},
        dims,
        pre,
        labels,
        {"name": "random-small-cnn", "version": "bench"},
    )
    return save_package(bundle, folder / "random-small-cnn.safetensors")


def start_server(model: str, port: int, args: argparse.Namespace) -> subprocess.Popen:
    code = "import agegender.cli_serve; from agegender.cli import main; main()"
    cmd = [
        sys.executable,
        "-c",
        code,
        "serve",
        "--model",
        model,
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        "--max-upload-mb",
        str(args.max_upload_mb),
        "--log-level",
        "warning",
        "--max-pending",
        "64",
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen) -> None:
    """End the server: SIGTERM, then SIGKILL after 15 s."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"server exited ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}"
            )
        try:
            r = httpx.get(url + "/v1/models", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"server not ready after {timeout} s")


async def send(client: httpx.AsyncClient, url: str, case: Case) -> Outcome:
    t0 = time.perf_counter()
    try:
        r = await client.post(
            url + "/v1/predict", files={"file": (case.filename, case.data, case.content_type)}
        )
        code = None
        if r.status_code != 200:
            try:
                code = r.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "?"
        return Outcome(case, r.status_code, code, time.perf_counter() - t0)
    except httpx.HTTPError as e:
        return Outcome(case, 0, type(e).__name__, time.perf_counter() - t0)


async def health_probe(client: httpx.AsyncClient, url: str, stop: asyncio.Event, out: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            r = await client.get(url + "/healthz")
            if r.status_code == 200:
                out.append(time.perf_counter() - t0)
        except httpx.HTTPError:
            out.append(float("inf"))
        await asyncio.sleep(0.25)


async def run_load(url: str, plan: list[Case], concurrency: int) -> tuple[list[Outcome], float, list[float]]:
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client,
        httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as probe_client,
    ):

        async def one(case: Case) -> Outcome:
            async with sem:
                return await send(client, url, case)

        stop = asyncio.Event()
        health: list[float] = []
        probe = asyncio.create_task(health_probe(probe_client, url, stop, health))
        t0 = time.perf_counter()
        outcomes = await asyncio.gather(*(one(c) for c in plan))
        wall = time.perf_counter() - t0
        stop.set()
        await probe
    return list(outcomes), wall, health


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q)) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--bad-share", type=float, default=0.1, help="fraction of bad uploads")
    ap.add_argument("--model", default="default", help="model for the server (random small CNN if missing)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-upload-mb", type=float, default=4.0)
    ap.add_argument("--utkface", type=int, default=15, help="UTKFace photos to add to grace_hopper")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    if not 1 <= args.requests <= 20_000 or not 1 <= args.concurrency <= 64:
        raise SystemExit("keep the load bounded: 1..20000 requests, concurrency 1..64")

    tmp = tempfile.TemporaryDirectory(prefix="agegender-serve-load-")
    model = args.model
    from agegender.inference.registry import BUNDLED, bundled_models

    if model in BUNDLED and model not in bundled_models():
        model = str(tiny_model(Path(tmp.name)))
        print(
            f"bundled model {args.model!r} not installed: using a random-weight small CNN (speed figures only)"
        )

    rng = random.Random(args.seed)
    good, bad = good_cases(args.utkface), bad_cases(int(args.max_upload_mb * MB))
    n_bad = round(args.requests * args.bad_share)
    plan = [bad[i % len(bad)] for i in range(n_bad)] + [
        good[i % len(good)] for i in range(args.requests - n_bad)
    ]
    rng.shuffle(plan)

    load_before = round(os.getloadavg()[0], 2)  # other work on the machine skews the figures: report it
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(model, port, args)
    try:
        info = wait_ready(url, proc)
        httpx.post(url + "/v1/predict", files={"file": ("warm.jpg", good[0].data, "image/jpeg")}, timeout=60)
        outcomes, wall, health = asyncio.run(run_load(url, plan, args.concurrency))
    finally:
        stop(proc)
        tmp.cleanup()

    goods = [o for o in outcomes if o.case.kind == "good"]
    bads = [o for o in outcomes if o.case.kind != "good"]
    failed_good = [o for o in goods if o.status != 200]
    wrong_bad = [o for o in bads if (o.status, o.code) != (o.case.expect, o.case.expect_code)]
    by_kind: dict[str, dict[str, int]] = {}
    for o in bads:
        d = by_kind.setdefault(o.case.kind, {})
        key = f"{o.status} {o.code}"
        d[key] = d.get(key, 0) + 1
    m = info["models"][0]
    fig = {
        "model": f"{m['name']} {m.get('version', '')}".strip(),
        "detector": (m.get("detector") or {}).get("name"),
        "requests": len(outcomes),
        "good": len(goods),
        "bad": len(bads),
        "concurrency": args.concurrency,
        "workers": args.workers,
        "photos": len(good),
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(outcomes) / wall, 1),
        "good_rps": round(len(goods) / wall, 1),
        "good_latency_ms": {
            "p50": round(pct([o.seconds for o in goods], 50), 1),
            "p90": round(pct([o.seconds for o in goods], 90), 1),
            "p99": round(pct([o.seconds for o in goods], 99), 1),
        },
        "bad_latency_ms": {
            "p50": round(pct([o.seconds for o in bads], 50), 1),
            "p99": round(pct([o.seconds for o in bads], 99), 1),
        },
        "healthz_under_load_ms": {
            "n": len(health),
            "p50": round(pct(health, 50), 1),
            "max": round(pct(health, 100), 1),
        },
        "failed_good_requests": len(failed_good),
        "bad_with_wrong_answer": len(wrong_bad),
        "bad_answers": by_kind,
        "cpu_count": os.cpu_count(),
        "loadavg_1min_before": load_before,
        "loadavg_1min_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(fig, indent=2))
    for o in (failed_good + wrong_bad)[:10]:
        print(f"unexpected: {o.case.kind} {o.case.filename}: HTTP {o.status} {o.code}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(fig, indent=2) + "\n")
    return 1 if failed_good or wrong_bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
