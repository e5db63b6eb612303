"""Fold averaging, rank averaging, blending, scale checks and prior scaling (``rfcx-kit ensemble``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import rankdata

from rfcx_kit.app.submit import ensemble_cmd
from rfcx_kit.submit.ensemble import (
    parse_with,
    prior_scale,
    resolve_stage,
    train_prior_from_data,
    within_recording_ranks,
)
from rfcx_kit.core.errors import ConfigError, DataError
from rfcx_kit.core.io import sha256_file
from rfcx_kit.core.species import SPECIES_COLUMNS, competition_test_ids
from rfcx_kit.data.submission import validate_submission

from conftest import SHARED  # noqa: E402 - conftest is the one place that knows where ../shared is
RFCX = SHARED / "data" / "rfcx"
requires_shared = pytest.mark.skipif(not RFCX.is_dir(), reason=f"{RFCX} is absent (the real RFCX submission files)")
EXTERNAL_LOGITS = RFCX / "external" / "kuto5046_0206_232645_effb2sed_stage3_submission.csv"
EXTERNAL_PROBS = RFCX / "external" / "kuto5046_0211_095250_effb2sed_stage3v2_submission.csv"

IDS = ["r1", "r2", "r3"]


def _frame(values: np.ndarray, ids: list[str] = IDS) -> pd.DataFrame:
    frame = pd.DataFrame(np.asarray(values, dtype=np.float64), columns=SPECIES_COLUMNS)
    frame.insert(0, "recording_id", ids)
    return frame


def _write(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def _make_run(root: Path, folds: list[np.ndarray], stage: str = "stage1", shuffle: bool = True) -> Path:
    """runs/NAME/<stage>/fold{k}/test.csv (+ test_ids.txt); rows of later folds are written in another order."""
    run = root / "runs" / "r"
    for k, values in enumerate(folds):
        frame = _frame(values)
        if shuffle and k % 2:
            frame = frame.iloc[::-1]
        _write(frame, run / stage / f"fold{k}" / "test.csv")
    (run / stage / "test_ids.txt").write_text("\n".join(IDS) + "\n")
    return run


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(ensemble_cmd, args)
    return result.exit_code, result.output


def _read(path: Path, ids: list[str] = IDS) -> np.ndarray:
    frame = validate_submission(path, ids)
    return frame.set_index("recording_id").loc[ids, SPECIES_COLUMNS].to_numpy()


# ------------------------------------------------------------------------------------------------------
# Mean and rank averaging of hand-made fold predictions


def test_mean_of_folds_matches_hand_computation(tmp_path: Path):
    f0, f1, f2 = np.full((3, 24), 0.2), np.full((3, 24), 0.4), np.full((3, 24), 0.6)
    f0[0, 3], f1[0, 3], f2[0, 3] = 0.9, 0.6, 0.3  # r1/s3: mean 0.6
    f0[2, 23], f1[2, 23], f2[2, 23] = 0.0, 0.0, 0.3  # r3/s23: mean 0.1
    run = _make_run(tmp_path, [f0, f1, f2])
    out = tmp_path / "submissions" / "m.csv"
    code, output = _run(["--run", str(run), "--out", str(out)])
    assert code == 0, output
    expected = np.full((3, 24), 0.4)
    expected[0, 3], expected[2, 23] = 0.6, 0.1
    np.testing.assert_allclose(_read(out), expected, rtol=0, atol=1e-12)
    # Rows follow test_ids.txt although fold1 was written in reverse order.
    assert pd.read_csv(out)["recording_id"].tolist() == IDS
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.csv"]  # written atomically: no temp file left
    # The run remembers what was made from which stage (rfcx-kit report matches sha256 with the submit log).
    record = pd.read_csv(run / "submissions.csv", dtype=str)
    assert record[["stage", "sha256", "method", "blended"]].values.tolist() == [["stage1", sha256_file(out), "mean", "0"]]


def test_rank_average_uses_within_recording_ranks(tmp_path: Path):
    increasing = np.tile(np.linspace(0.01, 0.24, 24), (3, 1))  # s0 lowest ... s23 highest
    s0_top = np.full((3, 24), 0.1)
    s0_top[:, 0] = 0.9  # s0 highest, the other 23 tied
    run = _make_run(tmp_path, [increasing, s0_top])
    out = tmp_path / "rank.csv"
    code, output = _run(["--run", str(run), "--method", "rank", "--out", str(out)])
    assert code == 0, output
    # increasing: rank of s_k is k/23. s0_top: s0 -> 1; the 23 tied share ranks 1..23, mean 12 -> (12-1)/23.
    expected = np.empty(24)
    expected[0] = (0 / 23 + 1.0) / 2
    expected[1:] = (np.arange(1, 24) / 23 + 11 / 23) / 2
    np.testing.assert_allclose(_read(out), np.tile(expected, (3, 1)), atol=1e-12)


def test_within_recording_ranks_by_hand():
    np.testing.assert_allclose(within_recording_ranks(np.array([[0.2, 0.9, 0.2]])), [[0.25, 1.0, 0.25]])
    np.testing.assert_allclose(within_recording_ranks(np.array([[3.0, -1.0, 0.0, 7.0]])), [[2 / 3, 0.0, 1 / 3, 1.0]])


def test_weights_blend_a_run_with_another_file(tmp_path: Path):
    run = _make_run(tmp_path, [np.full((3, 24), 0.2), np.full((3, 24), 0.4)])  # run mean 0.3
    other = _write(_frame(np.full((3, 24), 0.9)), tmp_path / "other.csv")
    out = tmp_path / "b.csv"
    code, output = _run(["--run", str(run), "--run-weight", "1", "--with", f"{other}:2", "--out", str(out)])
    assert code == 0, output
    np.testing.assert_allclose(_read(out), np.full((3, 24), (0.3 * 1 + 0.9 * 2) / 3), atol=1e-12)


def test_latest_stage_is_the_highest_cycle(tmp_path: Path):
    run = _make_run(tmp_path, [np.full((3, 24), 0.1)], stage="stage1")
    _make_run(tmp_path, [np.full((3, 24), 0.2)], stage="cycle2")
    _make_run(tmp_path, [np.full((3, 24), 0.3)], stage="cycle10")  # numeric, not text order
    (run / "cycle11").mkdir()  # a cycle still training: no fold predictions yet, so not "latest"
    assert resolve_stage(run, "latest").name == "cycle10"
    assert resolve_stage(run, "stage1").name == "stage1"
    out = tmp_path / "l.csv"
    assert _run(["--run", str(run), "--out", str(out)])[0] == 0
    np.testing.assert_allclose(_read(out), 0.3)
    with pytest.raises(DataError, match=r"stage 'cycle3'; stages with them: stage1, cycle2, cycle10"):
        resolve_stage(run, "cycle3")


def test_latest_without_cycles_is_stage1(tmp_path: Path):
    run = _make_run(tmp_path, [np.full((3, 24), 0.1)])
    assert resolve_stage(run).name == "stage1"


def test_a_fold_with_other_ids_is_refused_naming_it(tmp_path: Path):
    run = _make_run(tmp_path, [np.full((3, 24), 0.1), np.full((3, 24), 0.2)])
    fold1 = run / "stage1" / "fold1" / "test.csv"
    _write(_frame(np.full((2, 24), 0.2), ids=["r1", "r3"]), fold1)
    code, output = _run(["--run", str(run), "--out", str(tmp_path / "x.csv")])
    assert code == 2
    assert f"Error: {fold1}: 2 rows, expected 3; missing recording(s) 1 (r2)" in output
    assert not (tmp_path / "x.csv").exists()


# ------------------------------------------------------------------------------------------------------
# Scales: logits and probabilities are never silently mixed


def test_mixing_logits_and_probabilities_is_refused_then_normalised(tmp_path: Path):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (3, 24))
    probs = rng.random((3, 24))
    lf, pf = _write(_frame(logits), tmp_path / "l.csv"), _write(_frame(probs), tmp_path / "p.csv")
    code, output = _run(["--with", str(lf), "--with", str(pf), "--out", str(tmp_path / "o.csv")])
    assert code == 2
    assert "refusing to average logits with probabilities" in output and "--to-prob" in output and "--method rank" in output
    assert not (tmp_path / "o.csv").exists()

    code, output = _run(["--with", str(lf), "--with", f"{pf}:3", "--to-prob", "--out", str(tmp_path / "o.csv")])
    assert code == 0, output
    np.testing.assert_allclose(_read(tmp_path / "o.csv"), (1 / (1 + np.exp(-logits)) + 3 * probs) / 4, atol=1e-12)

    # Rank averaging is scale-free: the logit file ranks exactly as its sigmoid does.
    as_probs = _write(_frame(1 / (1 + np.exp(-logits))), tmp_path / "lp.csv")
    assert _run(["--with", str(lf), "--with", str(pf), "--method", "rank", "--out", str(tmp_path / "r1.csv")])[0] == 0
    assert _run(["--with", str(as_probs), "--with", str(pf), "--method", "rank", "--out", str(tmp_path / "r2.csv")])[0] == 0
    np.testing.assert_allclose(_read(tmp_path / "r1.csv"), _read(tmp_path / "r2.csv"), atol=1e-12)


def test_declared_scales(tmp_path: Path):
    small_logits = _write(_frame(np.full((3, 24), 0.3)), tmp_path / "l.csv")  # in [0,1]: detected as probability
    probs = _write(_frame(np.full((3, 24), 0.6)), tmp_path / "p.csv")
    code, output = _run(["--with", f"{small_logits}:1:logit", "--with", str(probs), "--out", str(tmp_path / "o.csv")])
    assert code == 2 and "logits (declared" in output
    wide = _write(_frame(np.full((3, 24), 1.5)), tmp_path / "w.csv")
    code, output = _run(["--with", f"{wide}:1:prob", "--out", str(tmp_path / "o.csv")])
    assert code == 2 and "declared as probabilities, but values reach 1.5" in output


def test_all_logits_average_as_logits(tmp_path: Path):
    a = _write(_frame(np.full((3, 24), -2.0)), tmp_path / "a.csv")
    b = _write(_frame(np.full((3, 24), 4.0)), tmp_path / "b.csv")
    code, output = _run(["--with", str(a), "--with", str(b), "--out", str(tmp_path / "o.csv")])
    assert code == 0, output
    np.testing.assert_allclose(_read(tmp_path / "o.csv"), 1.0)
    assert "logits in [1, 1]" in output


@requires_shared
def test_real_logit_and_probability_submissions(tmp_path: Path):
    """kuto5046's stage-3 submission (logits) and stage-3 v2 submission (probabilities)."""
    ids = list(competition_test_ids())
    logits = pd.read_csv(EXTERNAL_LOGITS, dtype={"recording_id": str}).set_index("recording_id").loc[ids].to_numpy()
    probs = pd.read_csv(EXTERNAL_PROBS, dtype={"recording_id": str}).set_index("recording_id").loc[ids].to_numpy()
    out = tmp_path / "blend.csv"

    code, output = _run(["--with", str(EXTERNAL_LOGITS), "--with", str(EXTERNAL_PROBS), "--out", str(out)])
    assert code == 2 and "refusing to average logits with probabilities" in output
    assert EXTERNAL_LOGITS.name in output and EXTERNAL_PROBS.name in output
    assert not out.exists()

    code, output = _run(["--with", str(EXTERNAL_LOGITS), "--with", f"{EXTERNAL_PROBS}:0.5", "--to-prob", "--out", str(out)])
    assert code == 0, output
    np.testing.assert_allclose(_read(out, ids), (1 / (1 + np.exp(-logits)) + 0.5 * probs) / 1.5, atol=1e-12)

    code, output = _run(["--with", str(EXTERNAL_LOGITS), "--with", str(EXTERNAL_PROBS), "--method", "rank", "--out", str(out)])
    assert code == 0, output
    ranks = lambda x: (rankdata(x, axis=1) - 1) / 23  # noqa: E731
    np.testing.assert_allclose(_read(out, ids), (ranks(logits) + ranks(probs)) / 2, atol=1e-12)


# ------------------------------------------------------------------------------------------------------
# Prior scaling


def test_prior_scale_by_hand():
    p = np.array([[0.0, 0.5, 0.8, 0.25, 1.0]])
    test = np.array([0.3, 0.2, 0.5, 0.5, 0.9])
    train = np.array([0.3, 0.5, 0.5, 0.2, 0.1])
    # odds x (test odds / train odds): 0.5 -> 1 x 0.25 = 0.25 odds -> 0.2; 0.25 -> 1/3 x 4 = 4/3 -> 4/7.
    np.testing.assert_allclose(prior_scale(p, test, train), [[0.0, 0.2, 0.8, 4 / 7, 1.0]], atol=1e-12)
    with pytest.raises(DataError, match=r"train prior of s1 is 0; it must lie strictly between 0 and 1"):
        prior_scale(p, test, np.array([0.3, 0.0, 0.5, 0.2, 0.1]))


def _data_folder(root: Path) -> Path:
    """48 labelled recordings: TP for species i % 24 in r00..r29 (s0..s5 twice), FP only in r30..r47."""
    data = root / "data"
    data.mkdir()
    cols = "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max"
    tp = [f"r{i:02d},{i % 24},1,1,100,2,200" for i in range(30)] + ["r00,0,4,3,100,4,200"]  # 2nd box: same recording
    fp = [f"r{i:02d},0,1,1,100,2,200" for i in range(30, 48)]
    (data / "train_tp.csv").write_text("\n".join([cols, *tp]) + "\n")
    (data / "train_fp.csv").write_text("\n".join([cols, *fp]) + "\n")
    sample = _frame(np.full((3, 24), 0.5))
    sample.to_csv(data / "sample_submission.csv", index=False)
    return data


def test_train_prior_counts_recordings_with_a_tp(tmp_path: Path):
    prior = train_prior_from_data(_data_folder(tmp_path))
    np.testing.assert_allclose(prior, [2 / 48] * 6 + [1 / 48] * 18)


def test_prior_scaling_command(tmp_path: Path):
    data = _data_folder(tmp_path)
    run = _make_run(tmp_path, [np.full((3, 24), 0.5)])
    test_prior = tmp_path / "test_prior.csv"
    pd.DataFrame({"species_id": range(24), "prior": [0.5] * 12 + [0.1] * 12}).to_csv(test_prior, index=False)
    out = tmp_path / "ps.csv"
    code, output = _run(["--run", str(run), "--prior-scaling", "--data", str(data), "--test-prior", str(test_prior),
                         "--out", str(out)])
    assert code == 0, output
    q = np.array([2 / 48] * 6 + [1 / 48] * 18)
    t = np.array([0.5] * 12 + [0.1] * 12)
    ratio = (t / (1 - t)) / (q / (1 - q))  # p = 0.5 has odds 1, so the new odds are the ratio itself
    np.testing.assert_allclose(_read(out), np.tile(ratio / (1 + ratio), (3, 1)), atol=1e-12)

    # The run's data.yaml names the folder: no --data needed; the shipped test prevalence is the default.
    (run / "data.yaml").write_text(f"data: {data}\n")
    code, output = _run(["--run", str(run), "--prior-scaling", "--out", str(out)])
    assert code == 0 and "prior scaling: odds x" in output


def test_prior_scaling_refusals(tmp_path: Path):
    run = _make_run(tmp_path, [np.full((3, 24), 0.5)])
    out = tmp_path / "x.csv"
    code, output = _run(["--run", str(run), "--prior-scaling", "--out", str(out)])
    assert code == 2 and "needs the train prior: pass --data DIR" in output
    code, output = _run(["--run", str(run), "--prior-scaling", "--method", "rank", "--data", str(_data_folder(tmp_path)),
                         "--out", str(out)])
    assert code == 2 and "holds ranks; use --method mean" in output
    logits = _write(_frame(np.full((3, 24), 2.0)), tmp_path / "l.csv")
    code, output = _run(["--with", str(logits), "--prior-scaling", "--train-prior", str(_uniform_prior(tmp_path)),
                         "--out", str(out)])
    assert code == 2 and "holds logits; add --to-prob" in output
    assert not out.exists()


def _uniform_prior(root: Path) -> Path:
    path = root / "train_prior.csv"
    pd.DataFrame({"species_id": range(24), "prior": 0.1}).to_csv(path, index=False)
    return path


# ------------------------------------------------------------------------------------------------------
# Option parsing


@pytest.mark.parametrize("spec, expected", [
    ("a.csv", (Path("a.csv"), 1.0, None)),
    ("a.csv:2", (Path("a.csv"), 2.0, None)),
    ("a.csv:0.5:logit", (Path("a.csv"), 0.5, "logit")),
    ("a.csv:prob", (Path("a.csv"), 1.0, "prob")),
    ("C:/x/a.csv:2", (Path("C:/x/a.csv"), 2.0, None)),
])
def test_parse_with(spec: str, expected: tuple):
    assert parse_with(spec) == expected


@pytest.mark.parametrize("spec, message", [("a.csv:-1", "positive"), ("a.csv:x:logit", "is not a weight")])
def test_parse_with_errors(spec: str, message: str):
    with pytest.raises(ConfigError, match=message):
        parse_with(spec)


def test_nothing_to_ensemble(tmp_path: Path):
    code, output = _run(["--out", str(tmp_path / "o.csv")])
    assert code == 2 and "nothing to ensemble" in output
