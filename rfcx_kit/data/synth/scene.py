"""Plan a synthetic data set: who calls where, at what SNR, and which few calls carry a label.

The plan is small metadata (no audio): one row per planted sound in :attr:`Plan.events`. Audio is
rendered from it later, recording by recording (``writer.py``), so everything a CSV needs is known
before any audio exists and the labels cannot depend on how rendering is scheduled.

How it mirrors the real data (figures from the competition's train_tp.csv and train_fp.csv, scaled to ``n_train``):

* **Test presence** follows the estimated test prevalence of each species (s3 in ~92 % of recordings,
  ~3 species per recording); a present species calls ``1 + Poisson(rate * seconds / 60)`` times, at an
  in-band SNR drawn once per recording and species (its distance) within ``[snr_low, snr_high]``, +-3 dB
  per call, so some species are present only faintly. Confusers draw their SNR per sound.
* **Train roles**: of 4727 real train recordings 1132 have TP rows (1216 rows), 3958 have FP rows (7781
  rows) and 363 have both, so every recording has at least one row. The same fractions are used here.
* **TP rows** are spread over species in proportion to the real per-species TP counts (~50 each, s23 100,
  s17 68), with every species labelled at least once as soon as there are 24 TP rows (``n_train >= 94``).
  A TP row's species is made present in its recording, and one of its calls there (preferring louder
  ones) is labelled; every other call stays unlabelled, which is what re-labeling can discover.
* **FP rows** label *confusers* (``calls.confuser_pattern``: same band, other pattern), species drawn in
  proportion to the real FP counts and never a species with a TP row in the same recording. A labelled
  confuser never overlaps a call of its own species, so an FP box is a true negative. Unlabelled
  confusers appear everywhere (train and test) at the same overall rate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from rfcx_kit.core.errors import ConfigError
from rfcx_kit.core.grid import HOP_LENGTH, SAMPLE_RATE, SECONDS, frames_of
from rfcx_kit.core.species import species_table
from rfcx_kit.data.synth.calls import CALLS_PER_MINUTE, CONFUSER_KINDS, band_of, draw_duration, songtypes_of

SPLITS = ("train", "test")
# Random streams, so each decision has its own generator: (seed, split, recording + 1, stream[, event]).
STREAM_GLOBAL, STREAM_PLAN, STREAM_BACKGROUND, STREAM_CALL, STREAM_LABELS = 0, 1, 2, 3, 4

# The real train set (counted from the competition's train_tp.csv and train_fp.csv).
REAL_TRAIN = 4727
REAL_TP_RECORDINGS, REAL_TP_ROWS = 1132, 1216
REAL_FP_RECORDINGS, REAL_FP_ROWS = 3958, 7781
UNLABELLED_CONFUSERS = 0.5  # per recording, on top of the labelled ones
N_CALLERS = len(species_table())  # the competition's species, each with its call shape (calls.py)
MIN_SECONDS, MAX_SECONDS = 10.0, 60.0

EVENT_COLUMNS = ["split", "recording_id", "index", "event", "species_id", "songtype_id", "kind", "variant",
                 "t_min", "t_max", "f_min", "f_max", "snr_db", "labelled"]


@dataclass(frozen=True)
class SynthConfig:
    """What defines a synthetic data set: the same config always gives the same bytes."""

    n_train: int = 120
    n_test: int = 40
    seconds: float = 60.0
    seed: int = 0
    snr_low: float = -6.0
    snr_high: float = 12.0
    label_scale: float = 1.0
    # None: TP rows as RFCX's (per-species counts of the real train_tp, x label_scale). A share in (0, 1]: that
    # share of the planted train calls gets a TP row, drawn at random over all calls (louder ones more
    # likely), so common species get labels in proportion to how often they call.
    tp_share: float | None = None
    # The share of recordings each species calls in. None: RFCX's estimated test prevalence per species (s3 in
    # ~92 %, ~3 species per recording), where a constant ranking by frequency (the prior) already scores
    # ~0.75 LWLRAP; a number: every species alike, so the prior says little and a model must hear the calls.
    prevalence: float | None = None
    confusers: float = 1.0  # scales the unlabelled confusers (labelled FP confusers follow the label counts)
    # The npy format's log-mel grid: mel bins and hop at 32 kHz (128 and 512: Theo Viel's 128 x 3751 arrays).
    n_mels: int = 128
    hop_length: int = HOP_LENGTH
    profile: str = "rfcx"  # the preset these settings started from (PROFILES); recorded in truth/params.json

    def validate(self) -> None:
        if self.n_train < 1 or self.n_test < 1:
            raise ConfigError(f"synth: need at least 1 train and 1 test recording, got {self.n_train}, {self.n_test}")
        if not MIN_SECONDS <= self.seconds <= MAX_SECONDS:
            raise ConfigError(f"synth: --seconds must be in [{MIN_SECONDS:g}, {MAX_SECONDS:g}], got {self.seconds:g}")
        if not self.snr_low <= self.snr_high:
            raise ConfigError(f"synth: --snr LOW,HIGH needs LOW <= HIGH, got {self.snr_low:g},{self.snr_high:g}")
        if not 0 < self.label_scale <= 20:
            raise ConfigError(f"synth: --label-scale must be in (0, 20], got {self.label_scale:g}")
        if self.seed < 0:
            raise ConfigError(f"synth: --seed must be >= 0, got {self.seed}")
        if self.tp_share is not None and not 0 < self.tp_share <= 1:
            raise ConfigError(f"synth: --tp-share must be in (0, 1], got {self.tp_share:g}")
        if self.prevalence is not None and not 0 < self.prevalence <= 1:
            raise ConfigError(f"synth: --prevalence must be in (0, 1], got {self.prevalence:g}")
        if not 0 <= self.confusers <= 10:
            raise ConfigError(f"synth: --confusers must be in [0, 10], got {self.confusers:g}")
        if not 8 <= self.n_mels <= 256 or not 64 <= self.hop_length <= 4096:
            raise ConfigError(f"synth: the npy grid needs 8..256 mel bins and a hop of 64..4096 samples, got "
                              f"{self.n_mels} and {self.hop_length}")
        if self.profile not in PROFILES:
            raise ConfigError(f"synth: --profile must be one of {', '.join(PROFILES)}, got {self.profile!r}")

    @property
    def frames(self) -> int:
        """Frames of an npy array: 1 + 60 s of 32 kHz samples // hop (3751 at hop 512, 1876 at hop 1024)."""
        return frames_of(SECONDS, SAMPLE_RATE, self.hop_length)


# Presets of SynthConfig fields. `rfcx`: the competition's shape (the default; the GPU recipe's data). `demo`: a
# set a CPU can learn in minutes and where the labels, not the prior, are the limit (docs/method-notes.md,
# section 9): every species at one prevalence, louder calls, the demo's cheaper 64 x 1876 grid.
PROFILES: dict[str, dict] = {
    "rfcx": {},
    "demo": dict(prevalence=0.12, snr_low=6.0, snr_high=20.0, tp_share=0.125, n_mels=64, hop_length=1024),
}


def synth_config(profile: str = "rfcx", **settings) -> SynthConfig:
    """A :class:`SynthConfig` from a profile's preset, with ``settings`` (not None) taking precedence."""
    if profile not in PROFILES:
        raise ConfigError(f"synth: --profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    fields = {**PROFILES[profile], **{k: v for k, v in settings.items() if v is not None}, "profile": profile}
    return SynthConfig(**fields)


@dataclass
class Plan:
    """The whole data set without audio.

    Attributes:
        config: what it was planned from.
        train_ids, test_ids: recording ids, position = recording index.
        events: one row per planted sound (:data:`EVENT_COLUMNS`), sorted by split, index, event.
    """

    config: SynthConfig
    train_ids: list[str]
    test_ids: list[str]
    events: pd.DataFrame

    def ids(self, split: str) -> list[str]:
        return self.train_ids if split == "train" else self.test_ids

    def presence(self, split: str) -> np.ndarray:
        """``(n_recordings, 24)`` int8: 1 where the species truly calls in the recording."""
        ids = self.ids(split)
        calls = self.events[(self.events["split"] == split) & (self.events["kind"] == "call")]
        out = np.zeros((len(ids), N_CALLERS), dtype=np.int8)
        out[calls["index"].to_numpy(), calls["species_id"].to_numpy()] = 1
        return out


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator for ``(seed, *keys)``: the same keys give the same stream anywhere."""
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def recording_ids(seed: int, n_train: int, n_test: int) -> tuple[list[str], list[str]]:
    """9-character lowercase hex ids like the real ones, unique over both splits, from ``(seed, split, index)``."""
    seen: set[str] = set()
    out: dict[str, list[str]] = {}
    for split, n in zip(SPLITS, (n_train, n_test)):
        ids = []
        for index in range(n):
            salt = 0
            while True:
                text = f"rfcx-synth/{seed}/{split}/{index}/{salt}".encode()
                rid = hashlib.blake2b(text, digest_size=8).hexdigest()[:9]
                if rid not in seen:
                    break
                salt += 1
            seen.add(rid)
            ids.append(rid)
        out[split] = ids
    return out["train"], out["test"]


def label_counts(n_train: int, label_scale: float = 1.0) -> dict[str, int]:
    """Real label figures scaled to ``n_train`` recordings (every recording gets a TP or an FP row).

    ``label_scale`` multiplies the TP figures (the real ratio is 1; a small demo set uses more TP rows so a
    few CPU minutes of training have something to learn from; labelled calls stay a small minority).
    Returns ``tp_recordings``, ``tp_rows``, ``fp_recordings``, ``fp_rows``, ``both`` (recordings with both).
    """
    scale = n_train / REAL_TRAIN
    tp_recordings = min(n_train, int(round(REAL_TP_RECORDINGS * scale * label_scale)))
    tp_rows = max(tp_recordings, int(round(REAL_TP_ROWS * scale * label_scale))) if tp_recordings else 0
    tp_rows = min(tp_rows, 3 * tp_recordings)  # at most 3 labelled species per recording
    fp_recordings = int(round(REAL_FP_RECORDINGS * scale))
    both = tp_recordings + fp_recordings - n_train
    if both < 0:  # rounding at tiny sizes: make the FP recordings cover the rest
        fp_recordings, both = n_train - tp_recordings, 0
    fp_rows = max(fp_recordings, int(round(REAL_FP_ROWS * scale)))
    return dict(tp_recordings=tp_recordings, tp_rows=tp_rows, fp_recordings=fp_recordings, fp_rows=fp_rows, both=both)


def apportion(total: int, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` over classes by ``weights``, every class getting 1 first when ``total >= len(weights)``.

    Largest-remainder rounding; ties and the classes left out when ``total < len(weights)`` are decided
    by ``rng``. Returns ``(K,)`` int counts summing to ``total``.
    """
    k = len(weights)
    counts = np.zeros(k, dtype=np.int64)
    if total < k:
        counts[rng.choice(k, size=total, replace=False)] = 1
        return counts
    counts += 1
    share = weights / weights.sum() * (total - k)
    counts += np.floor(share).astype(np.int64)
    remainder = share - np.floor(share) + rng.uniform(0, 1e-6, k)  # random tie-break
    left = total - counts.sum()
    counts[np.argsort(-remainder)[:left]] += 1
    return counts


def _fp_counts(n_rows: int, n_recordings: int, rng: np.random.Generator, cap: int = 8) -> np.ndarray:
    """FP rows per FP recording: 1 each plus an over-dispersed share of the rest (real: 1 row in half of
    them, up to 10); at most ``cap``. Returns ``(n_recordings,)`` summing to ``n_rows``."""
    extra = n_rows - n_recordings
    counts = np.ones(n_recordings, dtype=np.int64)
    if extra > 0:
        weights = rng.gamma(0.7, size=n_recordings)
        counts += rng.multinomial(extra, weights / weights.sum())
    while (counts > cap).any():  # move any overflow to recordings with room
        over = int((counts - cap).clip(0).sum())
        counts = counts.clip(max=cap)
        room = np.flatnonzero(counts < cap)
        np.add.at(counts, rng.choice(room, size=over), 1)
    return counts


def _place(rng: np.random.Generator, durations: np.ndarray, seconds: float, gap: float = 0.2) -> np.ndarray:
    """Non-overlapping start times (s) for calls of one species, spread at random over ``seconds``.

    Calls that do not fit are dropped from the end. Returns ``(n,)`` starts in random order of calls.
    """
    while durations.size and durations.sum() + gap * (durations.size - 1) > seconds:
        durations = durations[:-1]
    free = seconds - durations.sum() - gap * (durations.size - 1)
    gaps = rng.dirichlet(np.ones(durations.size + 1)) * free
    order = rng.permutation(durations.size)
    d = durations[order]
    starts = np.cumsum(np.concatenate([[0.0], d[:-1] + gap])) + np.cumsum(gaps[:-1])
    out = np.empty(durations.size)
    out[order] = starts
    return out


def _free_slot(rng: np.random.Generator, duration: float, seconds: float, taken: list[tuple[float, float]],
               tries: int = 50) -> float | None:
    """A start time where ``[start, start + duration]`` overlaps none of ``taken``; None if none found."""
    for _ in range(tries):
        start = rng.uniform(0.0, seconds - duration)
        if all(start + duration <= a or start >= b for a, b in taken):
            return start
    return None


def _box_times(start: float, duration: float, seconds: float) -> tuple[float, float]:
    """Box edges rounded to 0.1 ms (the rendered call uses exactly these)."""
    t_min = round(float(start), 4)
    return t_min, min(round(float(start) + float(duration), 4), seconds)


@lru_cache(maxsize=1)
def _species_weights() -> tuple[np.ndarray, np.ndarray]:  # (prevalence unless cfg.prevalence, FP weights)
    """``(test prevalence, real FP rows)`` per species, ``(24,)`` each."""
    table = species_table()
    return table["test_prevalence"].to_numpy(dtype=np.float64), table["fp_rows"].to_numpy(dtype=np.float64)


def plan_recording(cfg: SynthConfig, split: str, index: int, recording_id: str, tp_species: list[int],
                   n_fp: int, n_confusers_mean: float) -> list[dict]:
    """Plan one recording's sounds.

    Args:
        tp_species: species that get a labelled call here (forced present).
        n_fp: labelled confusers to plant (FP rows).
        n_confusers_mean: mean number of further, unlabelled confusers (Poisson).
    Returns:
        event dicts (:data:`EVENT_COLUMNS` less ``event``), in planning order.
    """
    prevalence, fp_weights = _species_weights()
    if cfg.prevalence is not None:
        prevalence = np.full(N_CALLERS, cfg.prevalence)
    rng = rng_for(cfg.seed, SPLITS.index(split), index + 1, STREAM_PLAN)
    seconds = cfg.seconds
    present = rng.random(N_CALLERS) < prevalence
    present[tp_species] = True
    events: list[dict] = []
    taken: dict[int, list[tuple[float, float]]] = {s: [] for s in range(N_CALLERS)}

    def add(species: int, songtype: int, kind: str, variant: str, start: float, duration: float, snr_db: float,
            labelled: str) -> None:
        f_min, f_max = band_of(species)
        t_min, t_max = _box_times(start, duration, seconds)
        taken[species].append((t_min, t_max))
        events.append(dict(split=split, recording_id=recording_id, index=index, species_id=species,
                           songtype_id=songtype, kind=kind, variant=variant, t_min=t_min, t_max=t_max,
                           f_min=f_min, f_max=f_max, snr_db=round(float(snr_db), 2), labelled=labelled))

    for species in np.flatnonzero(present):
        n_calls = 1 + rng.poisson(CALLS_PER_MINUTE[species] * seconds / 60.0)
        types = songtypes_of(species)
        songtypes = [types[i] for i in rng.integers(len(types), size=n_calls)]
        durations = np.array([draw_duration(rng, species, st) for st in songtypes])
        starts = _place(rng, durations, seconds)
        # One individual at one distance: its calls share a level (+-3 dB), so some presences are all faint.
        level = rng.uniform(cfg.snr_low, cfg.snr_high)
        snrs = np.clip(level + rng.uniform(-3.0, 3.0, starts.size), cfg.snr_low, cfg.snr_high)
        first = len(events)
        for start, duration, songtype, snr_db in zip(starts, durations, songtypes, snrs):
            add(int(species), songtype, "call", "song", start, duration, snr_db, "none")
        if species in tp_species:  # label one call, preferring louder ones (a person verified it)
            amplitude = 10 ** (np.array([e["snr_db"] for e in events[first:]]) / 20)
            events[first + int(rng.choice(len(amplitude), p=amplitude / amplitude.sum()))]["labelled"] = "tp"

    def add_confuser(species: int, labelled: str) -> bool:
        types = songtypes_of(species)
        songtype = types[int(rng.integers(len(types)))]
        duration = draw_duration(rng, species, songtype)
        start = _free_slot(rng, duration, seconds, taken[species])
        if start is None:
            return False
        variant = CONFUSER_KINDS[int(rng.integers(len(CONFUSER_KINDS)))]
        add(species, songtype, "confuser", variant, start, duration, rng.uniform(cfg.snr_low, cfg.snr_high), labelled)
        return True

    p_fp = fp_weights.copy()
    p_fp[tp_species] = 0.0
    # Labelled confusers: distinct species, weighted by the real FP counts; one that finds no free slot
    # (its own species calls all over a short recording) gives way to the next candidate.
    candidates = rng.choice(N_CALLERS, size=int(np.count_nonzero(p_fp)), replace=False, p=p_fp / p_fp.sum())
    placed = 0
    for species in candidates:
        if placed == n_fp:
            break
        placed += add_confuser(int(species), "fp")
    if placed < n_fp:
        raise RuntimeError(f"{recording_id}: no room for {n_fp} labelled confusers in {seconds:g} s")
    for species in rng.choice(N_CALLERS, size=rng.poisson(n_confusers_mean), p=fp_weights / fp_weights.sum()):
        add_confuser(int(species), "none")  # unlabelled; dropped if there is no room
    return events


def _label_call_share(events: pd.DataFrame, cfg: SynthConfig) -> pd.DataFrame:
    """Give ``round(tp_share * train calls)`` planted train calls a TP row: drawn without replacement over all
    train calls, each with weight = its amplitude (a person verifies what they hear), one random stream."""
    rng = rng_for(cfg.seed, 0, 0, STREAM_LABELS)
    calls = np.flatnonzero(((events["split"] == "train") & (events["kind"] == "call")).to_numpy())
    k = int(round(cfg.tp_share * len(calls)))
    amplitude = 10 ** (events["snr_db"].to_numpy(np.float64)[calls] / 20)
    chosen = rng.choice(calls, size=k, replace=False, p=amplitude / amplitude.sum())
    events = events.copy()
    events.loc[events.index[chosen], "labelled"] = "tp"
    return events


def plan_dataset(cfg: SynthConfig) -> Plan:
    """Plan the whole data set (train roles and labels, then every recording). Deterministic in ``cfg``."""
    cfg.validate()
    train_ids, test_ids = recording_ids(cfg.seed, cfg.n_train, cfg.n_test)
    table = species_table()
    counts = label_counts(cfg.n_train, cfg.label_scale)
    rng = rng_for(cfg.seed, 0, 0, STREAM_GLOBAL)
    n = cfg.n_train

    # Roles: which recordings carry TP rows, FP rows, or both.
    order = rng.permutation(n)
    tp_recs = order[: counts["tp_recordings"]]
    fp_recs = np.sort(np.concatenate([order[counts["tp_recordings"]:], tp_recs[: counts["both"]]]))
    tp_species: dict[int, list[int]] = {int(i): [] for i in range(n)}
    if cfg.tp_share is None:
        per_species = apportion(counts["tp_rows"], table["tp_rows"].to_numpy(dtype=np.float64), rng)
        species_rows = rng.permutation(np.repeat(np.arange(N_CALLERS), per_species))
        for rec, species in zip(tp_recs, species_rows[: tp_recs.size]):
            tp_species[int(rec)].append(int(species))
        for species in species_rows[tp_recs.size :]:  # extra TP rows: a second species in a TP recording
            free = [int(r) for r in tp_recs if species not in tp_species[int(r)]]
            tp_species[int(rng.choice(free))].append(int(species))
    else:  # every recording gets FP rows as RFCX's; TP rows come from the calls once they are planted
        fp_recs = np.arange(n)
    n_fp = np.zeros(n, dtype=np.int64)
    n_fp[fp_recs] = _fp_counts(counts["fp_rows"], fp_recs.size, rng)

    confusers_per_recording = REAL_FP_ROWS / REAL_TRAIN + cfg.confusers * UNLABELLED_CONFUSERS
    rows: list[dict] = []
    for i, rid in enumerate(train_ids):
        rows += plan_recording(cfg, "train", i, rid, tp_species[i], int(n_fp[i]), cfg.confusers * UNLABELLED_CONFUSERS)
    for i, rid in enumerate(test_ids):
        rows += plan_recording(cfg, "test", i, rid, [], 0, confusers_per_recording)
    events = pd.DataFrame(rows)
    if cfg.tp_share is not None:
        events = _label_call_share(events, cfg)
    events = events.sort_values(["split", "index", "t_min", "species_id", "kind"], kind="stable",
                                key=lambda c: c.map(SPLITS.index) if c.name == "split" else c)
    events["event"] = events.groupby(["split", "index"]).cumcount()
    return Plan(cfg, train_ids, test_ids, events[EVENT_COLUMNS].reset_index(drop=True))
