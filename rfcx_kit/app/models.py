"""`rfcx-kit weights fetch`: pretrained backbone weights ahead of time, over ``model/weights``."""

from __future__ import annotations

from pathlib import Path

import click

from rfcx_kit.app.errors import cli_errors
from rfcx_kit.model.weights import fetch, hub_file, sha256_of


@click.group("weights")
def weights_cmd() -> None:
    """Pretrained backbone weights: download ahead of time for offline use."""


@weights_cmd.command("fetch")
@click.argument("backbone")
@click.option("--to", "to", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also copy the file here (e.g. a folder uploaded as a Kaggle dataset).")
@cli_errors
def fetch_cmd(backbone: str, to: Path | None) -> None:
    """Download BACKBONE's timm pretrained weights (e.g. resnet18.tv_in1k) into the Hugging Face cache.

    Prints the --set line that uses the file. Offline later: HF_HUB_OFFLINE=1 with model.pretrained=true
    reads the cache; or pass model.weights=FILE with the copy made by --to.
    """
    path = fetch(backbone, to)
    source = hub_file(backbone) if to is not None else None
    click.echo(f"{backbone}: {path} (sha256 {source.sha256 if source else sha256_of(path)})")
    click.echo(f"use: --set model.weights={path}" if to is not None else
               f"use: --set model.pretrained=true (cached; offline: HF_HUB_OFFLINE=1), or --set model.weights={path}")
