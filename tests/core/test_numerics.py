"""Portable numerics: the pins reach torch and numpy before they load, override what the user's environment
asks for, survive a late import by starting the command again, and make training give the same floats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rfcx_kit.core import numerics

# ATen's kernels of this machine's portable tier: AVX2 where the CPU has AVX2 and FMA, else the baseline's
TIER_KERNELS = {"avx2": "AVX2", "baseline": "DEFAULT"}[numerics.tier()]

# One Adam step of a tiny conv net; prints what the process ran with and a hash of the trained weights.
STEP = """
import hashlib, json, os, rfcx_kit, torch
from rfcx_kit.core import numerics
from rfcx_kit.core.config import Config
from rfcx_kit.method.train import build_optimizer
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.Hardswish(),
                          torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.AdaptiveAvgPool2d(1),
                          torch.nn.Flatten(), torch.nn.Linear(8, 4))
opt = build_optimizer(net, Config(), 1e-2)
x, y = torch.randn(4, 3, 32, 64), torch.rand(4, 4)
for _ in range(3):
    loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in net.parameters())).hexdigest()
print(json.dumps({"in_effect": numerics.in_effect(), "capability": torch.backends.cpu.get_cpu_capability(),
                  "threads": torch.get_num_threads(), "fused": bool(opt.defaults.get("fused")), "weights": digest,
                  "pins": {k: os.environ.get(k) for k in numerics.PINS}}))
"""


def _clean_env() -> dict[str, str]:
    """This environment without any numerics setting (the test decides them)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RFCX_KIT_NUMERICS") and k not in numerics.PINS}


def _run(code: str, **env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], env=_clean_env() | env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_portable_pins_reach_torch_and_the_optimizer() -> None:
    out = _run(STEP, RFCX_KIT_NUMERICS="portable")
    assert out["in_effect"] and out["capability"] == TIER_KERNELS and out["threads"] == numerics.THREADS
    assert out["fused"]
    assert out["pins"] == {k: numerics.pins().get(k) for k in numerics.PINS}
    native = _run(STEP)
    assert not native["in_effect"] and native["capability"] not in ("DEFAULT", TIER_KERNELS)
    assert native["fused"]  # train.fused_optimizer's default, natively too


def test_the_baseline_tier_is_there_for_every_cpu() -> None:
    """RFCX_KIT_NUMERICS_TIER=baseline gives the baseline's kernels on any CPU (what a CPU without AVX2 runs)."""
    out = _run(STEP, RFCX_KIT_NUMERICS="portable", RFCX_KIT_NUMERICS_TIER="baseline")
    assert out["in_effect"] and out["capability"] == "DEFAULT"
    if numerics.tier() == "avx2":  # the two tiers' kernels give other floats
        assert out["weights"] != _run(STEP, RFCX_KIT_NUMERICS="portable")["weights"]


def test_portable_overrides_kernel_choices_of_the_environment() -> None:
    """What a user's environment (or another CPU) would choose does not reach a portable run: same weights."""
    plain = _run(STEP, RFCX_KIT_NUMERICS="portable")
    other = "default" if TIER_KERNELS == "AVX2" else "avx2"
    steered = _run(STEP, RFCX_KIT_NUMERICS="portable", ATEN_CPU_CAPABILITY=other, ONEDNN_MAX_CPU_ISA="AVX2",
                   MKL_CBWR="AVX2", OMP_NUM_THREADS="1")
    assert steered["capability"] == TIER_KERNELS and steered["threads"] == numerics.THREADS
    assert steered["weights"] == plain["weights"]
    again = _run(STEP, RFCX_KIT_NUMERICS="portable")
    assert again["weights"] == plain["weights"]  # and the same seed gives the same floats


def test_late_import_starts_the_command_again_with_the_pins() -> None:
    """numpy loaded before rfcx_kit: the pins cannot act in this process, so ensure_portable re-executes it."""
    code = ("import sys, numpy, rfcx_kit\nfrom rfcx_kit.core import numerics\nprint('before', numerics.in_effect(), "
            "file=sys.stderr)\nnumerics.ensure_portable()\n" + STEP)
    done = subprocess.run([sys.executable, "-c", code], env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # the first process saw no pins and replaced itself once; the second ran with them
    assert done.stderr.count("before False") == 1 and done.stderr.count("before True") == 1
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["in_effect"] and out["capability"] == TIER_KERNELS and out["fused"]
    assert out["weights"] == _run(STEP, RFCX_KIT_NUMERICS="portable")["weights"]


def test_portable_requested_too_late_warns_and_stays_native() -> None:
    """torch imported before rfcx_kit: the pins could not act, which the library says instead of pretending."""
    code = ("import warnings, json, torch\nwith warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n    import rfcx_kit\nfrom rfcx_kit.core import numerics\n"
            "print(json.dumps({'warned': any('has no effect' in str(x.message) for x in w), "
            "'mode': numerics.describe()['mode']}))\n")
    out = _run(code, RFCX_KIT_NUMERICS="portable")
    assert out == {"warned": True, "mode": "native"}


def test_describe_names_the_mode_and_kernels() -> None:
    info = numerics.describe()
    assert info["mode"] in ("portable", "native") and info["torch_threads"] >= 1
    assert set(info["pins"]) == set(numerics.PINS) and info["torch_cpu_capability"]


def test_the_demo_records_its_numerics(tmp_path: Path) -> None:
    """``rfcx-kit demo`` starts itself again under portable numerics before writing anything (the default)."""
    pytest.importorskip("torch")
    out = tmp_path / "demo"
    code = ("import sys\nfrom rfcx_kit.app.cli import main\nsys.argv = ['rfcx-kit', 'demo', '--out', %r, '--train', '6', "
            "'--test', '3', '--seconds', '10', '--tp-share', '0.6', '--cycles', '1', '--submit', 'dry-run', '--no-progress', "
            "'--set', 'model.backbone=mobilenetv3_small_050', '--set', 'train.epochs=1', '--set', "
            "'train.steps_per_epoch=2', '--set', 'relabel.epochs=1', '--set', 'relabel.windows_per_epoch=8']"
            "\nmain()\n") % str(out)
    done = subprocess.run([sys.executable, "-c", code], env=_clean_env(), capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["numerics"]["mode"] == "portable" and summary["numerics"]["torch_cpu_capability"] == TIER_KERNELS
    assert summary["numerics"]["tier"] == numerics.tier()
    assert f"numerics: portable ({TIER_KERNELS}, 2 threads)" in done.stdout
    assert json.loads((out / "run" / "provenance.json").read_text())["numerics"]["mode"] == "portable"


def test_demo_native_refuses_a_portable_environment(tmp_path: Path) -> None:
    """--numerics native cannot undo pins the environment asks for: refused before anything is written."""
    from click.testing import CliRunner

    from rfcx_kit.app.demo import demo_cmd

    out = tmp_path / "demo"
    result = CliRunner().invoke(demo_cmd, ["--out", str(out), "--numerics", "native"],
                                env={"RFCX_KIT_NUMERICS": "portable"})
    assert result.exit_code == 2 and "RFCX_KIT_NUMERICS=portable is set" in result.output
    assert not out.exists()
