"""Log-mel features (shape, librosa agreement, resampling) and the feature cache (resume, atomicity, layouts)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml
from click.testing import CliRunner
from conftest import write_competition

import rfcx_kit.data.features as features
from rfcx_kit.data.audio import load_audio
from rfcx_kit.core.config import FeatureConfig
from rfcx_kit.core.errors import DataError
from rfcx_kit.app.data import features_cmd
from rfcx_kit.data.features import FeatureStore, LogMel, build_cache, logmel, mel_bin_of, resolve_store
from rfcx_kit.data.layouts import read_competition

LIBROSA_TOLERANCE_DB = 1e-3  # measured max |torch - librosa| is ~2.5e-5 to 4e-5 dB on these signals


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def wave_60s(tmp_path_factory) -> np.ndarray:
    """A 60 s, 48 kHz FLAC (5 s digital silence, noise, a 1.5 kHz tone in the first half, a 2 s 7 kHz
    burst) loaded the way the cache loads it: mono float32 at 32 kHz, exactly 1,920,000 samples."""
    rng = np.random.default_rng(0)
    rate = 48000
    wave = 0.02 * rng.standard_normal(60 * rate).astype(np.float32)
    wave[: 30 * rate] += tone(1500, 30, rate)
    wave[40 * rate : 42 * rate] += tone(7000, 2, rate, 0.5)
    wave[: 5 * rate] = 0.0
    path = tmp_path_factory.mktemp("wave60") / "rec.flac"
    sf.write(path, wave, rate)
    out, status = load_audio(path, sample_rate=32000, seconds=60.0)
    assert status == "ok"
    return out


def test_60s_recording_gives_128_by_3751(wave_60s):
    """A full 60 s recording (48 kHz FLAC -> 32 kHz) becomes exactly 1,920,000 samples and a float32
    (128, 3751) log-mel, the frame count of notes/rfcx.md (1 + 60 * 32000 / 512)."""
    assert wave_60s.shape == (1_920_000,) and wave_60s.dtype == np.float32
    out = logmel(wave_60s)
    assert out.shape == (1, 128, 3751) and out.dtype == np.float32
    assert FeatureConfig(seconds=60.0).frames == 3751


def test_logmel_agrees_with_librosa_within_a_thousandth_db(wave_60s):
    """On the same 60 s, 32 kHz audio, our torch log-mel equals librosa.feature.melspectrogram(sr=32000,
    n_fft=2048, hop_length=512, n_mels=128, fmin=20, fmax=16000, power=2) + power_to_db(ref=1.0,
    amin=1e-10, top_db=80) to within 1e-3 dB everywhere (measured max diff ~2.5e-5..4e-5 dB). The signal
    holds digital silence, so the top_db floor is exercised in both, and at the same place."""
    librosa = pytest.importorskip("librosa")
    ours = logmel(wave_60s)[0]
    mel = librosa.feature.melspectrogram(y=wave_60s, sr=32000, n_fft=2048, hop_length=512, n_mels=128,
                                         fmin=20, fmax=16000, power=2.0)
    ref = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80)
    assert ref.shape == ours.shape == (128, 3751)
    assert np.abs(ours - ref).max() < LIBROSA_TOLERANCE_DB
    floor = ref.max() - 80
    assert np.isclose(ours, floor, atol=LIBROSA_TOLERANCE_DB).mean() > 0.05  # silence sits on the floor
    np.testing.assert_array_equal(np.isclose(ours, floor, atol=1e-2), np.isclose(ref, floor, atol=1e-2))
    # The filter bank itself, against librosa's.
    fb = features.mel_filterbank(32000, 2048, 128, 20.0, 16000.0)
    np.testing.assert_allclose(fb, librosa.filters.mel(sr=32000, n_fft=2048, n_mels=128, fmin=20, fmax=16000),
                               rtol=1e-5, atol=1e-8)


def test_batched_logmel_is_per_recording():
    """A batch of a loud and a very quiet recording gives each the same log-mel as computed alone: the
    top_db floor is relative to each recording's own peak, not the batch's."""
    rng = np.random.default_rng(1)
    loud = (0.5 * rng.standard_normal(32000)).astype(np.float32)
    quiet = (1e-4 * rng.standard_normal(32000)).astype(np.float32)
    batch = logmel(np.stack([loud, quiet]))
    np.testing.assert_allclose(batch[0], logmel(loud)[0], atol=1e-4)
    np.testing.assert_allclose(batch[1], logmel(quiet)[0], atol=1e-4)
    assert batch[1].max() < batch[0].max() - 60  # the quiet one really is quieter


@pytest.mark.parametrize("freq", [1000.0, 5000.0])
def test_48khz_tone_lands_in_its_mel_bin(tmp_path, freq):
    """A 1 kHz (and a 5 kHz) tone written at 48 kHz is resampled to 32 kHz and its energy peaks in the mel
    bin whose centre frequency (librosa.mel_frequencies) is nearest the tone; floor(mel_bin_of(f)) names
    that same bin."""
    librosa = pytest.importorskip("librosa")
    path = tmp_path / "tone.flac"
    sf.write(path, tone(freq, 2.0, 48000), 48000)
    wave, _ = load_audio(path, sample_rate=32000, seconds=2.0)
    assert wave.shape == (64000,)
    energy = logmel(wave)[0].mean(axis=1)
    centres = librosa.mel_frequencies(128 + 2, fmin=20, fmax=16000)[1:-1]
    expected = int(np.argmin(np.abs(centres - freq)))
    assert int(np.argmax(energy)) == expected
    assert int(np.floor(mel_bin_of(np.array([freq]))[0])) == expected


def test_resampler_removes_content_above_the_new_nyquist(tmp_path):
    """A proper resampler low-passes before decimating: a 20 kHz tone at 48 kHz (above 32 kHz's 16 kHz
    Nyquist) almost vanishes (< -60 dB) instead of aliasing to 12 kHz, while a 3 kHz tone keeps its level.
    The result matches librosa.resample(res_type='soxr_hq')."""
    librosa = pytest.importorskip("librosa")
    for freq, survives in ((20000.0, False), (3000.0, True)):
        path = tmp_path / f"{int(freq)}.flac"
        source = tone(freq, 1.0, 48000)
        sf.write(path, source, 48000)
        wave, _ = load_audio(path, sample_rate=32000, seconds=1.0)
        middle = wave[3200:-3200]  # away from the filter's edge transients
        ratio = np.sqrt(np.mean(middle**2)) / np.sqrt(np.mean(source**2))
        if survives:
            assert 0.98 < ratio < 1.02
        else:
            assert ratio < 1e-3
        decoded, _ = sf.read(path, dtype="float32")
        ref = librosa.resample(decoded, orig_sr=48000, target_sr=32000, res_type="soxr_hq")
        np.testing.assert_allclose(wave[: len(ref)], ref, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------------

KILL_SCRIPT = textwrap.dedent(
    """
    import io, os, sys
    import numpy as np
    from rfcx_kit.core.config import FeatureConfig
    from rfcx_kit.data.features import build_cache
    from rfcx_kit.data.layouts import read_competition

    real_save, calls = np.save, [0]

    def dying_save(handle, array, allow_pickle=False):
        # The 4th entry: write half of its bytes, then die like a SIGKILL (no cleanup, no finally).
        calls[0] += 1
        if calls[0] == 4:
            buffer = io.BytesIO()
            real_save(buffer, array, allow_pickle=allow_pickle)
            handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            handle.flush()
            os._exit(137)
        real_save(handle, array, allow_pickle=allow_pickle)

    np.save = dying_save
    comp = read_competition(sys.argv[1])
    build_cache(comp, sys.argv[2], FeatureConfig(seconds=1.0, batch_size=2), n_jobs=1, progress=False)
    """
)


def expected_entry(path: Path, seconds: float) -> np.ndarray:
    wave, _ = load_audio(path, sample_rate=32000, seconds=seconds)
    return logmel(wave)[0]


def test_killed_cache_build_resumes_without_redoing_finished_entries(tmp_path):
    """A build killed (os._exit, as a SIGKILL) while writing its 4th entry leaves 3 complete entries, a
    half-written temporary file and no entry under the 4th name. Resuming computes only the 3 missing
    entries: the finished ones keep their mtime and bytes, the temporary file is never taken for an
    entry (the 4th entry is complete and correct), the manifest lists all 6 ids with 'cached' / 'ok', and
    the caller's torch thread count is unchanged (n_jobs=1 runs in-process)."""
    root = write_competition(tmp_path, n_train=4, n_test=2, seconds=1.0)
    cache = tmp_path / "cache"
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(root), str(cache)],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == 137, killed.stderr
    done = sorted(p.name for p in (cache / "train").glob("*.npy"))
    assert done == ["train000.npy", "train001.npy", "train002.npy"]
    stray = [p for p in (cache / "train").iterdir() if p.name.startswith(".train003.npy") and ".tmp" in p.name]
    assert len(stray) == 1, list((cache / "train").iterdir())
    with pytest.raises(Exception):
        np.load(stray[0])  # really truncated: reading it as an entry would fail or be wrong
    assert not (cache / "manifest.csv").exists() and not (cache / "test").exists()

    stamp = 1_000_000_000_000_000_000  # ns; any later rewrite would change it
    for name in done:
        os.utime(cache / "train" / name, ns=(stamp, stamp))
    before = {name: (cache / "train" / name).read_bytes() for name in done}

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        comp = read_competition(root)
        build_cache(comp, cache, FeatureConfig(seconds=1.0, batch_size=2), n_jobs=1, progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)

    for name in done:
        assert (cache / "train" / name).stat().st_mtime_ns == stamp, f"{name} was recomputed"
        assert (cache / "train" / name).read_bytes() == before[name]
    manifest = pd.read_csv(cache / "manifest.csv")
    assert len(manifest) == 6
    status = dict(zip(manifest["recording_id"], manifest["status"]))
    assert status == {"train000": "cached", "train001": "cached", "train002": "cached",
                      "train003": "ok", "test000": "ok", "test001": "ok"}
    assert set(manifest["path"]) == {f"{s}/{r}.npy" for s, r in zip(manifest["split"], manifest["recording_id"])}
    store = FeatureStore.open(comp, cache, FeatureConfig(seconds=1.0))
    for split in ("train", "test"):
        batch = store.batch(split, comp.ids(split))
        for rid, got in zip(comp.ids(split), batch):
            # float16 cache: within half a float16 step (0.0625 dB below 128 dB) of the float32 result
            assert np.abs(got - expected_entry(comp.path(split, rid), 1.0)).max() <= 0.032
    assert np.load(cache / "train" / "train003.npy", mmap_mode="r").dtype == np.float16


def test_cache_built_with_other_parameters_is_refused(tmp_path):
    """Re-using a cache with other feature parameters (n_mels 64, or another length) is a DataError naming
    the cache and the differing key; changing only how it is computed (batch_size, n_jobs) is accepted and
    recomputes nothing."""
    root = write_competition(tmp_path, n_train=1, n_test=1, seconds=0.5)
    comp = read_competition(root)
    cache = tmp_path / "cache"
    build_cache(comp, cache, FeatureConfig(seconds=0.5), n_jobs=1, progress=False)
    saved = yaml.safe_load((cache / "features.yaml").read_text())
    assert saved["n_mels"] == 128 and "batch_size" not in saved
    for other, key in ((FeatureConfig(seconds=0.5, n_mels=64), "n_mels"), (FeatureConfig(seconds=1.0), "seconds")):
        with pytest.raises(DataError, match=f"{cache}.*other feature parameters.*'{key}'"):
            build_cache(comp, cache, other, n_jobs=1, progress=False)
    entry = cache / "train" / "train000.npy"
    os.utime(entry, ns=(10**18, 10**18))
    build_cache(comp, cache, FeatureConfig(seconds=0.5, batch_size=1, n_jobs=1), progress=False)
    assert entry.stat().st_mtime_ns == 10**18


def test_cache_records_padded_audio_and_names_unreadable_files(tmp_path):
    """Audio shorter than the configured length is padded and marked in the manifest ('padded from 0.50 s');
    a cache build over an unreadable FLAC stops with a DataError naming that file."""
    root = write_competition(tmp_path, n_train=1, n_test=1, seconds=0.5)
    comp = read_competition(root)
    build_cache(comp, tmp_path / "cache", FeatureConfig(seconds=1.0), n_jobs=1, progress=False)
    manifest = pd.read_csv(tmp_path / "cache" / "manifest.csv")
    assert manifest["status"].tolist() == ["padded from 0.50 s", "padded from 0.50 s"]
    assert manifest["frames"].tolist() == [FeatureConfig(seconds=1.0).frames] * 2 == [63, 63]

    comp.path("test", "test000").write_bytes(b"\x00garbage" * 64)
    with pytest.raises(DataError, match=f"{comp.path('test', 'test000')}: cannot read audio"):
        build_cache(comp, tmp_path / "cache2", FeatureConfig(seconds=1.0), n_jobs=1, progress=False)


def test_npy_layout_loads_without_recomputation(tmp_path, monkeypatch):
    """The precomputed layout is read as is: with audio decoding and the log-mel made to fail, resolve_store
    returns a store whose batches equal the .npy arrays (float32; an array of 3700 frames zero-padded to
    3751); no cache folder is created, build_cache refuses it, and `features --data` only reports it."""
    root = write_competition(tmp_path, n_train=2, n_test=1, layout="npy")
    np.save(root / "train" / "train001.npy", np.full((128, 3700), -20.0, dtype=np.float32))

    def forbidden(*args, **kwargs):
        raise AssertionError("a precomputed array was recomputed")

    monkeypatch.setattr(features, "load_audio", forbidden)
    monkeypatch.setattr(LogMel, "forward", forbidden)
    comp, store, cache_dir = resolve_store(root, None, FeatureConfig())
    assert comp.layout == "npy" and cache_dir is None
    batch = store.batch("train", comp.train_ids)
    assert batch.shape == (2, 128, 3751) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[0], np.load(root / "train" / "train000.npy"))
    assert (batch[1, :, :3700] == -20.0).all() and not batch[1, :, 3700:].any()
    assert isinstance(store.load("test", "test000"), np.memmap)
    with pytest.raises(DataError, match="need no cache"):
        build_cache(comp, tmp_path / "cache", FeatureConfig())
    result = CliRunner().invoke(features_cmd, ["--data", str(root), "--n-jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "no cache needed" in result.output
    assert sorted(p.name for p in root.iterdir()) == ["sample_submission.csv", "test", "train", "train_fp.csv",
                                                      "train_tp.csv"]


def test_features_command_end_to_end_on_60s_recordings(tmp_path):
    """`rfcx-kit features --data DIR --n-jobs 1` (the installed console script) on a tiny folder of 60 s,
    48 kHz FLACs writes DIR/features_cache with a manifest row per recording (2 train + 1 test, status
    ok, 3751 frames), each entry a (128, 3751) float16 array that matches the float32 log-mel."""
    root = write_competition(tmp_path, n_train=2, n_test=1, seconds=60.0)
    script = Path(sys.executable).parent / "rfcx-kit"
    command = [str(script)] if script.exists() else [sys.executable, "-c", "from rfcx_kit.app.cli import main; main()"]
    result = subprocess.run([*command, "features", "--data", str(root), "--n-jobs", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "feature cache ready" in result.stdout
    cache = root / "features_cache"
    manifest = pd.read_csv(cache / "manifest.csv")
    assert list(manifest.columns) == ["split", "recording_id", "path", "frames", "status"]
    assert sorted(zip(manifest["split"], manifest["recording_id"])) == [
        ("test", "test000"), ("train", "train000"), ("train", "train001")]
    assert (manifest["frames"] == 3751).all() and (manifest["status"] == "ok").all()
    for row in manifest.itertuples():
        array = np.load(cache / row.path, mmap_mode="r")
        assert array.shape == (128, 3751) and array.dtype == np.float16
    got = np.load(cache / "train" / "train001.npy").astype(np.float32)
    assert np.abs(got - expected_entry(root / "train" / "train001.flac", 60.0)).max() <= 0.032
    assert yaml.safe_load((cache / "features.yaml").read_text())["seconds"] is None  # each at its own length
