"""CLI command ``reproduce``: re-run a paper's table and print it beside the published one
(a thin shell over :mod:`agegender.workflows.reproduce`; registered by importing this module)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from agegender.cli_app import app, user_errors
from agegender.cli_inference import DetectorOptions, parse_detector_options
from agegender.errors import AgeGenderError


@app.command()
@user_errors
def reproduce(
    paper: Annotated[str | None, typer.Argument(help="paper key, e.g. jamoliddin2022 (see --list)")] = None,
    table: Annotated[str | None, typer.Option("--table", "-t", help="one table of the paper, e.g. 2")] = None,
    data: Annotated[list[str] | None, typer.Option(
        "--data", help="data folder for every row, or DATASET=DIR per reader name (repeatable)")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="parent of the run folders (default runs, or runs/quick with --quick)")] = None,
    quick: Annotated[bool, typer.Option(
        "--quick", help="smoke test: 480 images, 1 epoch of 4 batches, small inputs, 1 fold (not results)")] = False,
    reuse: Annotated[bool, typer.Option(
        "--reuse", help="read existing <output>/<config name>/results.json instead of training; never trains")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="print Markdown tables (for docs/results.md)")] = False,
    rows: Annotated[list[str] | None, typer.Option(
        "--rows", help="only rows whose label or config name contains this (repeatable)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a key in every config (repeatable)")] = None,
    weights: Annotated[str, typer.Option(
        "--weights", help="auto (ImageNet weights, from scratch when offline), scratch or require")] = "auto",
    folds: Annotated[int | None, typer.Option("--folds", help="run only the first N folds of k-fold tables")] = None,
    list_: Annotated[bool, typer.Option("--list", help="show every paper, table and config known")] = False,
) -> None:
    """Run a paper's table configs on your data; print measured beside published values with deviations."""
    import agegender  # noqa: F401  (torchvision compat before training imports)
    from agegender.workflows.reproduce import format_table, list_papers
    from agegender.workflows.reproduce import reproduce as run

    if list_:
        typer.echo(list_papers())
        return
    if not paper:
        raise AgeGenderError("name a paper (e.g. `agegender reproduce jamoliddin2022`) or pass --list",
                             code="bad_config")
    results = run(paper, table=table, data=data or (), output=output, quick=quick, reuse=reuse, rows=rows or (),
                  sets=set_ or (), weights=weights, max_folds=folds)
    parts = ["agegender", "reproduce", paper]
    if table:
        parts += ["--table", table]
    for flag, values in (("--data", data), ("--rows", rows), ("--set", set_)):
        for v in values or ():
            parts += [flag, v]
    parts += [f for f, on in (("--quick", quick), ("--reuse", reuse)) if on]
    for tr in results:
        tr.command = shlex.join(parts + ["--table", tr.table.table] if not table else parts)
        typer.echo(format_table(tr, markdown=markdown))


@app.command()
@user_errors
def crops(
    dataset: Annotated[str, typer.Argument(help="reader name, e.g. utkface, csv")],
    root: Annotated[Path, typer.Argument(help="the dataset's folder (or CSV file)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="cache folder (images/, labels.csv, summary.json)")],
    model: Annotated[str, typer.Option("--model", "-m", help="model whose detector pipeline frames the faces")] = "default",
    detector: Annotated[str | None, typer.Option("--detector", "-d", help="a face detector instead of the model's own")] = None,
    size: Annotated[int | None, typer.Option("--size", help="crop size in px (default: the model's input size)")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="only the first N samples")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="reader option key=value (repeatable)")] = None,
    detector_option: DetectorOptions = [],  # noqa: B006 - Typer reads the default; never mutated
) -> None:
    """Cache face crops framed as `predict` frames them (csv layout, with the originals' fingerprints)."""
    from agegender.training.config import parse_overrides
    from agegender.workflows.face_crops import build_crop_cache, format_summary

    summary = build_crop_cache(dataset, root, output, model=model, size=size, options=parse_overrides(set_ or ()),
                               limit=limit, detector=detector,
                               detector_options=parse_detector_options(detector_option))
    for line in format_summary(summary):
        typer.echo(line)
