"""Pretrained backbone weights the standard way: timm's pretrained configs and the Hugging Face hub cache.

* ``model.pretrained: true`` resolves the backbone's tag (``resnet18`` -> timm's default tag, or a pinned one
  such as ``resnet18.tv_in1k``) to its hub id (``timm/resnet18.tv_in1k``) and downloads ``model.safetensors``
  (else ``pytorch_model.bin``) into the hub cache with ``huggingface_hub``. With ``HF_HUB_OFFLINE=1`` only the
  cache is used. ``HF_ENDPOINT`` and ``HF_HOME`` work as for any hub client.
* ``model.weights: PATH`` uses a local file (safetensors or a torch state dict) instead.

Either way the file is loaded by timm's own loader (``pretrained_cfg_overlay=dict(file=...)``), which also
adapts the first convolution to the input channels and drops the ImageNet classifier. ``rfcx-kit weights
fetch BACKBONE --to DIR`` downloads ahead of time (for an offline GPU box or a Kaggle notebook dataset).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


from rfcx_kit.core.errors import ConfigError

HUB_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's starting weights come from (recorded in every run's provenance)."""

    backbone: str
    tag: str | None  # timm's pretrained tag, e.g. tv_in1k
    hub_id: str | None  # e.g. timm/resnet18.tv_in1k (None for a local file)
    file: str  # the file loaded: the hub cache's copy or the local file
    sha256: str
    origin: str  # "hub" | "file"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pretrained_cfg(backbone: str) -> Any:
    """timm's pretrained config of ``backbone`` (a tag-pinned name selects that tag), or a ConfigError."""
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(backbone):
        raise ConfigError(f"model.backbone: {backbone!r} is not a timm model (timm.list_models() lists them)")
    try:
        cfg = get_pretrained_cfg(backbone)
    except RuntimeError:  # an unknown tag: name the ones there are
        arch = backbone.split(".")[0]
        tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{arch}.*")]
        raise ConfigError(f"model.backbone: {backbone!r}: timm has no tag {backbone.split('.', 1)[1]!r} for {arch} "
                          f"(tags: {', '.join(tags) if tags else 'none'})") from None
    if cfg is None:
        raise ConfigError(f"model.pretrained: timm has no pretrained weights for {backbone!r}; pass "
                          "model.weights=FILE or set model.pretrained=false")
    return cfg


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").strip() or "https://huggingface.co"


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds (no request is sent)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _in_cache(repo: str, revision: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo, f, revision=revision or None), str) for f in HUB_FILES)


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_file(backbone: str) -> WeightsSource:
    """Download (or find in the hub cache) the pretrained weights of ``backbone``; the cache only when offline."""
    cfg = pretrained_cfg(backbone)
    hub_id = cfg.hf_hub_id
    if not hub_id:
        raise ConfigError(f"model.pretrained: timm's weights for {backbone!r} are not on the Hugging Face hub "
                          f"({cfg.url or 'no url'}); download them yourself and pass model.weights=FILE")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    repo, _, revision = hub_id.partition("@")
    if not offline() and not _in_cache(repo, revision) and not reachable(hub_endpoint()):
        # the hub client would retry for about a minute before failing: say it now, with the fixes
        raise ConfigError(f"model.pretrained: the weights of {backbone!r} ({hub_id}) are not in the hub cache and "
                          f"{hub_endpoint()} cannot be reached; run `rfcx-kit weights fetch {backbone}` where it "
                          "can, pass model.weights=FILE, or train from scratch with a recipe that downloads "
                          "nothing (--pipeline own-scratch, or --set model.pretrained=false)")
    problems = []
    for filename in HUB_FILES:
        try:
            path = hf_hub_download(repo, filename, revision=revision or None, local_files_only=offline())
        except LocalEntryNotFoundError as exc:  # (a subclass of EntryNotFoundError: caught first)
            problems.append(str(exc).splitlines()[0])
            continue
        except EntryNotFoundError:
            continue  # the repo has no such file: try the next format
        except Exception as exc:  # noqa: BLE001 - network, auth, unknown repo: all reported as one line below
            problems.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            break
        return WeightsSource(backbone, cfg.tag, hub_id, str(path), sha256_of(path), "hub")
    where = "not in the hub cache (HF_HUB_OFFLINE=1)" if offline() else "neither in the hub cache nor reachable"
    raise ConfigError(f"model.pretrained: the weights of {backbone!r} ({hub_id}) are {where}"
                      f"{' (' + problems[0] + ')' if problems else ''}; run `rfcx-kit weights fetch {backbone}` "
                      "where the hub is reachable, or pass model.weights=FILE")


def resolve_weights(backbone: str, pretrained: bool, weights: str | None) -> WeightsSource | None:
    """The starting weights of a backbone: a local file, the hub's pretrained ones, or None (random)."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise ConfigError(f"model.weights: {weights} is not a file")
        try:
            cfg = pretrained_cfg(backbone)
            tag = cfg.tag
        except ConfigError:
            tag = None
        return WeightsSource(backbone, tag, None, str(path.resolve()), sha256_of(path), "file")
    if pretrained:
        return hub_file(backbone)
    return None


def input_mean_std(backbone: str, pretrained: bool, weights: str | None) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The per-channel mean and std the backbone's pretrained weights expect (timm's ``pretrained_cfg``);
    None for a randomly initialised backbone (the post's ImageNet constants are used)."""
    if not pretrained and weights is None:
        return None
    try:
        cfg = pretrained_cfg(backbone)
    except ConfigError:
        return None
    return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)


def fetch(backbone: str, to: Path | None = None) -> Path:
    """Download ``backbone``'s pretrained weights into the hub cache, and copy them to ``to`` if given."""
    source = hub_file(backbone)
    if to is None:
        return Path(source.file)
    to.mkdir(parents=True, exist_ok=True)
    target = to / f"{backbone}{Path(source.file).suffix}"
    tmp = target.with_name(target.name + ".part")
    shutil.copyfile(source.file, tmp)
    os.replace(tmp, target)
    return target
