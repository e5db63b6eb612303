"""One typed configuration for every stage, with defaults that reproduce the method post.

A recipe (``pipelines/*.yaml``) holds only what differs from these defaults; ``--set section.key=value``
overrides a recipe from the command line. Unknown sections or keys are an error naming the key, so a
typo never silently trains the wrong model. The resolved config is saved next to every output.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from rfcx_kit.core.errors import ConfigError
from rfcx_kit.core.grid import COVER, HOP_LENGTH, SAMPLE_RATE, WINDOW
from rfcx_kit.core.io import atomic_write_text

__all__ = ["Config", "ConfigError", "load_config", "load_saved_config", "parse_override"]


@dataclass
class FeatureConfig:
    """Log-mel parameters (the competition's common front end): a 60 s recording becomes exactly 128 x 3751 (the grid: ``core/grid.py``)."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 2048
    hop_length: int = HOP_LENGTH
    n_mels: int = 128
    fmin: float = 20.0
    fmax: float = 16000.0
    power: float = 2.0
    top_db: float | None = 80.0
    amin: float = 1e-10
    ref: float = 1.0
    # None: each recording at its own length (a shorter one than a window is padded); a number: every recording
    # padded or cut to it (60: the competition's recordings, which are all 60 s).
    seconds: float | None = None
    # A recording longer than this is cut to it, a shorter one kept at its own length (None: none cut). BirdCLEF's
    # focal clips run to half an hour: the first minute holds the labelled call as often as not, and a run's window
    # arrays are as wide as its longest recording.
    max_seconds: float | None = None
    dtype: str = "float16"  # cache dtype; float16 rounds dB values of -128..-64 to within 0.031 dB
    # Recordings per torch STFT call. 1 is fastest on CPU: an 8-recording STFT (8 x 1025 x 3751 complex) falls
    # out of cache and costs 184 ms per recording against 84 ms alone (benchmarks/RESULTS.md); raise it on GPU.
    batch_size: int = 1
    n_jobs: int = -1  # joblib workers over files (-1: all cores)

    @property
    def frames(self) -> int | None:
        """Centred frames of a ``seconds``-long recording: 1 + samples // hop (3751 for 60 s); None when each
        recording keeps its own length."""
        if self.seconds is None:
            return None
        return 1 + int(round(self.seconds * self.sample_rate)) // self.hop_length


@dataclass
class WindowConfig:
    """Sliding windows over the frame axis (the post: 8 x 512 frames with 49 frames of cover).

    Give either ``cover`` (frames shared by neighbouring windows) or ``n_windows``; the test-time layout
    may differ (``test_cover``/``test_n_windows``; ``None`` means the same as training).
    """

    window: int = WINDOW
    cover: int | None = COVER
    n_windows: int | None = None
    test_cover: int | None = None
    test_n_windows: int | None = None


@dataclass
class ModelConfig:
    """SED model: a timm backbone without pooling, mean over frequency, frame and attention heads."""

    # The post's start: torchvision's original ImageNet resnet18 (timm's tag tv_in1k; plain `resnet18` is now timm's
    # later a1_in1k weights). A run without a recipe starts where the post started, not from random weights.
    backbone: str = "resnet18.tv_in1k"
    # true: timm's pretrained weights of the backbone's tag through the Hugging Face hub cache (HF_HUB_OFFLINE=1:
    # the cache only, refused before anything is written when they are not there; `rfcx-kit weights fetch`
    # downloads ahead). false: random weights (the demo's tiny backbone, trained from scratch).
    pretrained: bool = True
    weights: str | None = None  # a local weights file (safetensors or state dict) instead of the hub
    in_channels: int = 3  # 3: the post's standardise -> 3-channel image; 1: a plain 1-channel input
    normalize: str = "post"  # "post" (standardise, min-max, ImageNet mean/std) or "standardize"
    n_species: int | None = None  # None: the data's species table (species.csv, or inferred); a number must match it
    dropout: float = 0.2


@dataclass
class TrainConfig:
    """Fold training. Defaults are the post's stage 1: Adam 1e-3, cosine, 50 epochs."""

    # the figure that picks each fold's epoch and the kept stage: a name in core/metrics/registry.py (lwlrap, macro_ap, roc_auc, padded_cmap)
    metric: str = "lwlrap"
    folds: int = 5
    seed: int = 42
    epochs: int = 50
    batch_size: int = 16  # windows per step (the post: 2 recordings x 8 windows)
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | adamw | sgd
    scheduler: str = "cosine"  # cosine | constant
    warmup_epochs: int = 0
    loss: str = "clipwise_bce"  # clipwise_bce (the post's stage 1) | masked (TP->1, FP->0, rest ignored)
    pos_weight: float = 1.0  # weight of positive targets in the masked loss
    # Loss weight of an implicit negative: a species nobody labelled in a crop (clipwise BCE). 1.0 is the post.
    unlabeled_weight: float = 1.0
    sampling: str = "tp_crops"  # tp_crops (crops around TP boxes + FP windows) | all_windows
    fp_per_tp: float = 1.0  # FP windows drawn per TP crop in an epoch
    crop_jitter: bool = True  # random offset of the TP box inside its crop
    steps_per_epoch: int | None = None  # None: one pass over the sampled windows
    # Build the next batch's input in a background thread while the step runs. None: on with CUDA (the CPU
    # is idle while the GPU computes); off on CPU, where the thread competes with the step for the same cores
    # (2 cores, mobilenetv3_small_050, two benchmark runs of alternating pairs: 86-93 windows/s with the thread vs
    # 89-97 inline, the thread slower in every pair; benchmarks/RESULTS.md).
    prefetch: bool | None = None
    amp: bool = True  # mixed precision (CUDA only)
    # NHWC activations: oneDNN's fastest convolutions on CPU too (the demo model's step 1.3x faster,
    # benchmarks/bench_step.py), and what CUDA's tensor cores want.
    channels_last: bool = True
    # The fused optimizer step (one kernel over all parameters, torch >= 2.4 on CPU) instead of foreach's many small
    # ones; portable numerics always use it (its own scalar sqrt gives the same floats on every CPU).
    fused_optimizer: bool = True
    compile: bool = False  # torch.compile (CUDA only)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    val_every: int = 1
    threads: int | None = None  # torch CPU threads (None: torch's default)
    # An exponential moving average of the weights (timm's ModelEmaV3), updated every step; when set, the
    # average is what is validated, kept as best.pt and predicted with. None: off (the post).
    ema_decay: float | None = None
    # Which weights a fold keeps as best.pt: best (the epoch with the best validation LWLRAP, as the post: the
    # held-out fold then chooses the checkpoint it is scored with, so the CV is optimistic; the report says so)
    # or last (the final epoch's: the held-out fold only scores, an unbiased CV).
    select: str = "best"
    # Experiment trackers fed per epoch (loss, LR, val LWLRAP per fold and stage) and per stage (config,
    # provenance, CV table): any of tensorboard, mlflow, wandb, each through its own library (optional extras).
    log_to: list[str] = field(default_factory=list)


@dataclass
class AugmentConfig:
    """Training-time augmentation of each batch; all off by default (the post augments only by the crop offset).

    Every draw comes from a generator seeded by (seed, fold, stage, epoch, batch): the same seed gives the same
    batches, and a resumed epoch the same ones as an uninterrupted run.
    """

    time_masks: int = 0  # SpecAugment: masks per crop along time, each 0..time_mask_frames frames wide
    time_mask_frames: int = 40  # 40 frames = 0.64 s
    freq_masks: int = 0  # masks per crop along the mel axis, each 0..freq_mask_bins bins high
    freq_mask_bins: int = 16
    gain_db: float = 0.0  # each crop's level moved by U(-gain_db, gain_db) dB against its recording's statistics
    noise: float = 0.0  # share of crops that get white noise added (in the power domain)
    noise_db: float = -30.0  # that noise's level, dB relative to the loudest bin of the recording
    mixup: float = 0.0  # share of crops mixed with another crop of the batch
    mixup_alpha: float = 0.4  # the mixing weight's Beta(alpha, alpha)
    # input: mix the (normalised) spectrograms; features: mix the pooled sequence before the heads (the post's
    # final-stage "last-layer mixup"). Either way the mixed crop holds both crops' calls: union targets.
    mixup_at: str = "input"

    @property
    def active(self) -> bool:
        return bool(self.time_masks or self.freq_masks or self.gain_db or self.noise or self.mixup)


@dataclass
class PredictConfig:
    """Soft frame-wise prediction: framewise sigmoid, max over time, max over windows."""

    mode: str = "framewise"  # framewise | clipwise | stitched
    batch_recordings: int = 8
    # Windows per forward (the memory budget). None: 128 on CUDA, where batching is what fills the device; on
    # CPU as many as keep the largest activation within a quarter of the last-level cache (resnet18: 2,
    # mobilenetv3_small_050: 8 with 32 MiB), since bigger forwards run slower per window there
    # (predict.auto_max_windows, benchmarks/RESULTS.md).
    max_windows: int | None = None
    threshold: float = 0.5  # for precision / recall in reports


@dataclass
class RelabelConfig:
    """Cycle re-labeling (the post's stage 2)."""

    cycles: int = 3
    source: str = "oof"  # oof (out-of-fold) | vote (all fold models, >= votes of n above threshold)
    threshold: float = 0.5
    votes: int = 3
    species_thresholds: dict[int, float] = field(default_factory=dict)
    pseudo_weight: float = 1.0  # 1.0 hard pseudo-positives; e.g. 0.5 soft
    init: str = "previous"  # previous | stage1 | scratch
    epochs: int | None = None  # None: train.epochs
    lr: float | None = None  # None: train.lr
    windows_per_epoch: int | None = None  # samples per cycle epoch (None: as stage 1's epochs)
    # fixed: `threshold` for every species (the post); tp_quantile: per species, the `tp_quantile` of the
    # previous stage's peak scores inside its own TP boxes, never below `threshold` (follows calibration drift)
    threshold_rule: str = "tp_quantile"
    tp_quantile: float = 0.5
    # At most this many pseudo-positive boxes per TP box of a species, the highest-scoring kept (None: no
    # cap). Bounds every cycle's labels by the verified ones: the loop cannot run away.
    max_pseudo_per_tp: float | None = 3.0
    early_stop: bool = False
    early_stop_metric: str = "cv"  # cv: CV LWLRAP on the original labels (the loop never decides on the truth)
    # A window's score for the votes: clipwise (the sigmoid of its attention-pooled output, what the post's
    # re-labeling notebook used) | framewise (the max of its framewise sigmoid, the soft frame-wise rule)
    window_score: str = "clipwise"
    # Soft pseudo-labelled windows (the self-training of RFCX's 2nd place and the BirdCLEF winners): this share of
    # each cycle epoch's crops is replaced by fixed windows of the fold's training recordings, drawn at random, whose
    # unknown cells carry the teacher's probability raised to soft_power (TP windows 1, FP windows 0). Where the
    # hard pseudo-positives take the few windows the teacher is sure of, these take every call it half-finds, and
    # unlabelled calls stop being taught as 0. 0: off. docs/method-notes.md, section 11.
    soft_share: float = 0.0
    soft_power: float = 1.0
    soft_teacher: str = "oof"  # oof: each recording's out-of-fold model; mean: the mean of every fold model
    # A teacher probability below this is taken as 0 (BirdCLEF 2025's 2nd place: 0.1): the long tail of small
    # probabilities over every absent species is noise a student would learn as "a little present".
    soft_floor: float = 0.0
    # Which recordings' windows are pseudo-labelled: all (the train recordings, RFCX) or unlabelled (those without
    # any label: BirdCLEF's soundscapes, the domain the focal clips do not cover).
    soft_from: str = "all"
    # How the pseudo-labelled windows join an epoch: swap (they take soft_share of its items, each trained on
    # alone) or mixup (the same, and every labelled crop of a batch is mixed 50/50 with one of the batch's
    # pseudo-labelled windows, union targets: BirdCLEF 2025's winner's injection).
    soft_inject: str = "swap"
    # Pseudo-label the test recordings too (their audio is given, as RFCX's was): the same fold votes, thresholds and
    # peak boxes on every fold model's test windows, at most max_pseudo_per_tp x (test / train recordings) per TP box
    # of a species; every fold then trains on those test crops beside its train crops. Needs source: vote.
    test_pseudo: bool = False
    # Where a cycle's crops lie: true, around the TP/FP boxes and the pseudo-positive boxes (pseudo-positives take
    # a share of each epoch); false, around the TP/FP boxes only, as the control draws them, with every crop's
    # targets read from the boxes the cycle has (a pseudo-positive box inside a crop turns its implicit 0 into a
    # 1): same crops, new labels. docs/method-notes.md, section 13.
    pseudo_crops: bool = True
    select: str = "cv"  # the stage the loop keeps: cv (best CV LWLRAP on the original labels) | last


@dataclass
class DataConfig:
    """How a data folder is read (``data/layouts/``): which layout, and the choices a BirdCLEF folder offers.

    The defaults read every layout as it is; a folder of RFCX or one's own recordings ignores the BirdCLEF keys.
    """

    layout: str = "auto"  # auto: the first registered layout that recognises the folder; else a layout's name
    # BirdCLEF's focal clips carry weak clip labels: the primary species is a positive of target 1 over the whole
    # clip; a listed secondary species a positive of this target (0.5: half sure; 1: as the primary), or left out of
    # the loss (null: masked), since secondaries are incomplete and often faint.
    secondary_target: float | None = 0.5
    min_rating: float | None = None  # focal clips rated below this are left out (0 = unrated is kept); None: all
    max_per_species: int | None = None  # at most this many focal clips per primary species, best rated first
    # Near-duplicates (same primary label, author and length in whole seconds) share a fold, so no clip is scored
    # by a model that trained on its twin.
    group_duplicates: bool = True
    soundscapes: bool = True  # the unlabelled soundscapes are train recordings without labels (stage 1 predicts them)


@dataclass
class Config:
    """The whole resolved configuration of a run."""

    name: str = "method-post-resnet18"
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    relabel: RelabelConfig = field(default_factory=RelabelConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        """Write the resolved config as YAML (atomically)."""
        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert a YAML value against a dataclass field type; raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            return float(value)  # PyYAML (YAML 1.1) reads `1e-3` (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if origin is list:
        if isinstance(value, str):
            value = [value]  # `--set train.log_to=tensorboard`
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kt, vt = args
        return {_coerce(k, kt, f"{key}.{k}"): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    return value


def apply_overrides(obj: Any, updates: dict[str, Any], prefix: str = "") -> None:
    """Apply a nested mapping of updates to a dataclass instance, refusing unknown keys."""
    hints = typing.get_type_hints(type(obj))
    known = {f.name for f in fields(obj)}
    for key, value in updates.items():
        full = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(f"unknown config key '{full}' (known: {', '.join(sorted(known))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{full}: expected a section (mapping), got {value!r}")
            apply_overrides(current, value, prefix=f"{full}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], full))


def parse_override(text: str) -> dict[str, Any]:
    """``"train.epochs=3"`` -> ``{"train": {"epochs": 3}}`` (the value is parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    path, raw = text.split("=", 1)
    parts = path.strip().split(".")
    if not path.strip() or any(not p.strip() for p in parts):
        raise ConfigError(f"override {text!r}: the key must be section.key (e.g. train.epochs=3)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: {path.strip()}: the value is not valid YAML "
                          f"({' '.join(str(exc).split())[:200]})") from None
    nested: dict[str, Any] = {}
    cursor = nested
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):  # noqa: D102 - PyYAML's hook
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} at line {line} (first at line {seen[key]})",
                    key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """A YAML file's content with every key unique; a duplicate is a ConfigError naming the key and its lines."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.constructor.ConstructorError as exc:
        raise ConfigError(f"{path}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())[:300]}") from None


def _keys(updates: dict[str, Any], prefix: str = "") -> set[str]:
    """``{"train": {"epochs": 3}}`` -> ``{"train.epochs"}`` (the leaves a mapping of updates sets)."""
    keys = set()
    for key, value in updates.items():
        if isinstance(value, dict) and prefix.count(".") < 1:
            keys |= _keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def explicit_keys(cfg: Config) -> frozenset[str]:
    """The ``section.key`` names a recipe or ``--set`` gave (empty for a saved or default config): the rest may
    still come from the data (``features.sample_rate`` and ``fmax`` of one's own recordings)."""
    return getattr(cfg, "_explicit", frozenset())


def load_config(recipe: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the recipe's differences, then ``--set`` overrides; validated and typed.

    The keys they set are remembered (:func:`explicit_keys`): a data folder of one's own recordings gives the
    sample rate and top frequency the others leave open (``method/preflight.resolve_features``).
    """
    cfg = Config()
    explicit: set[str] = set()
    if recipe is not None:
        from rfcx_kit.core.recipes import resolve_recipe

        path = resolve_recipe(recipe)  # a file, or a shipped recipe's name (demo, pipelines/demo.yaml)
        try:
            data = read_yaml(path) or {}
        except ConfigError as exc:
            raise ConfigError(f"recipe {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"recipe {path} must be a mapping of sections")
        explicit |= _keys(data)
        try:
            apply_overrides(cfg, data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        if "name" not in data:
            cfg.name = path.stem
    for text in overrides:
        update = parse_override(text)
        explicit |= _keys(update)
        apply_overrides(cfg, update)
    if "features.fmax" not in explicit:  # a lower rate given alone: the bands stop at its Nyquist
        cfg.features.fmax = min(cfg.features.fmax, cfg.features.sample_rate / 2)
    # an fmax above the default rate's Nyquist is judged once the rate is known (from the data, unless set)
    validate_config(cfg, rate_known="features.sample_rate" in explicit or "features.fmax" not in explicit)
    object.__setattr__(cfg, "_explicit", frozenset(explicit))
    return cfg


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config saved with :meth:`Config.save` (e.g. a run directory's config.yaml)."""
    cfg = Config()
    apply_overrides(cfg, data)
    validate_config(cfg)
    return cfg


def load_saved_config(path: str | Path) -> Config:
    """A run's saved config.yaml; a file that is not a YAML mapping of sections is a ConfigError naming it."""
    path = Path(path)
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a config (a mapping of sections), got {type(data).__name__}")
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# Every text key's values: the config check, and the command options that set one (app/), read them here.
CHOICES = {
    "model.normalize": ("post", "standardize"),
    "train.optimizer": ("adam", "adamw", "sgd"),
    "train.scheduler": ("cosine", "constant"),
    "train.loss": ("clipwise_bce", "masked"),
    "train.sampling": ("tp_crops", "all_windows"),
    "predict.mode": ("framewise", "clipwise", "stitched"),
    "relabel.source": ("oof", "vote"),
    "relabel.threshold_rule": ("fixed", "tp_quantile"),
    "relabel.init": ("previous", "stage1", "scratch"),
    "relabel.early_stop_metric": ("cv",),
    "relabel.window_score": ("framewise", "clipwise"),
    "relabel.select": ("cv", "last"),
    "relabel.soft_teacher": ("oof", "mean"),
    "relabel.soft_from": ("all", "unlabelled"),
    "relabel.soft_inject": ("swap", "mixup"),
    "train.select": ("best", "last"),
    "train.log_to": ("tensorboard", "mlflow", "wandb"),
    "augment.mixup_at": ("input", "features"),
}
BACKENDS = ("loky", "dask")  # where folds run (method/folds.py): local processes, or a Dask cluster


# Ranges of every number in the config: (low, high, low inclusive, high inclusive); None = unbounded. Floats
# must also be finite. A value out of range is refused before anything is written (one line naming the key).
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "data.secondary_target": (0, 1, True, True),
    "data.min_rating": (None, None, True, True),
    "data.max_per_species": (1, None, True, True),
    "features.sample_rate": (1000, 384000, True, True),
    "features.n_fft": (16, None, True, True),
    "features.hop_length": (1, None, True, True),
    "features.n_mels": (1, 512, True, True),
    "features.fmin": (0, None, True, True),
    "features.fmax": (0, None, False, True),
    "features.power": (0, None, False, True),
    "features.top_db": (0, None, False, True),
    "features.amin": (0, None, False, True),
    "features.ref": (0, None, False, True),
    "features.seconds": (0, 3600, False, True),
    "features.max_seconds": (0, 86400, False, True),
    "features.batch_size": (1, None, True, True),
    "windows.window": (1, None, True, True),
    "windows.cover": (0, None, True, True),
    "windows.n_windows": (1, None, True, True),
    "windows.test_cover": (0, None, True, True),
    "windows.test_n_windows": (1, None, True, True),
    "model.n_species": (1, None, True, True),
    "model.dropout": (0, 1, True, False),
    "train.folds": (2, None, True, True),
    "train.seed": (0, 2**32 - 1, True, True),
    "train.epochs": (1, None, True, True),
    "train.batch_size": (1, None, True, True),
    "train.lr": (0, 10, False, True),  # past 10 every optimizer here diverges at the first step
    "train.weight_decay": (0, None, True, True),
    "train.warmup_epochs": (0, None, True, True),
    "train.pos_weight": (0, None, False, True),
    "train.unlabeled_weight": (0, 1, True, True),
    "train.fp_per_tp": (0, None, True, True),
    "train.steps_per_epoch": (1, None, True, True),
    "train.val_every": (1, None, True, True),
    "train.threads": (1, None, True, True),
    "train.ema_decay": (0, 1, False, False),
    "augment.time_masks": (0, 16, True, True),
    "augment.time_mask_frames": (1, None, True, True),
    "augment.freq_masks": (0, 16, True, True),
    "augment.freq_mask_bins": (1, None, True, True),
    "augment.gain_db": (0, 60, True, True),
    "augment.noise": (0, 1, True, True),
    "augment.noise_db": (-120, 0, True, True),
    "augment.mixup": (0, 1, True, True),
    "augment.mixup_alpha": (0, None, False, True),
    "predict.batch_recordings": (1, None, True, True),
    "predict.max_windows": (1, None, True, True),
    "predict.threshold": (0, 1, True, True),
    "relabel.cycles": (0, None, True, True),
    "relabel.threshold": (0, 1, True, True),
    "relabel.votes": (1, None, True, True),
    "relabel.pseudo_weight": (0, 1, False, True),
    "relabel.epochs": (1, None, True, True),
    "relabel.lr": (0, 10, False, True),
    "relabel.windows_per_epoch": (1, None, True, True),
    "relabel.tp_quantile": (0, 1, True, True),
    "relabel.max_pseudo_per_tp": (0, None, True, True),
    "relabel.soft_share": (0, 1, True, False),
    "relabel.soft_power": (0, 10, False, True),
    "relabel.soft_floor": (0, 1, True, False),
}

_DTYPES = ("float16", "float32")
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


INT_LIMIT = 2**32 - 1  # the largest integer a setting may hold (a seed's range)


def _check_range(key: str, value: Any) -> None:
    if value is None:
        return  # Optional keys: None means "as the default rule says" (types already allow it or not)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value}")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT:
        # one rule for every count: past it numpy, torch and the fold splitter overflow deep inside a run
        raise ConfigError(f"{key}: {value} is too large (at most {INT_LIMIT})")
    low, high, low_in, high_in = _RANGES[key]
    bad_low = low is not None and (value < low if low_in else value <= low)
    bad_high = high is not None and (value > high if high_in else value >= high)
    if bad_low or bad_high:
        left = "[" if low_in else "("
        right = "]" if high_in else ")"
        span = f"{left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{right}"
        raise ConfigError(f"{key}: must be in {span}, got {value}")


def validate_config(cfg: Config, rate_known: bool = True) -> None:
    """Value checks that types alone cannot express: every number's range, every choice, cross-key rules.

    ``rate_known=False``: ``features.fmax`` is not yet checked against the sample rate (it comes from the data)."""
    for key in _RANGES:
        section, name = key.split(".")
        _check_range(key, getattr(getattr(cfg, section), name))
    from rfcx_kit.core.metrics.registry import get_metric  # numpy: only once a config is checked

    get_metric(cfg.train.metric)
    f = cfg.features
    if f.dtype not in _DTYPES:
        raise ConfigError(f"features.dtype: {f.dtype!r} is not one of {', '.join(_DTYPES)}")
    if f.n_jobs == 0 or f.n_jobs < -1:
        raise ConfigError(f"features.n_jobs: must be -1 (all cores) or >= 1, got {f.n_jobs}")
    if not f.fmin < f.fmax <= (f.sample_rate / 2 if rate_known else float("inf")):
        raise ConfigError(f"features.fmax: must be above features.fmin ({f.fmin:g}) and at most half the sample rate "
                          f"({f.sample_rate / 2:g}), got {f.fmax:g}")
    if f.frames is not None and f.frames < cfg.windows.window:
        raise ConfigError(f"features.seconds: {f.seconds:g} s gives {f.frames} frames, fewer than one window "
                          f"(windows.window={cfg.windows.window})")
    if not _DEVICE.match(cfg.train.device):
        raise ConfigError(f"train.device: {cfg.train.device!r} is not auto, cpu, cuda or cuda:N")
    if cfg.train.warmup_epochs >= cfg.train.epochs and cfg.train.warmup_epochs:
        raise ConfigError(f"train.warmup_epochs: must be below train.epochs ({cfg.train.epochs}), "
                          f"got {cfg.train.warmup_epochs}")
    if not cfg.model.backbone.strip():
        raise ConfigError("model.backbone: empty")
    for key, choices in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        for item in value if isinstance(value, list) else [value]:  # a list field: each of its items
            if item not in choices:
                raise ConfigError(f"{key}: {item!r} is not one of {', '.join(choices)}")
        if isinstance(value, list) and len(set(value)) < len(value):
            raise ConfigError(f"{key}: {value} names an entry twice")
    w = cfg.windows
    if w.cover is None and w.n_windows is None:
        raise ConfigError("windows: give cover or n_windows")
    if w.cover is not None and w.cover >= w.window:  # >= 0 is _RANGES'
        raise ConfigError(f"windows.cover must be in [0, window={w.window}), got {w.cover}")
    if w.test_cover is not None and not 0 <= w.test_cover < w.window:
        raise ConfigError(f"windows.test_cover must be in [0, window={w.window}), got {w.test_cover}")
    a = cfg.augment
    if a.time_masks and a.time_mask_frames > cfg.windows.window:
        raise ConfigError(f"augment.time_mask_frames: at most windows.window ({cfg.windows.window}), got {a.time_mask_frames}")
    if a.freq_masks and a.freq_mask_bins > cfg.features.n_mels:
        raise ConfigError(f"augment.freq_mask_bins: at most features.n_mels ({cfg.features.n_mels}), got {a.freq_mask_bins}")
    if cfg.model.in_channels not in (1, 3):
        raise ConfigError("model.in_channels must be 1 or 3")
    r = cfg.relabel
    for species, value in r.species_thresholds.items():
        top = cfg.model.n_species
        if not 0 <= species < (top if top is not None else species + 1) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"relabel.species_thresholds: {{{species}: {value}}} needs a species id"
                              + (f" 0..{top - 1}" if top is not None else " >= 0") + " and a threshold in [0, 1]")
    if cfg.relabel.test_pseudo and cfg.relabel.source != "vote":
        raise ConfigError("relabel.test_pseudo: the test recordings have no out-of-fold model; it needs relabel.source: vote")
    if cfg.relabel.source == "vote" and cfg.relabel.votes > cfg.train.folds:  # votes are unused with oof
        raise ConfigError(f"relabel.votes ({cfg.relabel.votes}) exceeds train.folds ({cfg.train.folds}) "
                          "with relabel.source: vote")
