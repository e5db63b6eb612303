"""The package's imports follow the data flow docs/architecture.md names, and no module uses another's private names.

Walks every module of ``rfcx_kit`` with ``ast`` (module-level and function-level imports alike):

* a module of layer L may import only from layers at or before L in the documented flow
  (``core -> data -> model -> method -> submit -> report -> app``; ``app`` is the top-level modules);
* ``from rfcx_kit.x import _name`` and ``module._name`` on an imported rfcx_kit module are refused, except
  inside the module that defines the name.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "rfcx_kit"


def documented_flow() -> list[str]:
    """The layers in order, from the ``**Flow**`` line of docs/architecture.md."""
    for line in (REPO / "docs" / "architecture.md").read_text().splitlines():
        if line.startswith("**Flow**"):
            return re.findall(r"`(\w+)`", line)
    raise AssertionError("docs/architecture.md has no **Flow** line naming the layers")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """``rfcx_kit.method.cycle`` -> ``method``; a top-level module (cli, demo, ...) -> ``app``."""
    parts = module.split(".")
    if len(parts) >= 2 and (PACKAGE / parts[1]).is_dir() and parts[1] != "resources":
        return parts[1]
    return "core" if len(parts) >= 2 and parts[1] == "resources" else "app"


def imports_of(tree: ast.AST, here: str) -> list[tuple[int, str, list[str]]]:
    """(line, imported rfcx_kit module, names taken from it) for every import in a module."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:  # relative imports are not used in the package
            out.append((node.lineno, f"<relative import in {here}>", []))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rfcx_kit":
            out.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "rfcx_kit"]
    return out


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_documented_layer() -> None:
    flow = documented_flow()
    assert flow[-1] == "app" and len(set(flow)) == len(flow), flow
    layers = {layer_of(module_name(p)) for p in modules()}
    assert layers <= set(flow), f"layers not in docs/architecture.md's flow: {sorted(layers - set(flow))}"
    # and the document names only folders that exist
    assert set(flow) - {"app"} <= {p.name for p in PACKAGE.iterdir() if p.is_dir()}, flow


def test_imports_run_one_way_down_the_flow() -> None:
    rank = {name: i for i, name in enumerate(documented_flow())}
    against = []
    for path in modules():
        here = module_name(path)
        for line, target, _ in imports_of(ast.parse(path.read_text()), here):
            if target.startswith("<"):
                against.append(f"{path.relative_to(REPO)}:{line}: {target}")
                continue
            if rank[layer_of(target)] > rank[layer_of(here)]:
                against.append(f"{path.relative_to(REPO)}:{line}: {layer_of(here)} imports {target} "
                               f"({layer_of(target)} comes later in the flow)")
    assert not against, "imports against the flow:\n" + "\n".join(against)


def private_uses(path: Path, source: str | None = None) -> list[str]:
    here = module_name(path)
    tree = ast.parse(path.read_text() if source is None else source)
    found = []
    aliases: dict[str, str] = {}  # local name -> rfcx_kit module it is bound to
    for line, target, names in imports_of(tree, here):
        for name in names:
            if name.startswith("_") and not name.startswith("__") and target != here:
                found.append(f"{path.relative_to(REPO)}:{line}: from {target} import {name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("rfcx_kit"):
                    aliases[a.asname or a.name.split(".")[0]] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rfcx_kit"):
            for a in node.names:  # `from rfcx_kit.report import plots` binds a module
                candidate = f"{node.module}.{a.name}"
                if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists():
                    aliases[a.asname or a.name] = candidate
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names() -> None:
    found = [use for path in modules() for use in private_uses(path)]
    assert not found, "private names used across modules:\n" + "\n".join(found)


@pytest.mark.parametrize("source, expected", [
    ("from rfcx_kit.core.config import _apply\n", ["from rfcx_kit.core.config import _apply"]),
    ("from rfcx_kit.method import train\ntrain._predict(1)\n", ["train._predict"]),
    ("import rfcx_kit.core.io as io\nio._hidden\n", ["io._hidden"]),
    ("from rfcx_kit.core.config import Config\nclass A:\n    def f(self):\n        return self._x\n", []),
])
def test_the_private_name_check_catches_what_it_should(source: str, expected: list[str]) -> None:
    """The checker itself, on hand-written modules: cross-module private uses found, own attributes not."""
    found = private_uses(PACKAGE / "method" / "probe.py", source)
    assert [f.split(": ", 1)[1] for f in found] == expected


def test_the_flow_check_catches_an_import_against_the_flow() -> None:
    """An import from method into report is what the flow test must refuse: check the rank logic on it."""
    rank = {name: i for i, name in enumerate(documented_flow())}
    assert rank[layer_of("rfcx_kit.report.markdown")] > rank[layer_of("rfcx_kit.method.cycle")]
    assert layer_of("rfcx_kit.app.demo") == "app" and layer_of("rfcx_kit.data.synth.scene") == "data"
    assert layer_of("rfcx_kit.resources") == "core"


# -- commands at the edge; one home for the species count -------------------------------------------------------

def click_commands(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, name)`` of every function a click decorator makes a command or group: ``@click.command``,
    ``@click.group``, ``@group.command(...)``, ``@group.group(...)``."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for decorator in node.decorator_list:
            call = decorator.func if isinstance(decorator, ast.Call) else decorator
            if isinstance(call, ast.Attribute) and call.attr in ("command", "group"):
                found.append((node.lineno, node.name))
                break
    return found


def test_no_module_below_the_app_layer_defines_a_click_command() -> None:
    """The commands live in the app layer (``rfcx_kit/app/``, ``cli.py``, ``commands.py``, ``demo.py``); the
    library below takes arguments and returns data."""
    below = [f"{path.relative_to(REPO)}:{line}: {name}" for path in modules()
             if layer_of(module_name(path)) != "app" for line, name in click_commands(ast.parse(path.read_text()))]
    assert not below, "click commands below the app layer:\n" + "\n".join(below)


SPECIES_HOME = PACKAGE / "core" / "species.py"


def species_count_uses(path: Path, source: str | None = None) -> list[str]:
    """Uses of ``N_SPECIES`` and integer literals 24 (the competition's species count) in a module's code
    (docstrings and comments are text, not code)."""
    tree = ast.parse(path.read_text() if source is None else source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "N_SPECIES":
            found.append(f"{node.lineno}: N_SPECIES")
        elif isinstance(node, ast.alias) and node.name == "N_SPECIES":
            found.append("import N_SPECIES")
        elif isinstance(node, ast.Constant) and type(node.value) is int and node.value == 24:
            found.append(f"{node.lineno}: 24")
    return found


def test_the_species_count_is_spelled_only_in_the_species_table_module() -> None:
    """Every other module takes K from the data's species table (or the array in hand)."""
    found = [f"{path.relative_to(REPO)}:{use}" for path in modules() if path != SPECIES_HOME
             for use in species_count_uses(path)]
    assert not found, "the species count spelled outside core/species.py:\n" + "\n".join(found)
    assert species_count_uses(SPECIES_HOME)  # and the home does hold it


@pytest.mark.parametrize("source, expected", [
    ("import click\n@click.command('x')\ndef x_cmd():\n    pass\n", [(3, "x_cmd")]),
    ("import click\n@click.group('g')\ndef g():\n    pass\n@g.command('y')\ndef y():\n    pass\n", [(3, "g"), (6, "y")]),
    ("import click\ndef helper():\n    click.echo('hi')\n", []),
])
def test_the_command_check_catches_what_it_should(source: str, expected: list[tuple[int, str]]) -> None:
    assert click_commands(ast.parse(source)) == expected


@pytest.mark.parametrize("source, expected", [
    ("from rfcx_kit.core.species import N_SPECIES\nx = N_SPECIES\n", ["import N_SPECIES", "2: N_SPECIES"]),
    ("import numpy as np\nout = np.zeros((3, 24))\n", ["2: 24"]),
    ('"""24 species"""\nx = 24.0  # a float, not a count\n', []),
])
def test_the_species_count_check_catches_what_it_should(source: str, expected: list[str]) -> None:
    assert species_count_uses(PACKAGE / "method" / "probe.py", source) == expected


OUTSIDE = re.compile(r"\.\./shared|\bnotes/[\w-]+\.md|reference/method-post\.md|data/rfcx/external")


def test_no_docstring_or_comment_points_outside_the_repository() -> None:
    """A user's clone has no ``../shared``: the package and pyproject name only files a clone has."""
    files = [*sorted(PACKAGE.rglob("*.py")), REPO / "pyproject.toml"]
    hits = [f"{path.relative_to(REPO)}:{n}: {line.strip()}" for path in files
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if OUTSIDE.search(line)]
    assert not hits, "pointers to files outside the repository:\n" + "\n".join(hits)
    assert OUTSIDE.search("see ../shared/notes/rfcx.md") and OUTSIDE.search("(notes/kaggle-api.md)")


def test_click_is_imported_only_in_the_app_layer() -> None:
    """The library below the app layer raises errors and returns values; only commands speak click."""
    found = []
    for path in modules():
        if layer_of(module_name(path)) == "app":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(REPO)}:{node.lineno}" for n in names if n.split(".")[0] == "click"]
    assert not found, found


GRID_NUMBERS = (512, 49, 3751, 32000, 48000)  # hop and window, cover, 60 s of frames, the feature and audio rates


def test_the_grid_numbers_are_spelled_only_in_core_grid() -> None:
    """Every default of the grid comes from core/grid.py's names (SAMPLE_RATE, HOP_LENGTH, WINDOW, COVER,
    RECORDING_RATE, POOL). Not counted: the bounds of config.py's _RANGES (n_mels at most 512 is a limit, not the
    grid)."""
    found = []
    for path in modules():
        if path == PACKAGE / "core" / "grid.py":
            continue
        tree = ast.parse(path.read_text())
        bounds = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and any(
                    isinstance(t, ast.Name) and t.id == "_RANGES"
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target])):
                bounds |= {id(n) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.value in GRID_NUMBERS
                    and id(node) not in bounds):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value}")
    assert not found, found


def _string_tuples(tree: ast.AST) -> list[frozenset[str]]:
    """Every tuple or list of two or more string literals in a module (constants, CHOICES' values, ...)."""
    return [frozenset(e.value for e in node.elts) for node in ast.walk(tree)
            if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) >= 2
            and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts)]


def choice_repeats(app_source: str, library: set[frozenset[str]]) -> list[tuple[int, list[str]]]:
    """(line, values) of each ``click.Choice([...])`` whose literal values are a set the library already spells."""
    out = []
    for node in ast.walk(ast.parse(app_source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Choice"
                and node.args and isinstance(node.args[0], (ast.List, ast.Tuple))):
            values = [e.value for e in node.args[0].elts if isinstance(e, ast.Constant)]
            if frozenset(values) in library:
                out.append((node.lineno, values))
    return out


def test_command_choices_come_from_the_library_constants() -> None:
    """An option whose values the library already lists (a config key's CHOICES, BACKENDS, the synth profiles,
    the numerics modes, ...) takes that constant, so the two cannot drift apart."""
    library = {values for path in modules() if layer_of(module_name(path)) != "app"
               for values in _string_tuples(ast.parse(path.read_text()))}
    found = [f"{path.relative_to(REPO)}:{line}: {values}" for path in modules()
             if layer_of(module_name(path)) == "app" for line, values in choice_repeats(path.read_text(), library)]
    assert not found, found


def test_the_choice_check_catches_a_repeated_list() -> None:
    library = {frozenset({"loky", "dask"})}
    source = 'import click\nA = click.Choice(["dask", "loky"])\nB = click.Choice(BACKENDS)\nC = click.Choice(["x", "y"])\n'
    assert choice_repeats(source, library) == [(2, ["dask", "loky"])]
