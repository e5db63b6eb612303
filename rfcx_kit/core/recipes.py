"""The recipes that ship with rfcx-kit (``pipelines/*.yaml``), found in a checkout and in an installed package.

The files live in the repository's ``pipelines/`` folder; the wheel carries them as ``rfcx_kit/pipelines/``
(pyproject's package-dir). ``--pipeline`` takes a path, or a shipped recipe's name: ``demo``, ``demo.yaml`` or
``pipelines/demo.yaml`` all work from any folder, with or without a checkout.
"""

from __future__ import annotations

from pathlib import Path

from rfcx_kit.core.errors import ConfigError

PACKAGE = Path(__file__).resolve().parents[1]


def shipped_dir() -> Path:
    """The folder of the shipped recipes: inside the installed package, else the checkout's ``pipelines/``."""
    inside = PACKAGE / "pipelines"
    return inside if inside.is_dir() else PACKAGE.parent / "pipelines"


def shipped() -> dict[str, Path]:
    """``{name: path}`` of the shipped recipes (name: the file's stem)."""
    folder = shipped_dir()
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def resolve_recipe(recipe: str | Path) -> Path:
    """A recipe file: ``recipe`` itself when it is a file, else the shipped recipe it names.

    Raises:
        ConfigError: neither a file nor a shipped recipe's name (the line lists the shipped ones).
    """
    path = Path(recipe)
    if path.is_file():
        return path
    if path.parent in (Path("."), Path("pipelines")):  # a bare name, or the checkout-relative path of one
        found = shipped().get(path.name.removesuffix(".yaml"))
        if found is not None and path.suffix in ("", ".yaml"):
            return found
    names = ", ".join(shipped()) or "none found"
    raise ConfigError(f"recipe {path} does not exist (shipped recipes, by name: {names})")
