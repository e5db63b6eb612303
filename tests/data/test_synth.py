"""The synthetic RFCX data set (rfcx_kit.data.synth): layout, labels against truth, determinism, formats, difficulty."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pandas as pd
import pytest
import soxr
from click.testing import CliRunner

from rfcx_kit.data.audio import load_audio
from rfcx_kit.core.errors import DataError
from rfcx_kit.data.features import logmel
from rfcx_kit.data.layouts import read_competition
from rfcx_kit.core.species import BOX_COLUMNS, N_SPECIES, SPECIES_COLUMNS, species_table
from rfcx_kit.data.synth import calls as C
from rfcx_kit.data.synth.baseline import baseline_lwlrap
from rfcx_kit.app.synth import synth_cmd
from rfcx_kit.data.synth.scene import (REAL_FP_ROWS, REAL_TP_ROWS, SynthConfig, label_counts, plan_dataset,
                                  recording_ids)
from rfcx_kit.data.synth.writer import (CALL_COLUMNS, NPY_RATE, RENDER_COLUMNS, npy_features, render_recording,
                                   write_dataset)

BOX_KEY = ["recording_id", "species_id", "t_min", "t_max", "f_min", "f_max"]
# The main fixture: large enough that every species gets a TP row (n_train >= 94) and the baseline has
# something to learn from, short recordings so it stays fast.
MAIN = SynthConfig(n_train=100, n_test=40, seconds=20.0, seed=7)
SMALL = SynthConfig(n_train=6, n_test=3, seconds=12.0, seed=3)


@pytest.fixture(scope="module")
def main_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "main"
    plan, _ = write_dataset(MAIN, out, fmt="npy", n_jobs=2, progress=False)
    return out, plan


@pytest.fixture(scope="module")
def truth(main_set):
    out, _ = main_set
    return pd.read_csv(out / "truth" / "calls.csv", dtype={"recording_id": str})


def _read(path):
    return pd.read_csv(path, dtype={"recording_id": str})


# ---------------------------------------------------------------------------------------------------------
# Layout, schema, counts


def test_reader_accepts_npy_layout_without_warnings(main_set, caplog):
    out, plan = main_set
    with caplog.at_level(logging.WARNING):
        comp = read_competition(out)
    assert comp.layout == "npy" and comp.warnings == [] and not caplog.records
    assert comp.train_ids == sorted(plan.train_ids)  # every train recording has a TP or FP row
    assert sorted(comp.test_ids) == sorted(plan.test_ids)
    array = np.load(comp.path("train", comp.train_ids[0]))
    assert array.shape == (128, 3751) and array.dtype == np.float32


def test_csv_schema_and_counts(main_set, truth):
    out, plan = main_set
    tp, fp = _read(out / "train_tp.csv"), _read(out / "train_fp.csv")
    counts = label_counts(MAIN.n_train)
    for frame in (tp, fp):
        assert list(frame.columns) == BOX_COLUMNS
        assert (frame["t_min"] >= 0).all() and (frame["t_min"] < frame["t_max"]).all()
        assert (frame["t_max"] <= MAIN.seconds).all()
        assert (frame["f_min"] < frame["f_max"]).all() and (frame["f_max"] <= 24000).all()
        assert frame["species_id"].between(0, N_SPECIES - 1).all()
        assert frame["songtype_id"].isin([1, 4]).all()
    assert len(tp) == counts["tp_rows"] and tp["recording_id"].nunique() == counts["tp_recordings"]
    assert len(fp) == counts["fp_rows"] and fp["recording_id"].nunique() == counts["fp_recordings"]
    both = set(tp["recording_id"]) & set(fp["recording_id"])
    assert len(both) == counts["both"]
    assert set(tp["recording_id"]) | set(fp["recording_id"]) == set(plan.train_ids)
    sub = _read(out / "sample_submission.csv")
    assert list(sub.columns) == ["recording_id", *SPECIES_COLUMNS] and len(sub) == MAIN.n_test
    assert (sub[SPECIES_COLUMNS] == 0.5).all().all() and sub["recording_id"].is_monotonic_increasing
    assert list(truth.columns) == CALL_COLUMNS
    ids = plan.train_ids + plan.test_ids
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[0-9a-f]{9}", rid) for rid in ids)
    readme = (out / "truth" / "README.md").read_text()
    assert "never reads" in readme and "calls.csv" in readme


def test_label_counts_follow_the_real_ratios():
    full = label_counts(4727)
    assert full == dict(tp_recordings=1132, tp_rows=REAL_TP_ROWS, fp_recordings=3958, fp_rows=REAL_FP_ROWS, both=363)
    for n in (1, 2, 5, 13, 60, 94, 333):
        c = label_counts(n)
        assert c["tp_recordings"] + c["fp_recordings"] - c["both"] == n  # every recording has a row
        assert c["tp_rows"] >= c["tp_recordings"] and c["fp_rows"] >= c["fp_recordings"] >= 1


@pytest.mark.parametrize("n_train", [1, 2, 3, 7, 30, 31, 57])
def test_tiny_sizes_plan_exact_label_counts(n_train):
    plan = plan_dataset(SynthConfig(n_train=n_train, n_test=1, seconds=10.0, seed=n_train))
    train = plan.events[plan.events["split"] == "train"]
    counts = label_counts(n_train)
    assert (train["labelled"] == "tp").sum() == counts["tp_rows"]
    assert (train["labelled"] == "fp").sum() == counts["fp_rows"]
    assert train.loc[train["labelled"] != "none", "recording_id"].nunique() == n_train


def test_every_species_gets_tp_rows_from_94_recordings():
    plan = plan_dataset(SynthConfig(n_train=94, n_test=1, seconds=10.0, seed=11))
    tp = plan.events[plan.events["labelled"] == "tp"]
    assert sorted(tp["species_id"].unique()) == list(range(N_SPECIES))


# ---------------------------------------------------------------------------------------------------------
# Labels against truth


def test_every_tp_and_fp_row_is_a_planted_sound(main_set, truth):
    out, _ = main_set
    for name, kind, label in (("train_tp.csv", "call", "tp"), ("train_fp.csv", "confuser", "fp")):
        rows = _read(out / name)
        matched = rows.merge(truth[truth["split"] == "train"], on=BOX_KEY, how="left", validate="one_to_one")
        assert matched["kind"].eq(kind).all() and matched["labelled"].eq(label).all(), name
        assert (truth["labelled"] == label).sum() == len(rows)  # and no labelled sound is missing from the CSV


def test_fp_boxes_never_overlap_a_call_of_their_species(truth):
    calls = truth[truth["kind"] == "call"]
    fp = truth[truth["labelled"] == "fp"]
    pairs = fp.merge(calls, on=["recording_id", "species_id"], suffixes=("", "_call"))
    overlap = (pairs["t_min"] < pairs["t_max_call"]) & (pairs["t_min_call"] < pairs["t_max"])
    assert not overlap.any()


def test_labels_are_incomplete_like_rfcx(main_set, truth):
    _, plan = main_set
    train = truth[truth["split"] == "train"]
    labelled = train["labelled"] != "none"
    assert labelled.mean() < 0.25  # labelled sounds are a small minority of planted ones
    calls = train[train["kind"] == "call"]
    assert (calls["labelled"] == "tp").mean() < 0.05  # ~1 labelled call per TP recording
    # Most (recording, species) presences carry no TP row at all: what re-labeling can discover.
    present = calls.groupby(["recording_id", "species_id"])["labelled"].apply(lambda s: (s == "tp").any())
    assert (~present).mean() > 0.7
    # And TP recordings hold unlabelled calls of their own labelled species (fewer in these 20 s clips
    # than in 60 s recordings: a species calls 1 + Poisson(rate * seconds / 60) times).
    tp_pairs = calls[calls["labelled"] == "tp"][["recording_id", "species_id"]]
    same = calls.merge(tp_pairs, on=["recording_id", "species_id"])
    assert (same["labelled"] == "none").sum() > 0.5 * len(tp_pairs)


def test_presence_matches_calls_and_prevalence(main_set, truth):
    out, plan = main_set
    for split in ("train", "test"):
        presence = _read(out / "truth" / f"{split}_presence.csv").set_index("recording_id")
        calls = truth[(truth["split"] == split) & (truth["kind"] == "call")]
        expected = np.zeros(presence.shape, dtype=int)
        index = {rid: i for i, rid in enumerate(presence.index)}
        expected[calls["recording_id"].map(index), calls["species_id"]] = 1
        assert (presence[SPECIES_COLUMNS].to_numpy() == expected).all()
    # Test presence follows the real test prevalence (s3 in ~92 %, ~3 species per recording).
    big = plan_dataset(SynthConfig(n_train=1, n_test=1500, seconds=10.0, seed=5)).presence("test")
    assert np.abs(big.mean(axis=0) - species_table()["test_prevalence"].to_numpy()).max() < 0.04
    assert 2.6 < big.sum(axis=1).mean() < 3.6


# ---------------------------------------------------------------------------------------------------------
# Sounds: bands, lengths, SNR, sample-rate independence


@pytest.mark.parametrize("species", range(N_SPECIES))
def test_calls_and_confusers_stay_in_band_and_length(species):
    lo, hi = C.band_of(species)
    rng = np.random.default_rng(species)
    sr = 32000
    for songtype in C.songtypes_of(species):
        short, long = C.duration_range(species, songtype)
        duration = C.draw_duration(rng, species, songtype)
        assert 0.9 * short <= duration <= 1.1 * long
        specs = [C.species_call(rng, species, songtype, duration)]
        specs += [C.confuser_call(rng, species, songtype, kind, duration) for kind in C.CONFUSER_KINDS]
        for spec in specs:
            wave = C.render_call(spec, sr, 0.0, int(duration * sr))
            power = np.abs(np.fft.rfft(wave)) ** 2
            freqs = np.fft.rfftfreq(wave.size, 1 / sr)
            in_band = power[(freqs >= lo * 0.97) & (freqs <= hi * 1.03)].sum() / power.sum()
            assert in_band > 0.95, (species, songtype)
            # It sounds from the start of its box to the end: energy in the first and last fifth.
            fifth = wave.size // 5
            assert np.abs(wave[:fifth]).max() > 0 and np.abs(wave[-fifth:]).max() > 0


def test_call_shape_differs_from_its_confusers():
    """Same band, other pattern: the call's spectrogram is far from each confuser's (cosine similarity)."""
    rng = np.random.default_rng(0)
    for species in range(N_SPECIES):
        songtype = C.songtypes_of(species)[0]
        duration = C.draw_duration(rng, species, songtype)
        specs = [C.species_call(rng, species, songtype, duration)]
        specs += [C.confuser_call(rng, species, songtype, kind, duration) for kind in C.CONFUSER_KINDS]
        n = int(duration * NPY_RATE)
        images = logmel(np.stack([C.render_call(spec, NPY_RATE, 0.0, n) for spec in specs]))  # (4, 128, T)
        flat = (images - images.mean(axis=(1, 2), keepdims=True)).reshape(len(specs), -1)
        flat /= np.linalg.norm(flat, axis=1, keepdims=True)
        similarity = flat[1:] @ flat[0]
        assert (similarity < 0.9).all(), (species, similarity)


def test_snr_is_the_planned_in_band_snr():
    plan = plan_dataset(SMALL)
    events = plan.events[(plan.events["split"] == "train") & (plan.events["index"] == 0)]
    sr = NPY_RATE
    for row in events.itertuples():
        if row.t_max - row.t_min < 0.5:
            continue
        one = [tuple(getattr(row, c) for c in RENDER_COLUMNS)]
        background, _ = render_recording(SMALL, "train", 0, [], sr)
        mixed, _ = render_recording(SMALL, "train", 0, one, sr)
        a, b = int(np.ceil(row.t_min * sr)), int(row.t_max * sr)
        call_power = np.mean((mixed[a:b] - background[a:b]).astype(np.float64) ** 2)
        segment = background[a:b].astype(np.float64)
        spectrum = np.abs(np.fft.rfft(segment)) ** 2
        freqs = np.fft.rfftfreq(segment.size, 1 / sr)
        band = (freqs >= row.f_min) & (freqs <= row.f_max)
        noise_power = 2 * spectrum[band].sum() / segment.size**2
        measured = 10 * np.log10(call_power / noise_power)
        assert abs(measured - row.snr_db) < 1.5, (row.species_id, measured, row.snr_db)


def test_rendering_is_the_same_signal_at_48_and_32_khz():
    plan = plan_dataset(SMALL)
    events = plan.events[(plan.events["split"] == "test") & (plan.events["index"] == 0)]
    records = list(events[RENDER_COLUMNS].itertuples(index=False, name=None))
    at48, _ = render_recording(SMALL, "test", 0, records, 48000)
    at32, _ = render_recording(SMALL, "test", 0, records, 32000)
    resampled = soxr.resample(at48, 48000, 32000, quality="HQ")
    inner = slice(2000, -2000)  # the resampler's edge transients
    error = np.std(resampled[inner] - at32[inner]) / np.std(at32[inner])
    assert error < 1e-2
    # Nothing reaches the band the 48 -> 32 kHz resampler cuts (above 14.5 kHz).
    power = np.abs(np.fft.rfft(at48.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(at48.size, 1 / 48000)
    assert power[freqs > C.F_CAP + 100].sum() < 1e-6 * power.sum()


# ---------------------------------------------------------------------------------------------------------
# Formats and determinism


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    sets = {}
    for name, fmt, jobs in (("flac", "flac", 2), ("npy", "npy", 2), ("npy_again", "npy", 1)):
        write_dataset(SMALL, root / name, fmt=fmt, n_jobs=jobs, progress=False)
        sets[name] = root / name
    return sets


CSV_FILES = ["train_tp.csv", "train_fp.csv", "sample_submission.csv", "truth/calls.csv",
             "truth/train_presence.csv", "truth/test_presence.csv"]


def test_same_seed_and_size_give_identical_bytes(small_sets):
    a, b = small_sets["npy"], small_sets["npy_again"]  # written with 2 workers and with 1
    for name in CSV_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for split in ("train", "test"):
        files = sorted(p.name for p in (a / split).glob("*.npy"))
        assert files == sorted(p.name for p in (b / split).glob("*.npy")) and files
        for name in files:
            assert np.array_equal(np.load(a / split / name), np.load(b / split / name))
    # The FLAC set holds the same tables (the format changes only the audio files).
    for name in CSV_FILES:
        assert (a / name).read_bytes() == (small_sets["flac"] / name).read_bytes(), name


def test_another_seed_gives_another_data_set():
    one, other = plan_dataset(SMALL), plan_dataset(SynthConfig(**{**SMALL.__dict__, "seed": SMALL.seed + 1}))
    assert set(one.train_ids).isdisjoint(other.train_ids)
    assert not one.events[["t_min", "species_id"]].equals(other.events[["t_min", "species_id"]])


def test_flac_layout_and_npy_give_the_same_features(small_sets, caplog):
    flac, npy = small_sets["flac"], small_sets["npy"]
    with caplog.at_level(logging.WARNING):
        comp = read_competition(flac)
    assert comp.layout == "audio" and comp.extension == ".flac" and comp.warnings == [] and not caplog.records
    import soundfile as sf

    info = sf.info(str(comp.path("train", comp.train_ids[0])))
    assert (info.samplerate, info.channels, info.subtype) == (48000, 1, "PCM_16")
    assert info.frames == int(SMALL.seconds * 48000)
    diffs = []
    for split in ("train", "test"):
        for rid in comp.ids(split):
            wave, _ = load_audio(comp.path(split, rid))  # decoded, resampled by soxr, padded to 60 s
            diffs.append(np.abs(logmel(wave[None])[0] - np.load(npy / split / f"{rid}.npy")))
    diff = np.stack(diffs)
    # Tolerance: 16-bit quantisation and the resampler's filter. The largest differences sit in the
    # top mel bands (above the 14.5 kHz resampler cut, floor level) at the first/last frames.
    assert np.median(diff) < 0.01
    assert np.percentile(diff, 99.9) < 0.1
    assert diff[:, :120, 4:-4].max() < 1.0


def test_out_folder_is_resumed_or_refused(small_sets, tmp_path):
    # Same settings: resumed (nothing re-rendered).
    _, stats = write_dataset(SMALL, small_sets["npy"], fmt="npy", n_jobs=1, progress=False)
    assert stats["skipped"].all()
    # Other settings, or a foreign non-empty folder: refused with a clear message.
    with pytest.raises(DataError, match="other settings"):
        write_dataset(SynthConfig(**{**SMALL.__dict__, "seed": 99}), small_sets["npy"], fmt="npy", progress=False)
    (tmp_path / "x.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        write_dataset(SMALL, tmp_path, fmt="npy", progress=False)


def test_recording_ids_are_unique_and_stable():
    train, test = recording_ids(0, 3000, 3000)
    assert len(set(train) | set(test)) == 6000
    assert recording_ids(0, 5, 2) == (train[:5], test[:2])


# ---------------------------------------------------------------------------------------------------------
# Difficulty: learnable, not trivial


def test_baseline_is_clearly_above_shuffled_and_clearly_below_one(main_set):
    out, _ = main_set
    result = baseline_lwlrap(out)
    assert result["n_test"] == MAIN.n_test and result["n_test_positive"] > MAIN.n_test
    assert result["lwlrap"] > result["shuffled_lwlrap"] + 0.08, result
    assert result["lwlrap"] < 0.95, result
    assert result["random_lwlrap"] < result["shuffled_lwlrap"]


# ---------------------------------------------------------------------------------------------------------
# CLI


def test_cli_writes_preview_png_and_reports(tmp_path):
    runner = CliRunner()
    png = tmp_path / "preview.png"
    result = runner.invoke(synth_cmd, ["--preview", str(png), "--train", "8", "--test", "2", "--seconds", "15"])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20000
    out = tmp_path / "data"
    args = ["--out", str(out), "--train", "3", "--test", "2", "--seconds", "10", "--format", "npy",
            "--n-jobs", "1", "--no-progress", "--snr", "0,10"]
    result = runner.invoke(synth_cmd, args)
    assert result.exit_code == 0, result.output
    assert "3 train + 2 test" in result.output
    assert json.loads((out / "truth" / "params.json").read_text())["snr_low"] == 0.0
    bad = runner.invoke(synth_cmd, ["--out", str(tmp_path / "x"), "--snr", "5"])
    assert bad.exit_code == 2 and "LOW,HIGH" in bad.output
    bad = runner.invoke(synth_cmd, ["--out", str(tmp_path / "y"), "--seconds", "5"])
    assert bad.exit_code == 2 and "--seconds" in bad.output


def test_npy_features_are_padded_to_the_competition_shape():
    wave = np.zeros(int(12 * NPY_RATE), dtype=np.float32)
    assert npy_features(wave).shape == (128, 3751)


# ---------------------------------------------------------------------------------------------------------
# The demo profile


def test_demo_profile_is_flat_learnable_and_incompletely_labelled(tmp_path):
    """`--profile demo`: every species at one prevalence (so the prior says little), at most 1 train call in 8
    with a TP row, FP rows still on confusers, 24 species in 60 s recordings, arrays on the 64 x 1876 grid; the
    profile and its settings are recorded in truth/params.json, and explicit options override it."""
    from rfcx_kit.data.synth.scene import PROFILES, synth_config

    cfg = synth_config("demo", n_train=60, n_test=30, seed=5)
    assert (cfg.profile, cfg.prevalence, cfg.n_mels, cfg.hop_length, cfg.frames) == ("demo", 0.12, 64, 1024, 1876)
    assert cfg.tp_share <= 1 / 8 and cfg.seconds == 60.0
    assert synth_config("demo", tp_share=0.05).tp_share == 0.05  # an option given beats the profile
    assert synth_config("rfcx") == SynthConfig(profile="rfcx") and PROFILES["rfcx"] == {}
    plan = plan_dataset(cfg)
    train = plan.events[plan.events["split"] == "train"]
    calls = train[train["kind"] == "call"]
    assert (calls["labelled"] == "tp").sum() == round(cfg.tp_share * len(calls))
    assert set(train.loc[train["labelled"] == "fp", "kind"]) == {"confuser"}
    presence = np.concatenate([plan.presence("train"), plan.presence("test")])
    assert presence.shape[1] == N_SPECIES and presence.mean() == pytest.approx(0.12, abs=0.02)
    # flat: no species is common (RFCX's s3 calls in 92 % of recordings)
    assert presence.mean(axis=0).max() < 0.3
    out = tmp_path / "demo"
    small = synth_config("demo", n_train=3, n_test=2, seed=5, seconds=10.0)
    write_dataset(small, out, fmt="npy", n_jobs=1, progress=False)
    assert np.load(next((out / "train").glob("*.npy"))).shape == (64, 1876)
    params = json.loads((out / "truth" / "params.json").read_text())
    assert (params["profile"], params["prevalence"], params["n_mels"], params["hop_length"]) == ("demo", 0.12, 64, 1024)
    with pytest.raises(Exception, match="profile"):
        synth_config("nope")
    result = CliRunner().invoke(synth_cmd, ["--out", str(tmp_path / "cli"), "--profile", "demo", "--train", "3",
                                            "--test", "2", "--seconds", "10", "--format", "npy", "--n-jobs", "1",
                                            "--no-progress", "--prevalence", "0.2"])
    assert result.exit_code == 0, result.output
    assert "64 x 1876" in result.output and "profile demo" in result.output
    assert json.loads((tmp_path / "cli" / "truth" / "params.json").read_text())["prevalence"] == 0.2
