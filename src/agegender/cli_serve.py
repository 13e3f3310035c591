"""CLI command ``serve``: runs the HTTP service (:mod:`agegender.serve`) under uvicorn.

Registered on the main Typer app by importing this module.
"""

from __future__ import annotations

import ipaddress

import typer

from agegender.cli_app import app, user_errors
from agegender.errors import AgeGenderError


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command()
@user_errors
def serve(
    host: str = typer.Option(
        "127.0.0.1", "--host", envvar="AGEGENDER_HOST",
        help="address to listen on; anything but loopback exposes the service to the network"),
    port: int = typer.Option(8000, "--port", envvar="AGEGENDER_PORT", help="TCP port"),
    model: str = typer.Option(
        "default", "--model", "-m", envvar="AGEGENDER_MODEL", help="bundled model name, checkpoint/package or .onnx"),
    workers: int | None = typer.Option(
        None, "--workers", help="model worker threads, each with its own copy of the model [1]"),
    threads: int | None = typer.Option(
        None, "--threads", help="torch/onnxruntime threads per worker [CPU cores / workers]"),
    detector: str | None = typer.Option(
        None, "--detector", "-d", help="centerface | blazeface | haar | yunet | dlib | none | detector.onnx, or any registered name [the model's default]"),
    device: str | None = typer.Option(None, "--device", help="cpu | cuda[:N] [cpu]"),
    backend: str | None = typer.Option(
        None, "--backend", help="torch | onnx | openvino | auto (time torch and onnx once, keep the faster) "
        "[a bundled model: its ONNX twin, on OpenVINO in bfloat16 where the CPU has AMX, else ONNX Runtime]"),
    max_upload_mb: float | None = typer.Option(None, "--max-upload-mb", help="largest image upload, MiB [10]"),
    max_batch_mb: float | None = typer.Option(None, "--max-batch-mb", help="largest batch request body, MiB [32]"),
    max_megapixels: float | None = typer.Option(
        None, "--max-megapixels", help="largest image, width × height in millions [40]"),
    max_batch_images: int | None = typer.Option(None, "--max-batch-images", help="images per batch request [16]"),
    timeout: float | None = typer.Option(None, "--timeout", help="seconds per request before 504 [30]"),
    max_pending: int | None = typer.Option(
        None, "--max-pending", help="requests queued for the model before 503 [32]"),
    accepted_types: str | None = typer.Option(
        None, "--accepted-types", help="comma-separated: jpeg,png,webp,bmp,gif,tiff [all]"),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level"),
) -> None:
    """Run the HTTP service: REST API (/v1/predict, /v1/predict/batch, /v1/models, /healthz), the upload page
    (/) and the API docs (/docs).

    Every limit can also be set by an environment variable (AGEGENDER_MAX_UPLOAD_BYTES, AGEGENDER_TIMEOUT_S, ...;
    see docs/serving.md); flags win. Examples:

      agegender serve --model default --port 8000

      agegender serve --host 0.0.0.0 --workers 2 --max-upload-mb 5
    """
    try:
        import uvicorn

        from agegender.serve import ServeSettings, create_app
        from agegender.serve.settings import MIB
    except ImportError as e:
        raise AgeGenderError(f"the service needs the serve extra ({e.name} is missing): "
                             "pip install 'agegender[serve]'", code="missing_dependency") from None

    settings = ServeSettings.from_env(
        workers=workers, threads=threads, detector=detector, device=device, backend=backend,
        max_upload_bytes=None if max_upload_mb is None else int(max_upload_mb * MIB),
        max_batch_bytes=None if max_batch_mb is None else int(max_batch_mb * MIB),
        max_pixels=None if max_megapixels is None else int(max_megapixels * 1e6),
        max_batch_images=max_batch_images, timeout_s=timeout, max_pending=max_pending,
        accepted_types=None if accepted_types is None else tuple(accepted_types.split(",")))
    if not is_loopback(host):
        typer.secho(f"warning: listening on {host}: anyone who can reach this machine on port {port} can use the "
                    "service, which has no authentication. Put it behind a reverse proxy with TLS and access "
                    "control (see docs/serving.md).", fg=typer.colors.YELLOW, err=True)
    service = create_app(model, settings)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"agegender: model {service.state.model_info['name']} on http://{shown}:{port}/ "
               f"(API docs: /docs, workers: {settings.workers})", err=True)
    uvicorn.run(service, host=host, port=port, log_level=log_level)
