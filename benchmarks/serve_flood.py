"""A flood of decompression-amplifying PNGs against the HTTP service, with small good requests alongside:
do the small ones still get answered, how fast, and how much memory does the server take?

    python benchmarks/serve_flood.py --big 40 --small 100

Starts the service (uvicorn, ``agegender.serve.app:create_app_from_env``) in a subprocess on a free 127.0.0.1
port, posts ``--big`` copies of a flat-colour PNG of ``--big-side``² pixels (about 100 KiB that decode to 6000 ×
6000 × 3 bytes) all at once, and meanwhile ``--small`` requests with ``grace_hopper.jpg`` (512 × 600), a few at a
time. Prints the CPU, the settings, and a table: small-request success rate and median / p95 latency, the big
requests' outcomes, and the server's peak resident memory (``VmHWM`` in ``/proc/<pid>/status``). Exits 1 when a
small request failed. Loopback only; request counts are bounded and the whole run stops after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from _common import cpu_model
from serve_load import free_port, stop, wait_ready


def flat_png(side: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (90, 120, 150)).save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def grace_hopper() -> bytes:
    import matplotlib

    return (Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").read_bytes()


def proc_status(pid: int, key: str) -> float:
    """A memory figure of ``pid`` from /proc, in MiB (NaN where /proc is missing)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def start_server(port: int, args: argparse.Namespace) -> subprocess.Popen:
    env = dict(os.environ, AGEGENDER_MODEL=args.model, AGEGENDER_WORKERS=str(args.workers),
               AGEGENDER_TIMEOUT_S=str(args.timeout))
    for name in ("threads", "pixel_budget", "max_request_pixels", "max_pending"):
        if getattr(args, name) is not None:
            env["AGEGENDER_" + name.upper()] = str(getattr(args, name))
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "agegender.serve.app:create_app_from_env",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)




async def post(client: httpx.AsyncClient, url: str, name: str, data: bytes, ctype: str) -> tuple[str, float]:
    """(outcome, seconds): ``"200"``, ``"<status> <code>"``, or the transport error's name."""
    t0 = time.perf_counter()
    try:
        r = await client.post(url + "/v1/predict", files={"file": (name, data, ctype)})
        outcome = "200" if r.status_code == 200 else f"{r.status_code} {_code(r)}"
    except httpx.HTTPError as e:
        outcome = type(e).__name__
    return outcome, time.perf_counter() - t0


def _code(r: httpx.Response) -> str:
    try:
        return str(r.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "?"


async def flood(url: str, big: bytes, small: bytes, args: argparse.Namespace) -> tuple[list, list, float]:
    limits = httpx.Limits(max_connections=args.big + args.small_concurrency + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(args.timeout + 30.0), limits=limits) as client:
        small_left = list(range(args.small))

        async def small_stream() -> list[tuple[str, float]]:
            out = []
            while small_left:
                i = small_left.pop()
                out.append(await post(client, url, f"small{i}.jpg", small, "image/jpeg"))
            return out

        t0 = time.perf_counter()
        bigs = [asyncio.create_task(post(client, url, f"big{i}.png", big, "image/png")) for i in range(args.big)]
        await asyncio.sleep(0.2)  # the big uploads are in before the small stream starts
        streams = await asyncio.gather(*(small_stream() for _ in range(args.small_concurrency)))
        big_out = await asyncio.gather(*bigs)
        return [o for s in streams for o in s], list(big_out), time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q)) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--big", type=int, default=40, help="big PNGs posted at once")
    ap.add_argument("--big-side", type=int, default=6000, help="their width and height in pixels")
    ap.add_argument("--small", type=int, default=100, help="small good requests")
    ap.add_argument("--small-concurrency", type=int, default=2)
    ap.add_argument("--model", default="default")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=30.0, help="the server's timeout_s")
    ap.add_argument("--pixel-budget", type=int, default=None, help="the server's pixel_budget (default: its own)")
    ap.add_argument("--max-request-pixels", type=int, default=None)
    ap.add_argument("--max-pending", type=int, default=None)
    ap.add_argument("--max-seconds", type=float, default=300.0, help="stop the whole run after this long")
    args = ap.parse_args()
    if not (1 <= args.big <= 200 and 1 <= args.small <= 2000 and 1 <= args.small_concurrency <= 16
            and 64 <= args.big_side <= 10_000):
        raise SystemExit("keep the load bounded: --big 1..200, --small 1..2000, --small-concurrency 1..16, "
                         "--big-side 64..10000")

    big, small = flat_png(args.big_side), grace_hopper()
    load_before = os.getloadavg()[0]  # other work on the machine skews the figures: report it
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(port, args)
    try:
        info = wait_ready(url, proc)
        httpx.post(url + "/v1/predict", files={"file": ("warm.jpg", small, "image/jpeg")}, timeout=120)
        rss_before = proc_status(proc.pid, "VmRSS")
        small_out, big_out, wall = asyncio.run(asyncio.wait_for(flood(url, big, small, args), args.max_seconds))
        peak = proc_status(proc.pid, "VmHWM")
    finally:
        stop(proc)

    m, limits = info["models"][0], info["limits"]
    ok_small = [s for o, s in small_out if o == "200"]
    ok_big = [s for o, s in big_out if o == "200"]
    big_kinds = Counter(o for o, _ in big_out)
    small_bad = Counter(o for o, _ in small_out if o != "200")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; 1-minute load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    print(f"model: {m['name']} {m.get('version', '')}, detector {(m.get('detector') or {}).get('name')}; "
          f"workers {limits['workers']}, threads {limits['threads'] or 'default'}, timeout_s {limits['timeout_s']:g}, "
          f"max_pending {limits['max_pending']}")
    print(f"decode_side {limits.get('decode_side', '-')}, max_request_pixels {limits.get('max_request_pixels', '-')}, "
          f"pixel_budget {limits.get('pixel_budget', '-')}")
    print(f"big: {args.big} × PNG {args.big_side}×{args.big_side}, {len(big) / 1024:.0f} KiB each, posted at once; "
          f"small: {args.small} × grace_hopper.jpg (512×600, {len(small) / 1024:.0f} KiB), "
          f"{args.small_concurrency} at a time; wall {wall:.1f} s")
    print()
    print("| requests | answered 200 | median / p95 latency of the 200s | other answers | server peak RSS |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| small | {len(ok_small)} / {len(small_out)} ({100.0 * len(ok_small) / max(1, len(small_out)):.0f} %) | "
          f"{pct(ok_small, 50):.0f} / {pct(ok_small, 95):.0f} ms | "
          f"{', '.join(f'{k}: {v}' for k, v in sorted(small_bad.items())) or '-'} | "
          f"{peak:.0f} MiB (idle {rss_before:.0f} MiB) |")
    print(f"| big | {len(ok_big)} / {len(big_out)} | {pct(ok_big, 50):.0f} / {pct(ok_big, 95):.0f} ms | "
          f"{', '.join(f'{k}: {v}' for k, v in sorted(big_kinds.items()) if k != '200') or '-'} | |")
    return 1 if small_bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
