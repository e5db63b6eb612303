"""docs/api.md's examples run, in order, as a notebook would run them: in one namespace, in a fresh folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_page_has_an_example_for_each_function() -> None:
    code = "\n".join(examples())
    for name in ("synth", "stage1", "relabel", "stage", "ensemble", "predict", "score"):
        assert f"api.{name}(" in code, name


@pytest.mark.timeout(600)
def test_the_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(examples()):
        try:
            exec(compile(block, f"docs/api.md example {i + 1}", "exec"), namespace)  # noqa: S102 - our own docs
        except Exception as exc:  # noqa: BLE001 - say which example failed
            raise AssertionError(f"docs/api.md example {i + 1} failed: {type(exc).__name__}: {exc}\n{block}") from exc
    # what the examples leave is what they say
    assert namespace["loop"].kept in [s.stage for s in namespace["loop"].stages]
    assert (tmp_path / "api-demo" / "submission.csv").is_file()
    assert 0.0 <= namespace["result"].lwlrap <= 1.0
