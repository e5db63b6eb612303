"""A plain (not editable) install works without the checkout: the wheel carries every package and the recipes.

The wheel is built from this tree and installed with ``--no-deps --target`` into a fresh folder (the venv's own
dependencies serve it, nothing is downloaded); a child process run from another folder imports rfcx_kit from
there, lists the shipped recipes, answers ``rfcx-kit demo --help`` and runs a tiny demo.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package() -> None:
    """pyproject names its packages one by one (the recipes' mapping needs it): a new sub-package must be added."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "rfcx_kit").rglob("__init__.py")}
    assert listed == found | {"rfcx_kit.pipelines"}, sorted(listed ^ (found | {"rfcx_kit.pipelines"}))


def test_requires_python_matches_the_pins() -> None:
    """The pinned numpy/pandas/scikit-learn/matplotlib need Python >= 3.11: pyproject must not claim less."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    assert project["license"] == "MIT" and (REPO / "LICENSE").is_file()  # an SPDX expression, not a table


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("install")
    source = work / "source"  # a copy of what the wheel is built from: a build leaves build/ beside its source
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        source.mkdir(exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    for name in ("rfcx_kit", "pipelines"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = work / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(source)], capture_output=True, text=True, timeout=300, cwd=work)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheels.glob("rfcx_kit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(p.name for p in (REPO / "pipelines").glob("*.yaml"))
    assert sorted(n.split("/")[-1] for n in names if n.startswith("rfcx_kit/pipelines/")) == shipped
    assert "rfcx_kit/resources/species.csv" in names
    target = work / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                           str(target), str(wheel)], capture_output=True, text=True, timeout=300, cwd=work)
    assert done.returncode == 0, done.stderr[-2000:]
    return target


def _child(site: Path, code: str, cwd: Path, timeout: int = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["PYTHONPATH"] = str(site)  # before the venv's editable finder: the installed copy is what imports
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=env)


def test_the_installed_package_finds_its_recipes(installed: Path, tmp_path: Path) -> None:
    code = ("import json, rfcx_kit\nfrom rfcx_kit.core.recipes import shipped, resolve_recipe\n"
            "print(json.dumps({'file': rfcx_kit.__file__, 'recipes': sorted(shipped()), "
            "'demo': str(resolve_recipe('demo')), 'path': str(resolve_recipe('pipelines/demo.yaml'))}))")
    done = _child(installed, code, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads(done.stdout)
    assert Path(info["file"]).is_relative_to(installed), info
    assert "demo" in info["recipes"] and "method-post-resnet18" in info["recipes"]
    for key in ("demo", "path"):
        assert Path(info[key]).is_relative_to(installed) and not Path(info[key]).is_relative_to(REPO), info


@pytest.mark.timeout(600)
def test_the_installed_demo_runs_without_the_checkout(installed: Path, tmp_path: Path) -> None:
    """``rfcx-kit demo --help`` and a tiny demo, run from the installed copy in a folder outside the checkout."""
    code = "import sys\nfrom rfcx_kit.app.cli import main\nsys.argv = ['rfcx-kit'] + sys.argv[1:]\nmain()\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(installed)
    run = [sys.executable, "-c", code]
    helped = subprocess.run(run + ["demo", "--help"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env=env)
    assert helped.returncode == 0 and "--pipeline" in helped.stdout, helped.stderr[-2000:]
    out = tmp_path / "tiny-demo"
    demo = subprocess.run(run + ["demo", "--out", str(out), "--train", "8", "--test", "3", "--seconds", "10",
                                 "--tp-share", "0.6", "--cycles", "1", "--submit", "dry-run", "--no-progress",
                                 "--numerics", "native", "--set", "train.epochs=1", "--set", "train.steps_per_epoch=2",
                                 "--set", "relabel.epochs=1", "--set", "relabel.windows_per_epoch=8"],
                          capture_output=True, text=True, timeout=500, cwd=tmp_path, env=env)
    assert demo.returncode == 0, (demo.stdout[-2000:], demo.stderr[-3000:])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"] == "demo.yaml" and summary["stages"][0]["stage"] == "stage1"
    written = "\n".join(p.read_text(errors="replace") for p in [out / "report.md", out / "summary.json"])
    assert str(REPO) not in written  # nothing points back at the checkout


@pytest.mark.timeout(600)
def test_offline_inference_from_the_wheel_writes_a_valid_submission(installed: Path, tmp_path: Path) -> None:
    """The offline path of a Kaggle notebook: the wheel installed with no index (above), the hub offline and no
    proxy to reach it, a stage's best.pt files: `predict` writes the clip table and `validate` accepts it as the
    data's submission."""
    sys.path.insert(0, str(REPO / "tests"))
    from tiny import make_tiny, tiny_overrides

    from rfcx_kit.method.stage1 import run_stage1

    data = make_tiny(tmp_path / "data", n_train=9, n_test=4)
    run = tmp_path / "run"
    run_stage1(data, run, overrides=tiny_overrides(epochs=1), progress=False)
    checkpoints = sorted(str(p) for p in (run / "stage1").glob("fold*/best.pt"))
    assert len(checkpoints) == 3
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",) and "proxy" not in k.lower()}
    env.update(PYTHONPATH=str(installed), HF_HUB_OFFLINE="1", HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    code = "import sys\nfrom rfcx_kit.app.cli import main\nsys.argv = ['rfcx-kit'] + sys.argv[1:]\nmain()\n"
    sub = tmp_path / "kaggle" / "submission.csv"
    predicted = subprocess.run([sys.executable, "-c", code, "predict", "--checkpoint", *checkpoints, "--audio",
                                str(data / "test"), "--out", str(sub), "--no-progress"],
                               capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    checked = subprocess.run([sys.executable, "-c", code, "validate", str(sub), "--data", str(data)],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert checked.returncode == 0 and "OK" in checked.stdout, (checked.stdout, checked.stderr[-2000:])
    where = subprocess.run([sys.executable, "-c", "import rfcx_kit; print(rfcx_kit.__file__)"], capture_output=True,
                           text=True, timeout=60, cwd=tmp_path, env=env)
    assert where.stdout.strip().startswith(str(installed)), where.stdout  # the wheel's copy ran, not the checkout
