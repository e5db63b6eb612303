"""``--checkpoint`` takes what a shell glob gives: several files after one option, or the quoted pattern itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from rfcx_kit.app.predict import checkpoint_paths
from rfcx_kit.app.cli import main
from rfcx_kit.core.errors import ConfigError


@pytest.fixture()
def folds(tmp_path: Path) -> list[Path]:
    paths = []
    for k in range(3):
        path = tmp_path / "run" / "cycle1" / f"fold{k}" / "best.pt"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        paths.append(path)
    return paths


def test_a_quoted_glob_is_expanded_sorted(folds: list[Path]) -> None:
    pattern = Path(str(folds[0]).replace("fold0", "fold*"))
    assert checkpoint_paths((pattern,), ()) == tuple(folds)
    assert checkpoint_paths((folds[2], folds[0]), ()) == (folds[2], folds[0])  # names keep their order
    assert checkpoint_paths((folds[0],), (folds[0], folds[1])) == (folds[0], folds[1])  # one model per file
    with pytest.raises(ConfigError, match="no file matches"):
        checkpoint_paths((Path(str(folds[0]).replace("fold0", "nofold*")),), ())
    with pytest.raises(ConfigError, match="checkpoints follow --checkpoint"):
        checkpoint_paths((), (folds[1],))


@pytest.mark.parametrize("command", ["predict", "export"])
def test_an_expanded_glob_reaches_the_command_whole(folds: list[Path], tmp_path: Path, command: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """What `--checkpoint run/cycle1/fold*/best.pt` becomes in the shell: every file is a model."""
    seen = []

    class Stop(Exception):
        pass

    def capture(run_dir, stage, checkpoints, *rest):  # noqa: ANN001, ANN202
        seen.append(tuple(checkpoints))
        raise Stop

    # the commands import the library inside their body (a light --help): patch it where they take it from
    import rfcx_kit.method.apply as apply
    import rfcx_kit.method.export as export

    monkeypatch.setattr(*((apply, "load_models") if command == "predict" else (export, "export_stage")), capture)
    (tmp_path / "audio").mkdir(exist_ok=True)
    extra = ["--audio", str(tmp_path / "audio"), "--out", str(tmp_path / "p.csv")] if command == "predict" else [
        "--out", str(tmp_path / "onnx")]
    result = CliRunner().invoke(main, [command, "--checkpoint", *map(str, folds), *extra])
    assert isinstance(result.exception, Stop), result.output
    assert seen == [tuple(folds)]
    stray = CliRunner().invoke(main, [command, *extra, str(folds[0])])
    assert stray.exit_code == 2 and "checkpoints follow --checkpoint" in stray.output
