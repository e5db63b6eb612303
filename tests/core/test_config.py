"""The typed config: post defaults, recipes of differences, --set overrides, unknown keys, saved round trip."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from rfcx_kit.core.config import Config, load_config, load_saved_config, parse_override
from rfcx_kit.core.errors import ConfigError
from rfcx_kit.core.grid import Grid, frames_of, rfcx_grid

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "pipelines" / "method-post-resnet18.yaml"


def test_defaults_reproduce_the_method_post():
    """Without a recipe the config is the post's stage 1: 512-frame windows with 49 frames of cover,
    the ImageNet resnet18 it started from, Adam at 1e-3, cosine schedule, 50 epochs, framewise prediction, and the
    competition's common log-mel parameters (32 kHz, n_fft 2048, hop 512, 128 mels, 20-16000 Hz, 3751 frames per 60 s)."""
    cfg = load_config()
    assert (cfg.windows.window, cfg.windows.cover, cfg.windows.n_windows) == (512, 49, None)
    assert cfg.model.backbone == "resnet18.tv_in1k" and cfg.model.pretrained  # not random weights
    assert cfg.train.optimizer == "adam" and cfg.train.lr == 1e-3
    assert cfg.train.scheduler == "cosine" and cfg.train.epochs == 50
    assert cfg.predict.mode == "framewise"
    f = cfg.features
    assert (f.sample_rate, f.n_fft, f.hop_length, f.n_mels, f.fmin, f.fmax) == (32000, 2048, 512, 128, 20.0, 16000.0)
    # each recording at its own length: the competition's 60 s give the post's 3751 frames
    assert (f.power, f.ref, f.amin, f.top_db, f.seconds) == (2.0, 1.0, 1e-10, 80.0, None)
    assert f.frames is None and Grid.of(cfg, frames_of(60.0, f.sample_rate, f.hop_length)).frames == 3751
    assert rfcx_grid().frames == 3751 and rfcx_grid().positions[-1] == [3241, 3753]
    assert cfg == Config()


def test_shipped_recipe_loads_and_only_names_differences_or_post_values():
    """pipelines/method-post-resnet18.yaml loads without error, takes its name, sets the 3 relabel cycles
    with fold voting, and everything it does not name keeps the default."""
    cfg = load_config(RECIPE)
    assert cfg.name == "method-post-resnet18"
    # the post's resnet18 from torchvision's ImageNet weights, through the hub (README: pretrained weights)
    assert cfg.model.backbone == "resnet18.tv_in1k" and cfg.model.pretrained
    assert (cfg.windows.window, cfg.windows.cover) == (512, 49)
    assert (cfg.train.folds, cfg.train.epochs, cfg.train.lr) == (5, 50, 1e-3)
    assert (cfg.relabel.cycles, cfg.relabel.source, cfg.relabel.votes, cfg.relabel.threshold) == (3, "vote", 3, 0.5)
    # Everything the recipe leaves out is the default.
    data = yaml.safe_load(RECIPE.read_text())
    defaults = asdict(Config())
    for section, values in asdict(cfg).items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if key not in (data.get(section) or {}):
                assert value == defaults[section][key], f"{section}.{key} changed without being in the recipe"


def test_recipe_holds_only_differences(tmp_path):
    """A recipe naming two keys changes exactly those two; its file stem becomes the run name."""
    recipe = tmp_path / "short-run.yaml"
    recipe.write_text("train:\n  epochs: 3\nwindows:\n  cover: 256\n")
    cfg = load_config(recipe)
    expected = Config()
    expected.name = "short-run"
    expected.train.epochs = 3
    expected.windows.cover = 256
    assert cfg == expected


def test_set_overrides_a_recipe_and_is_type_checked(tmp_path):
    """--set wins over the recipe, values are parsed as YAML and converted to the field's type
    (int 1 -> float for lr, 1e-3 without a dot is a number, null for an optional field)."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  epochs: 3\n")
    cfg = load_config(recipe, ["train.epochs=7", "train.lr=1", "relabel.lr=3e-4", "windows.cover=null",
                               "windows.n_windows=8", "model.pretrained=true", "relabel.species_thresholds={3: 0.4}"])
    assert cfg.train.epochs == 7
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.relabel.lr == pytest.approx(3e-4) and isinstance(cfg.relabel.lr, float)
    assert cfg.windows.cover is None and cfg.windows.n_windows == 8
    assert cfg.model.pretrained is True
    assert cfg.relabel.species_thresholds == {3: 0.4}


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.epochs=three", "train.epochs"),
        ("train.epochs=2.5", "train.epochs"),
        ("train.lr=fast", "train.lr"),
        ("train.amp=3", "train.amp"),
        ("model.backbone=18", "model.backbone"),
        ("train=5", "train"),
        ("train.optimizer=rmsprop", "train.optimizer"),
    ],
)
def test_set_with_a_wrong_type_or_value_is_an_error_naming_the_key(override, key):
    """A value of the wrong type (or outside the allowed choices) is a ConfigError that names the key."""
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


@pytest.mark.parametrize(
    "override, key",
    [("train.epochz=3", "train.epochz"), ("trian.epochs=3", "trian"), ("windows.size=256", "windows.size"),
     ("colour=red", "colour")],
)
def test_unknown_key_or_section_in_set_is_an_error_naming_it(override, key):
    """A typo in --set never passes silently: the error names the unknown key (with its section)."""
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'"):
        load_config(None, [override])


def test_unknown_key_in_a_recipe_names_the_file_and_the_key(tmp_path):
    """An unknown key inside a recipe section is refused; the message names the recipe and 'train.epoch'."""
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(recipe)
    assert str(recipe) in str(info.value) and "'train.epoch'" in str(info.value)
    recipe.write_text("trainer:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="'trainer'"):
        load_config(recipe)


def test_override_without_equals_sign_is_refused():
    """`--set train.epochs` (no value) is an error, not a silent no-op."""
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("train.epochs")


def test_saved_resolved_config_round_trips(tmp_path):
    """Config.save writes YAML that load_saved_config rebuilds into an equal Config (types included)."""
    cfg = load_config(RECIPE, ["train.epochs=3", "features.top_db=null", "relabel.species_thresholds={3: 0.25}",
                               "windows.test_cover=256", "model.weights=/tmp/w.pt"])
    path = tmp_path / "run" / "config.yaml"
    cfg.save(path)
    back = load_saved_config(path)
    assert back == cfg
    assert back.relabel.species_thresholds == {3: 0.25}
    assert back.features.top_db is None and back.windows.test_cover == 256
    assert not [p for p in path.parent.iterdir() if p.name != "config.yaml"], "a temporary file was left behind"


def test_saved_config_with_unknown_key_is_refused(tmp_path):
    """A saved config from another version with a key this one does not know is refused, naming the key."""
    path = tmp_path / "config.yaml"
    Config().save(path)
    data = yaml.safe_load(path.read_text())
    data["train"]["magic"] = 1
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="'train.magic'"):
        load_saved_config(path)


@pytest.mark.parametrize("recipe", sorted((REPO / "pipelines").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads(recipe: Path) -> None:
    """A typo in any recipe under pipelines/ (unknown key, wrong type) fails here, not in a user's run."""
    cfg = load_config(recipe)
    assert cfg.name == recipe.stem


def test_the_votes_rule_applies_only_where_votes_are_used():
    """relabel.votes counts fold models agreeing (source: vote); out-of-fold pseudo-labels use none of them."""
    assert load_config(None, ["train.folds=2"]).relabel.votes == 3  # oof: the default votes are unused
    with pytest.raises(ConfigError, match=r"relabel.votes \(3\) exceeds train.folds \(2\) with relabel.source: vote"):
        load_config(None, ["train.folds=2", "relabel.source=vote"])
    assert load_config(None, ["train.folds=2", "relabel.source=vote", "relabel.votes=2"]).relabel.votes == 2


def test_the_keys_a_recipe_or_set_gives_are_remembered_and_fmax_waits_for_the_rate() -> None:
    from rfcx_kit.core.config import explicit_keys

    cfg = load_config("demo", ["train.epochs=3", "features.fmax=20000"])
    keys = explicit_keys(cfg)
    assert {"train.epochs", "features.fmax", "model.backbone", "features.n_mels"} <= keys
    assert "features.sample_rate" not in keys  # it will come from one's own recordings
    with pytest.raises(ConfigError, match="features.fmax"):  # a rate given: the rule holds at once
        load_config(None, ["features.sample_rate=32000", "features.fmax=20000"])
