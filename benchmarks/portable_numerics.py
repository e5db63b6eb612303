"""Portable numerics across CPU models: the same tiny demo, bit for bit, on this CPU and on emulated ones.

usage: python benchmarks/portable_numerics.py --out DIR [--cpu Haswell-v4 --cpu EPYC-Rome-v1 ...]

Runs a reduced ``rfcx-kit demo`` (synthetic data, features, stage 1, one cycle, control, oracle) in a child
process per target and compares what each wrote:

- ``host/portable``: this CPU, ``RFCX_KIT_NUMERICS=portable``;
- ``CPU/portable``: the same under ``qemu-x86_64 -cpu CPU`` (Debian's qemu-user), which reports another
  vendor, model and cache sizes and runs the x86 instructions in software (exactly, for IEEE operations;
  approximate instructions such as rcpps come out differently, which is what a real other CPU would do too);
- ``host/native`` and ``host/native-avx2``: native kernels, with and without AVX-512 (ATEN_CPU_CAPABILITY
  and ONEDNN_MAX_CPU_ISA limited to AVX2), to show what portable numerics remove.

A fingerprint is the sha256 of every stage's out-of-fold and test predictions and of the feature store; the
table says which targets share it, with the figures of the run. Results go to DIR/portable_numerics.md
(also printed; benchmarks/PORTABLE_NUMERICS.md is a copy). Under QEMU one target takes 15-30 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TINY = dict(n_train=12, n_test=6, seconds=10.0, seed=3, cycles=1)
LOGS = ("submissions.csv", "history.csv")  # logs: times and paths, not results (the submission's sha256 is in
# submissions.csv, and the submission itself is compared)
FAST = ("train.epochs=1", "train.steps_per_epoch=8", "relabel.epochs=1", "relabel.windows_per_epoch=32",
        "features.n_jobs=1")  # the demo recipe's model, kernels and loop, at a few steps


def child(out: Path) -> None:
    """Run the tiny demo here and write OUT/fingerprint.json (imports rfcx_kit first: the pins act on import)."""
    from rfcx_kit.core import numerics
    from rfcx_kit.app.demo import run_demo

    if numerics.requested() and not numerics.in_effect():
        raise SystemExit("portable numerics requested but not in effect (torch or numpy imported first?)")
    started = time.time()
    summary = run_demo(out, **TINY, overrides=FAST, submit="dry-run", fmt="npy", progress=False)
    digests = {}
    for path in sorted((out / "run").rglob("*")):
        if path.suffix in (".csv", ".npy", ".npz") and path.is_file() and "report" not in path.parts \
                and path.name not in LOGS:
            digests[str(path.relative_to(out))] = hashlib.sha256(path.read_bytes()).hexdigest()
    for path in [*sorted((out / "data").rglob("*.npy")), out / "submissions" / "demo.csv"]:
        digests[str(path.relative_to(out))] = hashlib.sha256(path.read_bytes()).hexdigest()
    whole = hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()
    figures = {row["stage"]: row.get("truth_test_lwlrap") for row in summary["stages"]}
    figures |= {"control": summary["control"]["truth_test_lwlrap"], "oracle": summary["oracle"]["truth_test_lwlrap"]}
    (out / "fingerprint.json").write_text(json.dumps(
        {"fingerprint": whole, "files": digests, "truth_test_lwlrap": figures, "numerics": summary["numerics"],
         "seconds": round(time.time() - started, 1)}, indent=1))


def targets(cpus: list[str], baseline_too: bool = False) -> list[tuple[str, list[str], dict[str, str]]]:
    """(name, command prefix, extra environment) of every target."""
    native_avx2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    portable = {"RFCX_KIT_NUMERICS": "portable", "RFCX_KIT_NUMERICS_TIER": "avx2"}
    baseline = {"RFCX_KIT_NUMERICS": "portable", "RFCX_KIT_NUMERICS_TIER": "baseline"}
    out = [("host/portable-avx2", [], portable),
           ("host/portable-baseline", [], baseline),
           ("host/native", [], {"RFCX_KIT_NUMERICS": "native"}),
           ("host/native-avx2", [], {"RFCX_KIT_NUMERICS": "native"} | native_avx2)]
    qemu = shutil.which("qemu-x86_64")
    for cpu in cpus:
        if qemu is None:
            print(f"qemu-x86_64 not found (apt-get install qemu-user): {cpu} skipped", file=sys.stderr)
            continue
        out.append((f"{cpu}/portable-avx2", [qemu, "-cpu", cpu], portable))
        if baseline_too:
            out.append((f"{cpu}/portable-baseline", [qemu, "-cpu", cpu], baseline))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cpu", action="append", default=[], help="a qemu-x86_64 CPU model (repeatable)")
    parser.add_argument("--baseline-too", action="store_true", help="also the baseline tier under each QEMU CPU")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, prefix, extra in targets(args.cpu, args.baseline_too):
        folder = args.out / name.replace("/", "-")
        if not (folder / "fingerprint.json").exists():
            shutil.rmtree(folder, ignore_errors=True)
            # JOBLIB_MULTIPROCESSING=0: one process, so that under QEMU no worker escapes the emulation
            env = {k: v for k, v in os.environ.items() if not k.startswith("RFCX_KIT_NUMERICS")} | extra | {
                "JOBLIB_MULTIPROCESSING": "0"}
            print(f"{name}: running ...", flush=True)
            done = subprocess.run([*prefix, sys.executable, __file__, "--out", str(args.out), "--child", str(folder)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if done.returncode != 0:
                print(f"{name}: failed\n{done.stderr[-3000:]}", file=sys.stderr)
                continue
        found = json.loads((folder / "fingerprint.json").read_text())
        files = {k: v for k, v in found["files"].items() if Path(k).name not in LOGS}
        found["fingerprint"] = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        found["n_files"] = len(files)
        rows.append((name, found))
    if not rows:
        return 1
    host = {name.split("/", 1)[1]: fp["fingerprint"] for name, fp in rows if name.startswith("host/")}

    def same(name: str, fp: dict) -> str:
        """Whether a run equals the host's run of its own portable tier (a native run: the avx2 tier's)."""
        kind = name.split("/", 1)[1]
        ref = host.get(kind if kind.startswith("portable") else "portable-avx2")
        return "yes" if fp["fingerprint"] == ref else "no"

    stages = list(rows[0][1]["truth_test_lwlrap"])
    with_submission = any(k.endswith("demo.csv") for k in rows[0][1]["files"])
    lines = [f"{rows[0][1]['n_files']} files compared: every stage's predictions and label tables, the feature arrays"
             + (" and the submission." if with_submission else "."), "",
             "| target | numerics | torch kernels | seconds | " + " | ".join(f"{s} truth" for s in stages)
             + " | fingerprint | same as the host's run of its tier |",
             "|---|---|---|---:|" + "---:|" * len(stages) + "---|---|"]
    for name, fp in rows:
        figures = " | ".join(f"{fp['truth_test_lwlrap'][s]:.4f}" for s in stages)
        lines.append(f"| {name} | {fp['numerics']['mode']} | {fp['numerics']['torch_cpu_capability']} | "
                     f"{fp['seconds']:.0f} | {figures} | `{fp['fingerprint'][:12]}` | "
                     f"{same(name, fp)} |")
    import platform

    import torch

    head = ["# Portable numerics across CPU models", "",
            f"Generated by `python benchmarks/portable_numerics.py --out DIR {' '.join('--cpu ' + c for c in args.cpu)}`"
            f" on {time.strftime('%Y-%m-%d')}: host {rows[0][1]['numerics']['cpu']}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, torch {torch.__version__}. The run: `rfcx-kit demo` at "
            f"{TINY['n_train']} train / {TINY['n_test']} test recordings of {TINY['seconds']:.0f} s, one cycle, "
            f"with {', '.join(FAST)}; QEMU rows run the same Python under `qemu-x86_64 -cpu CPU` (software x86, "
            "hence the time).", ""]
    table = "\n".join(head + lines) + "\n"
    (args.out / "portable_numerics.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
