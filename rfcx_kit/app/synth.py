"""``rfcx-kit synth``: write an RFCX-shaped synthetic data set with hidden ground truth."""

from __future__ import annotations

import time
from pathlib import Path

import click

from rfcx_kit.core.errors import ConfigError
from rfcx_kit.app.errors import cli_errors
from rfcx_kit.data.synth.scene import MAX_SECONDS, MIN_SECONDS, PROFILES, SynthConfig, plan_dataset, synth_config
from rfcx_kit.data.synth.writer import FORMATS, write_dataset
from rfcx_kit.data.synth.birdclef import PROFILE as BIRDCLEF, YEARS, BirdclefSynth, write_birdclef
from rfcx_kit.app.options import JOBS, SEED, SHARE, at_least, finite


def _parse_snr(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"synth: --snr wants LOW,HIGH in dB (e.g. -3,15), got {text!r}") from None
    return low, high


@click.command("synth")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="New (or empty) folder to write; the same command resumes an interrupted run.")
@click.option("--train", "n_train", type=at_least(1), default=SynthConfig.n_train, show_default=True, help="Train recordings.")
@click.option("--test", "n_test", type=at_least(1), default=SynthConfig.n_test, show_default=True, help="Test recordings.")
@click.option("--seconds", type=finite(MIN_SECONDS, MAX_SECONDS), default=SynthConfig.seconds, show_default=True,
              help="Recording length, 10-60 (the competition: 60; shorter FLACs are padded by the reader).")
@click.option("--seed", type=SEED, default=SynthConfig.seed, show_default=True, help="Same seed and sizes: same bytes.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="flac", show_default=True,
              help="flac: 48 kHz 16-bit audio; npy: log-mel arrays on the profile's grid (fast, for large sizes).")
@click.option("--profile", type=click.Choice([*PROFILES, BIRDCLEF]), default="rfcx", show_default=True,
              help="rfcx: the competition's shape (species prevalence as RFCX's test set, 128 x 3751 arrays); demo: "
                   "every species in 12 % of recordings, SNR 6..20 dB, 1 call in 8 labelled, 64 x 1876 arrays "
                   "(what `rfcx-kit demo` uses). The options below override the profile. birdclef: a BirdCLEF "
                   "folder of --year's layout (focal clips with weak labels, unlabelled soundscapes at other sites, "
                   "test soundscapes with a 5-s truth; the --birdclef-* options, --test and --seed apply).")
@click.option("--year", type=click.Choice([str(y) for y in YEARS]), default="2025", show_default=True,
              help="birdclef: whose layout (2023-2024: train_metadata.csv, eBird taxonomy; 2025-2026: train.csv, "
                   "taxonomy.csv; 2026 adds train_soundscapes_labels.csv).")
@click.option("--birdclef-species", type=at_least(2), default=BirdclefSynth.species, show_default=True,
              help="birdclef: classes.")
@click.option("--birdclef-clips", type=at_least(1), default=BirdclefSynth.clips_per_species, show_default=True,
              help="birdclef: focal clips per class.")
@click.option("--birdclef-soundscapes", type=at_least(0), default=BirdclefSynth.soundscapes, show_default=True,
              help="birdclef: unlabelled soundscapes.")
@click.option("--birdclef-seconds", type=finite(5, 600), default=BirdclefSynth.soundscape_seconds, show_default=True,
              help="birdclef: soundscape length (2023: 600, 2024: 240, 2025-2026: 60).")
@click.option("--snr", default=None, show_default=f"{SynthConfig.snr_low:g},{SynthConfig.snr_high:g} (rfcx)",
              help="In-band SNR range of calls and confusers, LOW,HIGH dB.")
@click.option("--prevalence", type=SHARE, default=None,
              help="Share of recordings every species calls in [default: RFCX's per-species test prevalence].")
@click.option("--confusers", type=finite(0, 10), default=None,
              help="Scale of the unlabelled confusers (same band, other pattern) [default: 1].")
@click.option("--n-mels", type=at_least(8, 256), default=None, help="npy format: mel bins [default: 128].")
@click.option("--hop-length", type=at_least(64, 4096), default=None, help="npy format: hop in samples at 32 kHz [default: 512].")
@click.option("--label-scale", type=finite(0, 20, low_open=True), default=SynthConfig.label_scale, show_default=True,
              help="Multiply the real TP-label ratio (1 = RFCX's: ~0.26 TP rows per train recording).")
@click.option("--tp-share", type=SHARE, default=None, show_default=f"none (rfcx), {PROFILES['demo']['tp_share']:g} (demo)",
              help="Instead of RFCX's per-species TP rows, give this share of the planted train calls a TP row, "
                   "drawn over all calls (louder ones more likely), e.g. 0.08: 1 call in 12.5.")
@click.option("--n-jobs", type=JOBS, default=-1, show_default=True, help="Worker processes (-1: all cores).")
@click.option("--preview", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a PNG of one train recording's spectrogram with its planted boxes "
                   "(without --out: only the PNG).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar.")
@cli_errors
def synth_cmd(out: Path | None, n_train: int, n_test: int, seconds: float, seed: int, fmt: str, profile: str,
              year: str, birdclef_species: int, birdclef_clips: int, birdclef_soundscapes: int,
              birdclef_seconds: float, snr: str | None, prevalence: float | None, confusers: float | None,
              n_mels: int | None, hop_length: int | None, label_scale: float, tp_share: float | None, n_jobs: int,
              preview: Path | None, progress: bool) -> None:
    """Write an RFCX-shaped synthetic data set with hidden ground truth.

    \b
    OUT gets the competition layout (train_tp.csv, train_fp.csv, sample_submission.csv, train/, test/)
    and truth/ (every planted call and confuser, presence matrices, README.md), which the pipeline never
    reads. 24 species call in their real bands and lengths; labels are as incomplete as RFCX's.
    """
    if profile == BIRDCLEF:
        if out is None:
            raise ConfigError("synth --profile birdclef: give --out DIR")
        start = time.perf_counter()
        cfg_b = BirdclefSynth(year=int(year), species=birdclef_species, clips_per_species=birdclef_clips,
                              soundscapes=birdclef_soundscapes, test=n_test, soundscape_seconds=birdclef_seconds,
                              seed=seed)
        recordings = write_birdclef(cfg_b, out, n_jobs=n_jobs, progress=progress)
        parts = recordings["part"].value_counts()
        click.echo(f"{out}: BirdCLEF {year} layout, {cfg_b.species} classes, {parts.get('focal', 0)} focal clips, "
                   f"{parts.get('soundscape', 0)} unlabelled and {parts.get('test', 0)} test soundscapes of "
                   f"{birdclef_seconds:g} s (32 kHz OGG), truth/ beside; {time.perf_counter() - start:.1f} s")
        return
    low, high = _parse_snr(snr) if snr is not None else (None, None)
    cfg = synth_config(profile, n_train=n_train, n_test=n_test, seconds=seconds, seed=seed, snr_low=low,
                       snr_high=high, label_scale=label_scale, tp_share=tp_share, prevalence=prevalence,
                       confusers=confusers, n_mels=n_mels, hop_length=hop_length)
    cfg.validate()
    if out is None and preview is None:
        raise ConfigError("synth: give --out DIR (and/or --preview PNG)")
    plan = None
    if out is not None:
        start = time.perf_counter()
        plan, stats = write_dataset(cfg, out, fmt=fmt, n_jobs=n_jobs, progress=progress)
        wall = time.perf_counter() - start
        done = stats[~stats["skipped"]]
        events = plan.events
        train = events[events["split"] == "train"]
        tp_rows, fp_rows = int((train["labelled"] == "tp").sum()), int((train["labelled"] == "fp").sum())
        n_train_calls = int((train["kind"] == "call").sum())
        grid = f", {cfg.n_mels} x {cfg.frames}" if fmt == "npy" else ""
        click.echo(f"{out}: {n_train} train + {n_test} test recordings ({fmt}{grid}, {seconds:g} s, profile {profile}), "
                   f"{tp_rows} TP rows ({tp_rows / max(1, n_train_calls):.1%} of {n_train_calls} planted train "
                   f"calls), {fp_rows} FP rows; "
                   f"{int((events['kind'] == 'call').sum())} calls and {int((events['kind'] == 'confuser').sum())} "
                   f"confusers planted (truth/)")
        per_recording = done["seconds"].mean() if len(done) else float("nan")
        click.echo(f"{len(done)} recordings written in {wall:.1f} s ({per_recording:.3f} s of worker time each"
                   + (f", {len(stats) - len(done)} already there" if len(done) < len(stats) else "")
                   + f"; {int((done['gain'] < 1).sum())} scaled down to stay below full scale)")
    if preview is not None:
        from rfcx_kit.data.synth.preview import write_preview

        write_preview(plan if plan is not None else plan_dataset(cfg), preview)
        click.echo(f"preview: {preview}")
