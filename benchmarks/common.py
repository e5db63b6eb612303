"""Shared helpers of the benchmarks: machine facts, timing, peak memory, tables, JSON results, data sets.

Every benchmark script writes ``$RFCX_BENCH_DIR/<name>.json`` (default ``/tmp/bench``) with what it measured,
the machine, the load average before and after, and the exact command; ``run_all.py`` turns those files
into ``benchmarks/RESULTS.md``. Nothing here holds a result: every figure comes from a measurement.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(os.environ.get("RFCX_BENCH_DIR", "/tmp/bench"))
REPO = Path(__file__).resolve().parents[1]
LOAD_WARN = 1.0  # a load average above this on a 2-core machine makes timings unreliable


# ---------------------------------------------------------------------------------------------------
# Machine and environment
# ---------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, library versions and the load at the time of the call."""
    import numpy
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": numpy.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "commit": git_commit(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    return info


def git_commit() -> str | None:
    """The checked-out commit (read-only ``git rev-parse``), with ``+dirty`` when the tree has changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{head}+dirty" if head and dirty else (head or None)
    except (OSError, subprocess.SubprocessError):
        return None


def load_average() -> float:
    """1-minute load average."""
    return round(os.getloadavg()[0], 2)


def warn_if_busy(what: str = "") -> float:
    load = load_average()
    if load > LOAD_WARN:
        print(f"warning: load average {load} > {LOAD_WARN} on {os.cpu_count()} cores{': ' + what if what else ''}; "
              "timings are unreliable (rerun when the machine is idle)", file=sys.stderr)
    return load


class ForeignLoad:
    """CPU used by *other* processes while a benchmark runs (the load average counts the benchmark's own
    threads too, so it cannot tell interference from work).

    ``foreign.start()`` ... ``foreign.stop()`` -> average number of cores busy with processes outside this
    process tree (system busy time minus this process, its live children and its reaped children).
    """

    def __init__(self) -> None:
        self._t0 = self._sys0 = self._own0 = 0.0

    @staticmethod
    def _system_busy() -> float:
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)

    @staticmethod
    def _own() -> float:
        t = os.times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in psutil.Process().children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.Error:
                pass
        return total

    def start(self) -> ForeignLoad:
        self._t0, self._sys0, self._own0 = time.perf_counter(), self._system_busy(), self._own()
        return self

    def stop(self) -> float:
        wall = time.perf_counter() - self._t0
        foreign = (self._system_busy() - self._sys0) - (self._own() - self._own0)
        return round(max(0.0, foreign) / wall, 2) if wall > 0 else float("nan")


def command_line() -> str:
    """The command that ran this script, as typed from the repository root."""
    argv = list(sys.argv)
    script = Path(argv[0])
    try:
        argv[0] = str(script.resolve().relative_to(REPO))
    except ValueError:
        pass
    return "python " + " ".join(shlex.quote(a) for a in argv)


# ---------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """``with stopwatch() as t: ...`` then ``t["s"]`` holds the elapsed wall seconds."""
    out = {"s": float("nan")}
    start = time.perf_counter()
    try:
        yield out
    finally:
        out["s"] = time.perf_counter() - start


def time_call(fn: Callable[[], Any], repeat: int = 3, number: int = 1) -> list[float]:
    """Seconds per call of ``fn``, ``repeat`` measurements of ``number`` calls each."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        out.append((time.perf_counter() - start) / number)
    return out


def summary(times: Sequence[float]) -> dict[str, float]:
    return {"min": min(times), "median": statistics.median(times), "max": max(times), "n": len(times)}


class Splits:
    """Accumulate named time splits: ``with splits("forward"): ...``; ``splits.total``, ``splits.share()``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def share(self) -> dict[str, float]:
        total = self.total or float("nan")
        return {k: v / total for k, v in self.seconds.items()}


# ---------------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------------


def rss_bytes() -> int:
    return psutil.Process().memory_info().rss


def max_rss_bytes() -> int:
    """Peak resident set of this process so far (``getrusage``; Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * 1024 if sys.platform.startswith("linux") else peak


class RssSampler:
    """A background thread sampling this process's RSS every ``interval`` seconds, with per-phase peaks.

    ``with sampler.phase("predict"): ...`` records the highest RSS seen while the phase ran (sampled, and
    also read at the phase's start and end). ``getrusage``'s lifetime peak is reported beside it.
    """

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.phases: dict[str, int] = {}

    def _run(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            rss = process.memory_info().rss
            with self._lock:
                self._peak = max(self._peak, rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        with self._lock:
            self._peak = rss_bytes()
        try:
            yield
        finally:
            with self._lock:
                self.phases[name] = max(self._peak, rss_bytes())


# ---------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.{max(1, digits - 1)}f}".rstrip("0").rstrip(".")
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, markdown: bool = False) -> str:
    """A plain-text (or markdown) table of dict rows."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    cells = [[fmt(row.get(c, "")) for c in columns] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines)
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write ``BENCH_DIR/<name>.json`` (machine, command and load included) and return its path."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "command": command_line(), "machine": machine_info(), **result}
    result.setdefault("load_after", load_average())
    path = BENCH_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=_json_default))
    tmp.replace(path)
    print(f"wrote {path}")
    return path


def _json_default(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:
        pass
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ---------------------------------------------------------------------------------------------------
# Data sets (synthetic, written under /tmp only)
# ---------------------------------------------------------------------------------------------------


def rfcx_kit_cli() -> list[str]:
    exe = Path(sys.executable).with_name("rfcx-kit")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "rfcx_kit.app.cli"]


def ensure_synth(out: Path, n_train: int, n_test: int, fmt: str, seed: int = 0) -> Path:
    """A synthetic competition folder from ``rfcx-kit synth`` (written once; the same call resumes it)."""
    out = Path(out)
    if (out / "sample_submission.csv").exists() and (out / "train_tp.csv").exists():
        return out
    cmd = rfcx_kit_cli() + ["synth", "--out", str(out), "--train", str(n_train), "--test", str(n_test),
                            "--format", fmt, "--seed", str(seed), "--no-progress"]
    print("generating data:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return out


def subset_competition(src: Path, n_train: int, n_test: int, dst: Path | None = None) -> Path:
    """A competition folder holding the first ``n_train`` labelled train and ``n_test`` test recordings of
    ``src`` (CSVs filtered, recordings symlinked; nothing copied). Reused when it already exists.
    Default place: ``BENCH_DIR/subsets/<src name>_<n_train>_<n_test>``."""
    import pandas as pd

    src = Path(src)
    dst = Path(dst) if dst else BENCH_DIR / "subsets" / f"{src.name}_{n_train}_{n_test}"
    if (dst / "sample_submission.csv").exists():
        return dst
    tp = pd.read_csv(src / "train_tp.csv", dtype={"recording_id": str})
    fp = pd.read_csv(src / "train_fp.csv", dtype={"recording_id": str})
    sub = pd.read_csv(src / "sample_submission.csv", dtype={"recording_id": str})
    train = sorted(set(tp["recording_id"]) | set(fp["recording_id"]))[:n_train]
    if len(train) < n_train or len(sub) < n_test:
        raise ValueError(f"{src} holds {len(train)} labelled train and {len(sub)} test recordings; "
                         f"asked {n_train} and {n_test}")
    keep = set(train)
    tmp = dst.with_name(dst.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    for split in ("train", "test"):
        (tmp / split).mkdir(parents=True)
    ext = next(p.suffix for p in (src / "train").iterdir() if p.suffix in (".npy", ".flac", ".wav", ".ogg"))
    for rid in train:
        os.symlink((src / "train" / f"{rid}{ext}").resolve(), tmp / "train" / f"{rid}{ext}")
    sub = sub.iloc[:n_test]
    for rid in sub["recording_id"]:
        os.symlink((src / "test" / f"{rid}{ext}").resolve(), tmp / "test" / f"{rid}{ext}")
    tp[tp["recording_id"].isin(keep)].to_csv(tmp / "train_tp.csv", index=False)
    fp[fp["recording_id"].isin(keep)].to_csv(tmp / "train_fp.csv", index=False)
    sub.to_csv(tmp / "sample_submission.csv", index=False)
    tmp.rename(dst)
    return dst


def drop_page_cache(paths: Sequence[Path]) -> int:
    """Ask the kernel to drop the cached pages of these files (``POSIX_FADV_DONTNEED``); returns how many."""
    n = 0
    for path in paths:
        try:
            fd = os.open(os.path.realpath(path), os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            n += 1
        finally:
            os.close(fd)
    return n


def warm_page_cache(paths: Sequence[Path]) -> int:
    """Read every file once so later timings do not measure the disk."""
    total = 0
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                total += len(chunk)
    return total
