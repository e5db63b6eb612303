"""The hand-written parts against the libraries that could replace them: the figures behind each "keep" comment.

* lock (``core/lock.py`` ``folder_lock``) against ``filelock``'s ``FileLock`` (flock) and ``SoftFileLock``: a real
  holder process, then a second writer from this process (refused at once? a message naming the holder?), the
  holder SIGKILLed (is the lock taken over?), a lock file naming another host, the file left after release;
* LR schedule (``method/train.py`` ``learning_rate``) against ``timm.scheduler.CosineLRScheduler`` stepped per
  update (``t_in_epochs=False``, ``lr_min=0``, ``warmup_prefix=True``): max |difference| of the sequences on the
  demo's schedule (24 x 20 steps, no warm-up), the defaults' (50 x 20) and one with a 1-epoch warm-up (30 x 20),
  and whether Adam's weights after 480 steps are bit-identical under both;
* mixup (``model/augment.py``) against ``timm.data.Mixup``: what it does with (M, 24) multi-hot targets, per-cell
  loss weights, a share of crops, odd batches, lam's fold, seeded/resumed draws, mixing the pooled sequence, speed;
* mel filterbank (``data/features.py`` ``mel_filterbank``) against ``librosa.filters.mel`` (slaney scale and norm,
  float32) and torchaudio if importable: max |difference|, what it changes in the float16 cache, time per call,
  ``import librosa`` + first call in a fresh interpreter, and the size of what librosa alone brings in.

Works offline, about 20 s on 2 cores; writes ``$RFCX_BENCH_DIR/handwritten.json`` and prints a markdown table.

    python benchmarks/handwritten.py
"""

from __future__ import annotations

import argparse
import importlib.metadata
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

Row = dict[str, str]


def _row(part: str, figure: str, ours: object, library: object) -> Row:
    return {"part": part, "figure": figure, "rfcx-kit": common.fmt(ours) if isinstance(ours, float) else str(ours),
            "library": common.fmt(library) if isinstance(library, float) else str(library)}


# ---------------------------------------------------------------------------------------------------
# 1. The lock
# ---------------------------------------------------------------------------------------------------

_HOLDER = r"""
import os, sys, time
kind, folder = sys.argv[1], sys.argv[2]
if kind == "rfcx-kit":
    from rfcx_kit.core.lock import folder_lock
    ctx = folder_lock(folder, "stage1")
else:
    import filelock
    ctx = getattr(filelock, kind)(os.path.join(folder, ".rfcx-kit.lock"), timeout=0)
with ctx:
    print("held", flush=True)
    time.sleep(120)
"""


def _start_holder(kind: str, folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, kind, str(folder)], stdout=subprocess.PIPE, text=True,
                            cwd=common.REPO)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held", f"{kind} holder did not start"
    return proc


def _try_once(kind: str, folder: Path) -> tuple[bool, float, str]:
    """A second writer that does not wait: (acquired, seconds, the refusal's message)."""
    import filelock

    from rfcx_kit.core.lock import LockedError, folder_lock

    start = time.perf_counter()
    try:
        if kind == "rfcx-kit":
            with folder_lock(folder, "stage1 (second writer)"):
                pass
        else:
            lock = getattr(filelock, kind)(str(folder / ".rfcx-kit.lock"), timeout=0)
            lock.acquire()
            lock.release()
        return True, time.perf_counter() - start, ""
    except (LockedError, filelock.Timeout) as exc:
        return False, time.perf_counter() - start, str(exc)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # reaped, as a shell would: a zombie still answers kill(pid, 0)


def bench_lock(rows: list[Row], result: dict) -> None:
    import logging

    import filelock

    logging.getLogger("rfcx_kit.core.lock").setLevel(logging.ERROR)  # the take-over warning is expected here
    host = socket.gethostname()
    out: dict = {"filelock": filelock.__version__}
    with tempfile.TemporaryDirectory(prefix="handwritten-lock-") as tmp:
        for kind in ("rfcx-kit", "FileLock", "SoftFileLock"):
            folder = Path(tmp) / kind
            folder.mkdir()
            proc = _start_holder(kind, folder)
            content = (folder / ".rfcx-kit.lock").read_text()
            acquired, seconds, message = _try_once(kind, folder)
            names = {"pid": str(proc.pid) in message, "host": host in message, "command": "stage1" in message}
            waits = None
            if kind != "rfcx-kit":  # the default arguments (timeout=-1): does a second writer wait?
                lock = getattr(filelock, kind)(str(folder / ".rfcx-kit.lock"))
                done = threading.Event()

                def wait_for_it(lock=lock, done=done) -> None:
                    lock.acquire()
                    lock.release()
                    done.set()

                threading.Thread(target=wait_for_it, daemon=True).start()
                waits = not done.wait(1.0)
            killed = time.perf_counter()
            _kill(proc)
            if kind == "rfcx-kit":
                taken, _, _ = _try_once(kind, folder)
            else:
                taken = done.wait(10.0)  # the waiting writer gets it
            after_kill = time.perf_counter() - killed
            taken_now = _try_once(kind, folder)[0]  # and it is free again afterwards
            # a lock written on another host (a shared folder): refused, and does the message name it?
            (folder / ".rfcx-kit.lock").unlink(missing_ok=True)
            if kind == "rfcx-kit":
                record = {"pid": 4242, "host": "other-host", "command": "stage1", "since": "2026-01-01T00:00:00Z"}
                (folder / ".rfcx-kit.lock").write_text(json.dumps(record))
            elif kind == "SoftFileLock":
                (folder / ".rfcx-kit.lock").write_text("4242\nother-host\n")
            foreign = _try_once(kind, folder)
            (folder / ".rfcx-kit.lock").unlink(missing_ok=True)
            out[kind] = {"file_content": content, "refused": not acquired, "refusal_s": seconds, "message": message,
                         "message_names": names, "default_waits": waits, "taken_after_sigkill": bool(taken),
                         "after_sigkill_s": after_kill, "free_after": taken_now, "foreign_refused": not foreign[0],
                         "foreign_message": foreign[2]}
        # after a clean release: is a file left behind?
        left = {}
        for kind in ("FileLock", "SoftFileLock"):
            path = Path(tmp) / f"left-{kind}.lock"
            with getattr(filelock, kind)(str(path)):
                pass
            left[kind] = path.exists()
    result["lock"] = out
    ours, flock, soft = out["rfcx-kit"], out["FileLock"], out["SoftFileLock"]

    def refusal(r: dict) -> str:
        return f"{'yes' if r['refused'] else 'no'}, {1000 * r['refusal_s']:.1f} ms" if r["refused"] else "no"

    def named(r: dict) -> str:
        return "/".join(k for k, v in r["message_names"].items() if v) or "none"

    def what_file(r: dict) -> str:
        c = r["file_content"]
        return "empty" if not c else ("pid, host, command, since (JSON)" if c.startswith("{") else
                                      "pid, host, start token")

    rows += [
        _row("lock", "2nd writer refused (timeout=0 for filelock)", refusal(ours),
             f"FileLock {refusal(flock)}; SoftFileLock {refusal(soft)}"),
        _row("lock", "2nd writer with default arguments", "refused",
             f"waits (still waiting after 1 s: {flock['default_waits']} / {soft['default_waits']})"),
        _row("lock", "refusal names holder's pid/host/command (same host)", named(ours),
             f"FileLock {named(flock)}; SoftFileLock {named(soft)}"),
        _row("lock", "lock file names its holder", what_file(ours),
             f"FileLock {what_file(flock)}; SoftFileLock {what_file(soft)}"),
        _row("lock", "holder SIGKILLed: next writer gets it",
             f"{ours['taken_after_sigkill']}, {1000 * ours['after_sigkill_s']:.0f} ms",
             f"FileLock {flock['taken_after_sigkill']}, {1000 * flock['after_sigkill_s']:.0f} ms; "
             f"SoftFileLock {soft['taken_after_sigkill']}, {1000 * soft['after_sigkill_s']:.0f} ms"),
        _row("lock", "lock from another host: refused, holder named",
             f"{ours['foreign_refused']}, {'other-host' in ours['foreign_message']}",
             f"FileLock: no record (flock across hosts only through NFS locking; not measured); SoftFileLock "
             f"{soft['foreign_refused']}, {'other-host' in soft['foreign_message']}"),
        _row("lock", "lock file left after release", False,
             f"FileLock {left['FileLock']}; SoftFileLock {left['SoftFileLock']}"),
    ]
    result["lock"]["left_after_release"] = left


# ---------------------------------------------------------------------------------------------------
# 2. The LR schedule
# ---------------------------------------------------------------------------------------------------


def _timm_lrs(total: int, warmup: int, base: float, init: float, shift: int = 0) -> list[float]:
    from timm.scheduler import CosineLRScheduler

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    sched = CosineLRScheduler(opt, t_initial=total - warmup, lr_min=0.0, warmup_t=warmup, warmup_lr_init=init,
                              warmup_prefix=True, t_in_epochs=False, cycle_limit=1)
    out = []
    for step in range(total):
        sched.step_update(step + shift)
        out.append(opt.param_groups[0]["lr"])
    return out


def _adam_weights(total: int, base: float, fused: bool, use_timm: bool) -> torch.Tensor:
    from timm.scheduler import CosineLRScheduler

    from rfcx_kit.method.train import learning_rate

    gen = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4096, generator=gen))
    opt = torch.optim.Adam([w], lr=base, **({"fused": True} if fused else {}))
    sched = CosineLRScheduler(opt, t_initial=total, lr_min=0.0, t_in_epochs=False) if use_timm else None
    grads = torch.randn(total, 4096, generator=gen)
    for step in range(total):
        if sched is not None:
            sched.step_update(step)
        else:
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, total, base, "cosine", 0)
        w.grad = grads[step].clone()
        opt.step()
    return w.detach().clone()


def bench_lr(rows: list[Row], result: dict) -> None:
    from rfcx_kit.method.train import learning_rate

    out = {}
    cases = [("demo 24x20, no warm-up, 3e-3", 24, 20, 0, 3e-3, [(0.0, 0)]),
             ("defaults 50x20, no warm-up, 1e-3", 50, 20, 0, 1e-3, [(0.0, 0)]),
             ("30x20, warm-up 1 epoch, 1e-3", 30, 20, 1, 1e-3, [(0.0, 0), ("base/W", 0), (0.0, 1)])]
    for name, epochs, steps, warm_epochs, base, variants in cases:
        total, warmup = epochs * steps, warm_epochs * steps
        ours = [learning_rate(t, total, base, "cosine", warmup) for t in range(total)]
        for init, shift in variants:
            value = base / warmup if init == "base/W" else init
            theirs = _timm_lrs(total, warmup, base, value, shift)
            diff = max(abs(a - b) for a, b in zip(ours, theirs))
            bits = sum(a != b for a, b in zip(ours, theirs))
            f32 = sum(np.float32(a) != np.float32(b) for a, b in zip(ours, theirs))
            label = f"{name}" + (f", warmup_lr_init={init}" if warmup else "") + (", step_update(t+1)" if shift else "")
            out[label] = {"max_abs": diff, "max_rel": diff / base, "steps_differing_bits": bits,
                          "steps_differing_float32": int(f32), "steps": total, "first_two_ours": ours[:2],
                          "first_two_timm": theirs[:2]}
            rows.append(_row("LR", f"max abs(dLR)/base, {label}", "0",
                             f"{diff / base:.2g} (last bit differs in {bits}/{total} steps, float32 in {f32})"))
    same = {fused: torch.equal(_adam_weights(480, 3e-3, fused, False), _adam_weights(480, 3e-3, fused, True))
            for fused in (False, True)}
    out["adam_480_steps_bit_identical"] = same
    rows.append(_row("LR", "Adam weights after 480 steps (demo schedule) bit-identical", "-",
                     f"plain {same[False]}, fused {same[True]}"))
    rows.append(_row("LR", "needs an optimizer object", "no (pure function of step)", "yes"))
    result["lr"] = out


# ---------------------------------------------------------------------------------------------------
# 3. Mixup
# ---------------------------------------------------------------------------------------------------


def bench_mixup(rows: list[Row], result: dict) -> None:
    from timm.data import Mixup

    from rfcx_kit.core.config import AugmentConfig
    from rfcx_kit.model.augment import batch_generator, mix, mix_targets, mixup_plan

    k, m = 24, 16
    out: dict = {"call_signature": str(inspect.signature(Mixup.__call__)),
                 "label_smoothing_default": inspect.signature(Mixup.__init__).parameters["label_smoothing"].default}
    multi = torch.zeros(m, k)
    multi[torch.arange(m), torch.arange(m) % k] = 1.0  # crop i calls species i only
    x = torch.randn(m, 3, 8, 16)
    np.random.seed(0)
    _, plain = Mixup(mixup_alpha=0.4, num_classes=k, label_smoothing=0.0)(x.clone(), multi.clone())
    out["multi_hot_without_multi_label_shape"] = list(plain.shape)
    rows.append(_row("mixup", "(16, 24) multi-hot targets, default Mixup", "(16, 24) union",
                     f"{tuple(plain.shape)}, no error"))

    # multi_label=True, a share of 0.5, per element: the partner's species' target, the share mixed, lam's fold
    timm_mix = Mixup(mixup_alpha=0.4, prob=0.5, mode="elem", num_classes=k, label_smoothing=0.0, multi_label=True)
    cfg = AugmentConfig(mixup=0.5, mixup_alpha=0.4)
    weight = torch.ones(m, k)
    partner_t_timm, partner_t_ours, lam_timm, lam_ours, mixed_timm, mixed_ours = [], [], [], [], 0, 0
    np.random.seed(0)
    for b in range(400):
        _, t_timm = timm_mix(x.clone(), multi.clone())
        mirror = torch.arange(m).flip(0)
        lam_t = t_timm[torch.arange(m), torch.arange(m) % k]  # own species' target = lam
        chosen = lam_t < 1.0
        mixed_timm += int(chosen.sum())
        lam_timm += lam_t[chosen].tolist()
        partner_t_timm += t_timm[torch.arange(m), mirror % k][chosen].tolist()
        plan = mixup_plan(m, cfg, batch_generator(7, 0, 0, 0, b, 1))
        partner, lam = plan
        t_ours, _ = mix_targets(multi, weight, plan)
        chosen = lam < 1.0
        mixed_ours += int(chosen.sum())
        lam_ours += lam[chosen].tolist()
        partner_t_ours += t_ours[torch.arange(m), partner % k][chosen].tolist()
    n = 400 * m
    out.update({"partner_target_mean": {"timm": float(np.mean(partner_t_timm)), "ours": float(np.mean(partner_t_ours))},
                "share_mixed": {"timm": mixed_timm / n, "ours": mixed_ours / n},
                "lam_below_half": {"timm": float(np.mean(np.array(lam_timm) < 0.5)),
                                   "ours": float(np.mean(np.array(lam_ours) < 0.5))}})
    rows += [
        _row("mixup", "target of the partner's call (multi_label=True), mean",
             out["partner_target_mean"]["ours"], f"{out['partner_target_mean']['timm']:.3f} (1 - lam)"),
        _row("mixup", "label smoothing by default", "none", f"{out['label_smoothing_default']} (pulls to 0.5)"),
        _row("mixup", "per-cell loss weights (unknown labels)", "mixed (unknown if either is)",
             f"no argument: __call__{out['call_signature']}"),
        _row("mixup", "share of crops mixed (asked 0.5)", out["share_mixed"]["ours"], out["share_mixed"]["timm"]),
        _row("mixup", "share of mixed crops with lam < 0.5", out["lam_below_half"]["ours"],
             out["lam_below_half"]["timm"]),
    ]
    try:
        timm_mix(torch.randn(15, 3, 8, 16), torch.zeros(15, k))
        odd = "works"
    except AssertionError as exc:
        odd = f"AssertionError: {exc}"
    rows.append(_row("mixup", "partner; odd batch (15)", "random permutation; works",
                     f"fixed mirror i <-> M-1-i; {odd}"))

    # reproducibility: a run resumed at batch 5 draws batch 5's mixing again?
    def timm_lams(start: int, count: int) -> list[list[float]]:
        np.random.seed(42)  # what a resumed run can do: seed again (timm draws from numpy's global generator)
        lams = []
        for _ in range(start, start + count):
            lams.append(timm_mix._params_per_elem(m)[0].tolist())
        return lams

    full = timm_lams(0, 10)
    resumed = timm_lams(5, 5)
    ours_full = [mixup_plan(m, cfg, batch_generator(42, 0, 0, 0, b, 1))[1].tolist() for b in range(10)]
    ours_resumed = [mixup_plan(m, cfg, batch_generator(42, 0, 0, 0, b, 1))[1].tolist() for b in range(5, 10)]
    out["resume_same_draws"] = {"timm": full[5:] == resumed, "ours": ours_full[5:] == ours_resumed}
    rows.append(_row("mixup", "resumed at batch 5: same draws as uninterrupted", out["resume_same_draws"]["ours"],
                     f"{out['resume_same_draws']['timm']} (numpy's global RNG; no generator argument)"))

    # mixing the pooled sequence (B, D, T') inside forward, with autograd
    w = torch.nn.Parameter(torch.randn(m, 32, 4, 8))
    try:
        sequence = (w * 2.0).mean(dim=2)
        mixed, _ = timm_mix(sequence, multi.clone())
        mixed.sum().backward()
        pooled = "works (in place, targets from the same call)"
    except Exception as exc:  # noqa: BLE001  # the figure is whether it fails
        pooled = f"{type(exc).__name__}"
    rows.append(_row("mixup", "mix the pooled sequence, backward", "works (mix(sequence, plan))", pooled))

    # speed: a demo batch (16, 3, 64, 256), input-level mixing with targets
    xb = torch.randn(m, 3, 64, 256)
    timm_all = Mixup(mixup_alpha=0.4, prob=0.5, mode="elem", num_classes=k, label_smoothing=0.0, multi_label=True)

    def ours_step() -> None:
        plan = mixup_plan(m, cfg, batch_generator(1, 2, 3, 4, 5, 1))
        mix(xb, plan)
        mix_targets(multi, weight, plan)

    t_ours = min(timeit.repeat(ours_step, number=20, repeat=5)) / 20
    t_timm = min(timeit.repeat(lambda: timm_all(xb.clone(), multi.clone()), number=20, repeat=5)) / 20
    t_clone = min(timeit.repeat(lambda: xb.clone(), number=20, repeat=5)) / 20  # timm mixes in place: a copy kept
    out["ms_per_batch"] = {"ours": 1000 * t_ours, "timm_incl_clone": 1000 * t_timm, "clone": 1000 * t_clone}
    rows.append(_row("mixup", "ms per (16,3,64,256) batch with targets", f"{1000 * t_ours:.2f}",
                     f"{1000 * (t_timm - t_clone):.2f} (+{1000 * t_clone:.2f} for the copy it mixes in place)"))
    result["mixup"] = out


# ---------------------------------------------------------------------------------------------------
# 4. The mel filterbank
# ---------------------------------------------------------------------------------------------------

_LIBROSA_ONLY = ("librosa", "numba", "llvmlite", "audioread", "pooch", "lazy_loader", "decorator", "standard-aifc",
                 "standard-sunau")  # what librosa needs that the runtime does not (importlib.metadata, this venv)


def _dist_bytes(name: str) -> int:
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return 0
    total = 0
    for f in dist.files or []:
        try:
            total += os.path.getsize(dist.locate_file(f))
        except OSError:
            pass
    return total


def bench_mel(rows: list[Row], result: dict) -> None:
    import librosa

    from rfcx_kit.core.config import FeatureConfig
    from rfcx_kit.data.features import LogMel, mel_filterbank

    out: dict = {"librosa": librosa.__version__}
    configs = {"defaults (128 mels)": FeatureConfig(), "demo.yaml (64 mels, hop 1024)": FeatureConfig(n_mels=64,
                                                                                                     hop_length=1024)}
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal(60 * 32000).astype(np.float32) * 0.1)
    for name, cfg in configs.items():
        ours = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
        lib = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin,
                                  fmax=cfg.fmax, htk=False, norm="slaney", dtype=np.float32)
        diff = np.abs(ours.astype(np.float64) - lib.astype(np.float64))
        ulps = float(np.max(diff / np.spacing(np.maximum(np.abs(lib), np.finfo(np.float32).tiny))))
        # what the difference does to the features of a 60 s recording, in float32 and in the float16 cache
        module = LogMel(cfg)
        db_ours = module(wave[None]).numpy()[0]
        module.filters = torch.from_numpy(lib)
        db_lib = module(wave[None]).numpy()[0]
        f16 = int((db_ours.astype(np.float16) != db_lib.astype(np.float16)).sum())
        out[name] = {"max_abs": float(diff.max()), "max_ulps": ulps, "cells_differing": int((diff > 0).sum()),
                     "cells": int(diff.size), "db_max_abs": float(np.abs(db_ours - db_lib).max()),
                     "float16_cells_differing": f16, "float16_cells": int(db_ours.size)}
        rows.append(_row("mel", f"max abs(d filter), {name}", "0",
                         f"{diff.max():.2g} (<= {ulps:.0f} float32 ulp, {(diff > 0).sum()}/{diff.size} cells)"))
        rows.append(_row("mel", f"60 s features, {name}: max abs(d dB); float16 cache cells differing", "0",
                         f"{out[name]['db_max_abs']:.2g} dB; {f16}/{db_ours.size}"))
    cfg = FeatureConfig()
    args = (cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    t_ours = min(timeit.repeat(lambda: mel_filterbank(*args), number=20, repeat=5)) / 20
    t_lib = min(timeit.repeat(lambda: librosa.filters.mel(sr=args[0], n_fft=args[1], n_mels=args[2], fmin=args[3],
                                                          fmax=args[4]), number=20, repeat=5)) / 20
    rows.append(_row("mel", "ms per call (128 mels, warm)", f"{1000 * t_ours:.2f}", f"{1000 * t_lib:.2f}"))
    probe = ("import time, sys, numpy, scipy, sklearn, torch\n"
             "t = time.perf_counter(); import librosa; librosa.filters.mel(sr=32000, n_fft=2048, n_mels=128, "
             "fmin=20.0, fmax=16000.0)\nprint(time.perf_counter() - t, 'numba' in sys.modules)")
    first = []
    for _ in range(2):
        line = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
        first.append((float(line[0]), line[1] == "True"))
    out["import_and_first_call_s"] = [f[0] for f in first]
    sizes = {name: _dist_bytes(name) for name in _LIBROSA_ONLY}
    out["librosa_only_bytes"] = sizes
    rows.append(_row("mel", "fresh interpreter: import librosa + first mel call (numpy/scipy/torch loaded)", "0",
                     f"{min(f[0] for f in first):.2f} s (imports numba: {first[0][1]})"))
    rows.append(_row("mel", "installed size of what only librosa needs", "0",
                     f"{sum(sizes.values()) / 2**20:.0f} MiB (numba {sizes['numba'] / 2**20:.0f}, llvmlite "
                     f"{sizes['llvmlite'] / 2**20:.0f}, librosa {sizes['librosa'] / 2**20:.1f})"))
    try:
        import torchaudio  # noqa: F401

        out["torchaudio"] = torchaudio.__version__
    except ImportError:
        out["torchaudio"] = None
    rows.append(_row("mel", "torchaudio importable", "-", out["torchaudio"] or "no (not installed; not measured)"))
    result["mel"] = out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="lock,lr,mixup,mel", help="comma-separated parts")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    load_before = common.warn_if_busy("handwritten")
    import filelock
    import timm

    result: dict = {"load_before": load_before, "versions": {"filelock": filelock.__version__,
                                                             "timm": timm.__version__}}
    rows: list[Row] = []
    started = time.perf_counter()
    parts = {"lock": bench_lock, "lr": bench_lr, "mixup": bench_mixup, "mel": bench_mel}
    for name in args.only.split(","):
        parts[name](rows, result)
    result["rows"] = rows
    result["seconds"] = time.perf_counter() - started
    print(common.table(rows, markdown=True))
    print(f"\n({result['seconds']:.0f} s; filelock {filelock.__version__}, timm {timm.__version__}, "
          f"librosa {result.get('mel', {}).get('librosa', '-')}, torch {torch.__version__})")
    common.write_result("handwritten", result)


if __name__ == "__main__":
    main()
