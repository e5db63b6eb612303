"""A BirdCLEF-shaped synthetic data set with hidden truth (``rfcx-kit synth --profile birdclef``).

What the competition's data is made of, each part known:

* **focal clips** (``train_audio/<code>/XC<n>.ogg``, 32 kHz OGG Vorbis, ``clip_seconds`` long): a few loud calls of
  the primary species, and quieter calls of 0-2 others, of which only ``listed_share`` are listed as secondaries;
* **unlabelled soundscapes** (``train_soundscapes/``, or ``unlabeled_soundscapes/`` in 2024's layout; none in
  2023's) at other sites: another background (each site's own steady noise band over the ambience) and calls
  ``soundscape_snr`` dB above it, lower than the focal clips': the domain shift pseudo-labels exist to bridge;
* **test soundscapes** (``test_soundscapes/``) drawn like the unlabelled ones, with a truth for every 5-s row;
* the year's tables (``layout_birdclef``): ``train_metadata.csv`` + ``eBird_Taxonomy_v2021.csv`` (2023, 2024) or
  ``train.csv`` + ``taxonomy.csv`` (2025, 2026), ``sample_submission.csv`` (``row_id`` = ``<soundscape>_<end s>``),
  and in 2026 ``train_soundscapes_labels.csv`` for a share of the soundscapes;
* ``truth/``: every planted call (``calls.csv``, ids as the layout reads them), presence per recording, the test
  rows' 0/1 truth (``test_rows.csv``) and README.md. The pipeline never reads it; reports and the oracle do.

The species' calls are the RFCX synthetic set's (``calls.py``), the first ``species`` of them. Every recording is
drawn from its own random stream keyed by (seed, part, index): the same settings give the same bytes with any
number of workers (the same samples: an OGG stream's serial number is random). Written atomically, one file at a time; the tables last.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from rfcx_kit.core.errors import ConfigError
from rfcx_kit.core.grid import SAMPLE_RATE
from rfcx_kit.core.species import Species
from rfcx_kit.core.io import atomic_path, atomic_write_csv, atomic_write_text
from rfcx_kit.data.synth.background import add_sound, draw_background
from rfcx_kit.data.synth.calls import band_of, draw_duration, songtypes_of, species_call

PROFILE = "birdclef"  # its name among the synthetic profiles (rfcx-kit synth/demo --profile)
YEARS = (2023, 2024, 2025, 2026)
RATE = SAMPLE_RATE  # BirdCLEF's audio: 32 kHz
ROW_SECONDS = 5.0
MIN_OVERLAP = 0.2  # s of a call inside a 5-s row for the row to count it
_PARTS = {"focal": 1, "soundscape": 2, "test": 3, "site": 4}


@dataclass(frozen=True)
class BirdclefSynth:
    """Settings of a BirdCLEF-shaped set (the defaults: the demo's size, 2 cores, ~1 minute to write)."""

    year: int = 2025
    species: int = 8
    clips_per_species: int = 8
    clip_seconds: tuple[float, float] = (5.0, 15.0)
    soundscapes: int = 20
    test: int = 20
    soundscape_seconds: float = 30.0
    sites: int = 3
    prevalence: float = 0.35  # share of soundscapes each species calls in
    focal_snr: tuple[float, float] = (8.0, 20.0)
    secondary_snr: tuple[float, float] = (0.0, 8.0)
    soundscape_snr: tuple[float, float] = (-2.0, 8.0)
    listed_share: float = 0.5  # share of the other species in a focal clip that are listed as secondaries
    labelled_soundscapes: float = 0.25  # 2026: share of the soundscapes with train_soundscapes_labels.csv rows
    seed: int = 0

    def validate(self) -> None:
        if self.year not in YEARS:
            raise ConfigError(f"synth: --year must be one of {', '.join(map(str, YEARS))}, got {self.year}")
        calls = len(Species.rfcx())  # the synthetic calls are the RFCX set's species
        if not 2 <= self.species <= calls:
            raise ConfigError(f"synth: --species must be in [2, {calls}] (the synthetic calls), got {self.species}")
        if self.clips_per_species < 1 or self.soundscapes < 0 or self.test < 1 or self.sites < 1:
            raise ConfigError("synth: need >= 1 clip per species, >= 0 soundscapes, >= 1 test soundscape, >= 1 site")
        if not 5.0 <= self.soundscape_seconds <= 600.0:
            raise ConfigError(f"synth: soundscapes of 5-600 s, got {self.soundscape_seconds:g}")
        lo, hi = self.clip_seconds
        if not 1.0 <= lo <= hi <= 120.0:
            raise ConfigError(f"synth: focal clips of 1-120 s, LOW <= HIGH, got {lo:g},{hi:g}")
        for name in ("prevalence", "listed_share", "labelled_soundscapes"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"synth: {name} must be in [0, 1], got {getattr(self, name)}")

    @property
    def codes(self) -> list[str]:
        """Class codes as the years spell them: eBird codes, and from 2025 iNat ids and an insect sonotype."""
        codes = [f"synbir{k + 1}" for k in range(self.species)]
        if self.year >= 2025:
            codes[-1] = "47158son16"  # 2025-2026 insect sonotypes
            codes[-2] = str(1139490 + self.species)  # iNat taxon ids of non-birds
        return sorted(codes) if self.year < 2025 else codes

    @property
    def unlabelled_folder(self) -> str | None:
        return {2023: None, 2024: "unlabeled_soundscapes"}.get(self.year, "train_soundscapes")


def _rng(seed: int, part: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _PARTS[part], index])


def plan(cfg: BirdclefSynth) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(recordings, calls)``: one row per file (part, index, recording_id, file, seconds, site, primary,
    listed secondaries) and one per planted call (recording_id, species_id, t_min, t_max, snr_db, role)."""
    codes = cfg.codes
    recordings, calls = [], []
    n_focal = cfg.species * cfg.clips_per_species
    for i in range(n_focal):
        rng = _rng(cfg.seed, "focal", i)
        primary = i % cfg.species
        seconds = float(np.round(rng.uniform(*cfg.clip_seconds), 2))
        others = [s for s in rng.permutation(cfg.species)[: int(rng.choice(3, p=[0.4, 0.4, 0.2]))] if s != primary]
        listed = [s for s in others if rng.random() < cfg.listed_share]
        name = f"XC{100000 + cfg.seed * 10000 + i}"
        rid = f"{codes[primary]}/{name}"
        recordings.append(dict(part="focal", index=i, recording_id=rid, file=f"train_audio/{rid}.ogg",
                               seconds=seconds, site=-1, primary=int(primary), listed=[int(s) for s in listed],
                               author=f"Recordist {int(rng.integers(0, 4))}", rating=float(rng.choice([0, 3, 3.5, 4, 4.5, 5]))))
        for _ in range(int(rng.integers(2, 5))):
            calls.append(_call(rng, rid, primary, seconds, cfg.focal_snr, "primary"))
        for s in others:
            calls.append(_call(rng, rid, int(s), seconds, cfg.secondary_snr, "listed" if s in listed else "unlisted"))
    folder = cfg.unlabelled_folder
    for part, count in (("soundscape", cfg.soundscapes if folder else 0), ("test", cfg.test)):
        for i in range(count):
            rng = _rng(cfg.seed, part, i)
            site = int(rng.integers(0, cfg.sites))
            stem = (f"H{site:02d}_2025{(i % 28) + 1:04d}_{part[:2]}{i:04d}" if part == "soundscape"
                    else f"soundscape_{cfg.seed:02d}{i:04d}")
            rid = f"{folder}/{stem}" if part == "soundscape" else stem
            file = f"{folder}/{stem}.ogg" if part == "soundscape" else f"test_soundscapes/{stem}.ogg"
            recordings.append(dict(part=part, index=i, recording_id=rid, file=file, seconds=cfg.soundscape_seconds,
                                   site=site, primary=-1, listed=[], author="", rating=np.nan))
            for s in range(cfg.species):
                if rng.random() < cfg.prevalence:
                    for _ in range(int(rng.integers(1, 4))):
                        calls.append(_call(rng, rid, s, cfg.soundscape_seconds, cfg.soundscape_snr, part))
    return pd.DataFrame(recordings), pd.DataFrame(calls)


def _call(rng: np.random.Generator, rid: str, species: int, seconds: float, snr: tuple[float, float],
          role: str) -> dict:
    songtype = int(rng.choice(songtypes_of(species)))
    duration = min(draw_duration(rng, species, songtype), seconds * 0.8)
    start = float(rng.uniform(0.0, seconds - duration))
    return dict(recording_id=rid, species_id=int(species), songtype=songtype, t_min=round(start, 3),
                t_max=round(start + duration, 3), snr_db=float(rng.uniform(*snr)), role=role,
                call_seed=int(rng.integers(0, 2**31 - 1)))


def render(cfg: BirdclefSynth, recording: dict, calls: pd.DataFrame) -> np.ndarray:
    """One recording's waveform at 32 kHz, ``(round(seconds * 32000),)`` float32, peak below 0.98."""
    rng = _rng(cfg.seed, recording["part"], recording["index"] + 100000)
    seconds = float(recording["seconds"])
    background = draw_background(rng, seconds)
    wave = background.render(RATE)
    if recording["site"] >= 0:  # a soundscape: its site's steady noise band over the ambience
        wave = wave + _site_noise(cfg, int(recording["site"]), rng, len(wave), float(np.mean(wave.astype(np.float64) ** 2)))
    spectrum = np.abs(np.fft.rfft(wave.astype(np.float64))) ** 2 / len(wave) ** 2 * 2
    freqs = np.fft.rfftfreq(len(wave), 1 / RATE)
    for call in calls.itertuples(index=False):
        spec = species_call(np.random.default_rng(call.call_seed), call.species_id, call.songtype,
                            call.t_max - call.t_min)
        lo, hi = band_of(call.species_id)
        band = (freqs >= lo) & (freqs <= hi)
        add_sound(wave, RATE, spec, call.t_min, call.snr_db, float(spectrum[band].sum()))
    peak = float(np.max(np.abs(wave))) if len(wave) else 0.0
    return (wave * (0.98 / peak) if peak > 0.98 else wave).astype(np.float32)


def _site_noise(cfg: BirdclefSynth, site: int, rng: np.random.Generator, n: int, level: float) -> np.ndarray:
    """The site's own noise: a band (the same at every recording of the site) 3-9 dB above the ambience's power."""
    site_rng = _rng(cfg.seed, "site", site)
    centre, width = site_rng.uniform(1500.0, 9000.0), site_rng.uniform(400.0, 2500.0)
    gain_db = site_rng.uniform(3.0, 9.0)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum *= np.exp(-0.5 * ((freqs - centre) / width) ** 2) + 0.15 / np.maximum(freqs / 500.0, 1.0)
    noise = np.fft.irfft(spectrum, n)
    noise *= np.sqrt(level * 10 ** (gain_db / 10) / max(float(np.mean(noise**2)), 1e-20))
    return noise.astype(np.float32)


def row_truth(recordings: pd.DataFrame, calls: pd.DataFrame, k: int) -> tuple[list[str], np.ndarray]:
    """Row ids ``<stem>_<end s>`` of the test soundscapes and their ``(R, K)`` 0/1 truth: a species is in a row
    when one of its calls lies at least MIN_OVERLAP s inside it (or wholly, if shorter)."""
    ids, rows = [], []
    for rec in recordings[recordings["part"] == "test"].itertuples(index=False):
        n_rows = int(np.ceil(rec.seconds / ROW_SECONDS - 1e-9))
        truth = np.zeros((n_rows, k), dtype=np.int8)
        own = calls[calls["recording_id"] == rec.recording_id]
        for i in range(n_rows):
            a, b = i * ROW_SECONDS, (i + 1) * ROW_SECONDS
            inside = np.minimum(own["t_max"], b) - np.maximum(own["t_min"], a)
            hit = inside >= np.minimum(MIN_OVERLAP, (own["t_max"] - own["t_min"]) * 0.999)
            truth[i, own["species_id"][hit.to_numpy()].to_numpy()] = 1
        ids += [f"{rec.recording_id}_{int(round((i + 1) * ROW_SECONDS))}" for i in range(n_rows)]
        rows.append(truth)
    return ids, np.concatenate(rows) if rows else np.zeros((0, k), np.int8)


def write_birdclef(cfg: BirdclefSynth, out: str | Path, n_jobs: int = 1, progress: bool = True) -> pd.DataFrame:
    """Write the set to ``out`` (resumable: finished files are kept); returns its recordings table."""
    from joblib import Parallel, delayed

    from rfcx_kit.core.progress import progress_bar

    cfg.validate()
    out = Path(out)
    params = out / "truth" / "params.json"
    if params.exists() and json.loads(params.read_text()) != json.loads(json.dumps(asdict(cfg))):
        raise ConfigError(f"{out}: holds a set of other settings (truth/params.json); give a new --out")
    if out.exists() and not params.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: not empty and not a synthetic set; give a new or empty --out")
    (out / "truth").mkdir(parents=True, exist_ok=True)
    atomic_write_text(params, json.dumps(asdict(cfg), indent=2))
    recordings, calls = plan(cfg)
    todo = [r for r in recordings.to_dict("records") if not (out / r["file"]).is_file()]
    by_recording = {rid: frame for rid, frame in calls.groupby("recording_id")}
    empty = calls.iloc[:0]
    bar = progress_bar(total=len(todo), desc="synth birdclef", unit="file", enabled=progress)
    for done in Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_write_one)(cfg, r, by_recording.get(r["recording_id"], empty), out) for r in todo):
        bar.update(done)
    bar.close()
    write_tables(cfg, recordings, calls, out)
    return recordings


def _write_one(cfg: BirdclefSynth, recording: dict, calls: pd.DataFrame, out: Path) -> int:
    path = out / recording["file"]
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = render(cfg, recording, calls)
    with atomic_path(path, suffix=".ogg") as tmp:
        sf.write(str(tmp), wave, RATE, format="OGG", subtype="VORBIS")
    return 1


def write_tables(cfg: BirdclefSynth, recordings: pd.DataFrame, calls: pd.DataFrame, out: Path) -> None:
    codes = cfg.codes
    names = [f"Synthetic {'insect' if c.endswith('son16') else 'frog' if c.isdigit() else 'bird'} {k + 1}"
             for k, c in enumerate(codes)]
    focal = recordings[recordings["part"] == "focal"]
    meta = pd.DataFrame({
        "primary_label": [codes[p] for p in focal["primary"]],
        "secondary_labels": [str([codes[s] for s in listed]) for listed in focal["listed"]],
        "type": "['song']", "latitude": 4.5, "longitude": -74.1,
        "scientific_name": [f"Synthetica {codes[p]}" for p in focal["primary"]],
        "common_name": [names[p] for p in focal["primary"]],
        "author": focal["author"].to_numpy(), "license": "Creative Commons Attribution-NonCommercial-ShareAlike 4.0",
        "rating": focal["rating"].to_numpy(), "url": [f"https://xeno-canto.org/{100000 + i}" for i in range(len(focal))],
        "filename": [f.removeprefix("train_audio/") for f in focal["file"]],
    })
    if cfg.year >= 2025:
        meta.insert(len(meta.columns) - 1, "collection", "XC")
        atomic_write_csv(out / "train.csv", meta)
        atomic_write_csv(out / "taxonomy.csv", pd.DataFrame({
            "primary_label": codes, "inat_taxon_id": [1000 + k for k in range(len(codes))],
            "scientific_name": [f"Synthetica {c}" for c in codes], "common_name": names,
            "class_name": ["Insecta" if c.endswith("son16") else "Amphibia" if c.isdigit() else "Aves" for c in codes]}))
    else:
        atomic_write_csv(out / "train_metadata.csv", meta)
        world = codes + ["ostric2", "grerhe1"]  # the eBird taxonomy lists the world's species, not the classes
        atomic_write_csv(out / "eBird_Taxonomy_v2021.csv", pd.DataFrame({
            "TAXON_ORDER": range(1, len(world) + 1), "CATEGORY": "species", "SPECIES_CODE": world,
            "PRIMARY_COM_NAME": names + ["Common Ostrich", "Greater Rhea"],
            "SCI_NAME": [f"Synthetica {c}" for c in world], "ORDER1": "", "FAMILY": "", "SPECIES_GROUP": "",
            "REPORT_AS": ""}))
    row_ids, truth = row_truth(recordings, calls, len(codes))
    sample = pd.DataFrame(np.full(truth.shape, 1.0 / len(codes)), columns=codes)
    sample.insert(0, "row_id", row_ids)
    atomic_write_csv(out / "sample_submission.csv", sample)
    test_rows = pd.DataFrame(truth, columns=codes)
    test_rows.insert(0, "row_id", row_ids)
    atomic_write_csv(out / "truth" / "test_rows.csv", test_rows)
    soundscapes = recordings[recordings["part"] == "soundscape"]
    if cfg.year == 2026 and len(soundscapes):
        chosen = soundscapes.iloc[: int(round(cfg.labelled_soundscapes * len(soundscapes)))]
        rows = []
        for rec in chosen.itertuples(index=False):
            own = calls[calls["recording_id"] == rec.recording_id]
            for i in range(int(np.ceil(rec.seconds / ROW_SECONDS - 1e-9))):
                a, b = i * ROW_SECONDS, (i + 1) * ROW_SECONDS
                hit = own[(np.minimum(own["t_max"], b) - np.maximum(own["t_min"], a)) >= MIN_OVERLAP]
                labels = sorted({codes[s] for s in hit["species_id"]})
                if labels:
                    rows.append((Path(rec.file).name, _clock(a), _clock(b), ";".join(labels)))
        atomic_write_csv(out / "train_soundscapes_labels.csv",
                         pd.DataFrame(rows, columns=["filename", "start", "end", "primary_label"]))
    split = np.where(recordings.set_index("recording_id").loc[calls["recording_id"], "part"] == "test", "test", "train")
    table = calls.assign(split=split, kind="call",
                         f_min=[band_of(s)[0] for s in calls["species_id"]],
                         f_max=[band_of(s)[1] for s in calls["species_id"]])
    atomic_write_csv(out / "truth" / "calls.csv", table[["split", "recording_id", "species_id", "songtype", "kind",
                                                          "role", "t_min", "t_max", "f_min", "f_max", "snr_db"]])
    for part, name in (("train", "train_presence.csv"), ("test", "test_presence.csv")):
        chosen = recordings[(recordings["part"] == "test") == (part == "test")]
        presence = np.zeros((len(chosen), len(codes)), dtype=np.int8)
        index = {rid: i for i, rid in enumerate(chosen["recording_id"])}
        own = table[table["split"] == part]
        presence[own["recording_id"].map(index).to_numpy(), own["species_id"].to_numpy()] = 1
        frame = pd.DataFrame(presence, columns=[f"s{k}" for k in range(len(codes))])  # the clip tables' columns
        frame.insert(0, "recording_id", chosen["recording_id"].to_numpy())
        atomic_write_csv(out / "truth" / name, frame.sort_values("recording_id"))
    atomic_write_text(out / "truth" / "README.md", TRUTH_README)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


TRUTH_README = """# Hidden truth of a BirdCLEF-shaped synthetic set

Never read by training. `calls.csv`: every planted call (`role`: primary, listed or unlisted secondary of a focal
clip, soundscape, test), ids as the birdclef layout reads them (`<code>/XC<n>`, `train_soundscapes/<stem>`, test
stems). `train_presence.csv`, `test_presence.csv`: species per recording. `test_rows.csv`: the test soundscapes'
5-s rows (`<stem>_<end s>`), a species 1 where one of its calls lies at least 0.2 s inside the row. `params.json`:
the settings (same settings, same samples).
"""
