"""Pretrained backbones through the Hugging Face hub, all on 127.0.0.1: downloaded from a stand-in of the hub
(``HF_ENDPOINT``), cached, loaded again offline (``HF_HUB_OFFLINE=1``), fetched ahead to a folder, refused with
one clear line when the cache is empty offline; no request ever leaves loopback."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch

from rfcx_kit.model.inputs import affine_coefficients, channel_mean_std
from rfcx_kit.model.weights import input_mean_std

from hub_standin import HubStandIn, run_python

TINY = "test_resnet.r160_in1k"
REPO = "timm/test_resnet.r160_in1k"

# Every child interpreter: any connection to a non-loopback address fails the child (an audit hook), and a
# proxy that would catch stray HTTP(S) points at a closed loopback port.
GUARD = """
import socket, sys
def _guard(event, args):
    if event == "socket.connect":
        address = args[1]
        host = address[0] if isinstance(address, tuple) else str(address)
        if host not in ("127.0.0.1", "::1", "localhost") and not str(host).startswith("/"):
            print(f"NON-LOOPBACK {host}", file=sys.stderr, flush=True)
            raise SystemExit(99)
sys.addaudithook(_guard)
"""


@pytest.fixture(scope="module")
def served() -> tuple[bytes, dict[str, torch.Tensor]]:
    torch.manual_seed(11)
    state = timm.create_model(TINY, pretrained=False).state_dict()
    return safetensors.torch.save(state), state


def _env(hub: HubStandIn | None, home: Path, offline: bool = False) -> dict[str, str]:
    env = {"HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1", "HTTP_PROXY": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost", "HF_HUB_OFFLINE": "1" if offline else "0"}
    env["HF_ENDPOINT"] = hub.endpoint if hub is not None else "http://127.0.0.1:9"
    return env


LOAD = GUARD + """
import json, torch
from rfcx_kit.model.sed import SEDModel
model = SEDModel("test_resnet.r160_in1k", pretrained=True, in_channels=3)
torch.save(model.backbone.state_dict(), sys.argv[1] if len(sys.argv) > 1 else "/dev/null")
print(json.dumps(model.weights_source.to_dict()))
"""


def _load(env: dict[str, str], out: Path) -> tuple[int, str, str]:
    code = LOAD.replace('sys.argv[1] if len(sys.argv) > 1 else "/dev/null"', repr(str(out)))
    proc = run_python(code, env)
    return proc.returncode, proc.stdout, proc.stderr


def _same(path: Path, state: dict[str, torch.Tensor]) -> None:
    loaded = torch.load(path, weights_only=True)
    assert loaded.keys() <= state.keys() and loaded
    for name, tensor in loaded.items():
        assert torch.equal(tensor, state[name]), name


@pytest.mark.timeout(300)
def test_pretrained_weights_download_cache_and_load_offline(tmp_path: Path, served) -> None:
    data, state = served
    home = tmp_path / "hf"
    with HubStandIn({(REPO, "model.safetensors"): data}) as hub:
        code, out, err = _load(_env(hub, home), tmp_path / "online.pt")
        assert code == 0, err
        assert ("GET", f"/{REPO}/resolve/main/model.safetensors") in hub.requests
    _same(tmp_path / "online.pt", state)  # bit-identical to what the hub served
    source = json.loads(out.strip().splitlines()[-1])
    assert source["hub_id"] == REPO and source["tag"] == "r160_in1k" and source["origin"] == "hub"
    assert source["sha256"] == hashlib.sha256(data).hexdigest() and str(home) in source["file"]
    # the hub is gone: offline, the cache alone gives the same weights and nothing is asked of the network
    code, out, err = _load(_env(None, home, offline=True), tmp_path / "offline.pt")
    assert code == 0, err
    _same(tmp_path / "offline.pt", state)


@pytest.mark.timeout(300)
def test_weights_fetch_copies_to_a_folder_and_prints_the_line_to_use(tmp_path: Path, served) -> None:
    data, state = served
    fetch = GUARD + f"""
from rfcx_kit.app.cli import main
main(["weights", "fetch", "{TINY}", "--to", "{tmp_path / 'w'}"])
"""
    with HubStandIn({(REPO, "model.safetensors"): data}) as hub:
        proc = run_python(fetch, _env(hub, tmp_path / "hf"))
    assert proc.returncode == 0, proc.stderr
    target = tmp_path / "w" / f"{TINY}.safetensors"
    assert target.read_bytes() == data
    assert f"use: --set model.weights={target}" in proc.stdout
    # that file, offline and with an empty cache, is what the local-file path loads (bit-identical)
    from rfcx_kit.model.sed import SEDModel

    model = SEDModel(TINY, weights=str(target))
    for name, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, state[name]), name


@pytest.mark.timeout(300)
def test_an_empty_cache_offline_is_one_clear_line_and_no_run(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tiny import make_tiny, tiny_overrides

    data = make_tiny(tmp_path / "data", n_train=6, n_test=2)
    run = tmp_path / "runs" / "r"
    overrides = [a for o in tiny_overrides(epochs=1) for a in ("--set", o)]
    stage1 = GUARD + f"""
from rfcx_kit.app.cli import main
main({["stage1", "--data", str(data), "--run", str(run), *overrides, "--set", f"model.backbone={TINY}",
       "--set", "model.pretrained=true"]!r})
"""
    proc = run_python(stage1, _env(None, tmp_path / "empty-hf", offline=True))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"model.pretrained: the weights of '{TINY}' ({REPO}) are not in the hub cache (HF_HUB_OFFLINE=1)" in proc.stderr
    assert f"rfcx-kit weights fetch {TINY}" in proc.stderr
    assert not run.exists() and not (tmp_path / "runs").exists()


@pytest.mark.timeout(300)
def test_an_unreachable_hub_fails_within_seconds_with_the_fixes(tmp_path: Path) -> None:
    """Online (HF_HUB_OFFLINE unset), an empty cache and a hub nobody answers: the hub client would retry for about
    a minute; the check says so at once, with the lines that fix it (fetch, a file, or a recipe with no download)."""
    code = GUARD + f"""
import time
from rfcx_kit.model.weights import hub_file
from rfcx_kit.core.errors import ConfigError
start = time.perf_counter()
try:
    hub_file({TINY!r})
except ConfigError as exc:
    print(round(time.perf_counter() - start, 2), exc)
"""
    proc = run_python(code, _env(None, tmp_path / "empty-hf", offline=False))
    assert proc.returncode == 0, proc.stderr
    seconds, _, line = proc.stdout.strip().partition(" ")
    assert float(seconds) < 10, proc.stdout
    assert "cannot be reached" in line and f"rfcx-kit weights fetch {TINY}" in line
    assert "model.weights=FILE" in line and "--pipeline own-scratch" in line


@pytest.mark.timeout(300)
def test_a_run_records_its_weights_and_a_checkpoint_carries_its_config(tmp_path: Path, served) -> None:
    data, _ = served
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from rfcx_kit.method.stage1 import run_stage1
    from tiny import make_tiny, tiny_overrides

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(data)
    comp = make_tiny(tmp_path / "data", n_train=6, n_test=2)
    run = tmp_path / "run"
    run_stage1(comp, run, overrides=tiny_overrides(epochs=1, backbone=TINY, folds=2) + (f"model.weights={weights}",),
               progress=False)
    record = json.loads((run / "provenance.json").read_text())
    assert record["weights"]["sha256"] == hashlib.sha256(data).hexdigest() and record["weights"]["origin"] == "file"
    assert record["weights"]["tag"] == "r160_in1k" and record["backbone"] == TINY
    assert {"rfcx-kit", "torch", "timm", "numpy"} <= set(record["versions"]) and record["versions"]["torch"]
    best = torch.load(run / "stage1" / "fold0" / "best.pt", weights_only=True)
    assert best["config"]["model"]["weights"] == str(weights) and best["config"]["model"]["backbone"] == TINY


def test_pretrained_inputs_use_the_weights_mean_and_std() -> None:
    """inception_v3's weights expect 0.5 / 0.5, not ImageNet's constants; a random backbone keeps the post's."""
    assert input_mean_std("inception_v3.tv_in1k", True, None) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert input_mean_std("resnet18", False, None) is None
    stats = torch.tensor([[-40.0, 10.0, -80.0, 0.0]], dtype=torch.float64)  # mean, std, min, max
    a, b = affine_coefficients(stats, "post", 3, ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))
    # min-max to [0, 1], then (x - 0.5) / 0.5: the minimum maps to -1 and the maximum to +1 on every channel
    torch.testing.assert_close(a * -80.0 + b, torch.full((1, 3), -1.0))
    torch.testing.assert_close(a * 0.0 + b, torch.full((1, 3), 1.0))
    mean, std = channel_mean_std(1, ((0.5, 0.4, 0.3), (0.2, 0.2, 0.2)))
    torch.testing.assert_close(mean, torch.tensor([0.4], dtype=torch.float64))
