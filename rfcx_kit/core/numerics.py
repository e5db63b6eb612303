"""Portable CPU numerics: the same floats from the same seed on any x86-64 CPU.

torch and numpy pick their CPU kernels by what the processor offers: ATen's vector width (AVX-512, AVX2, ...),
oneDNN's convolution kernels (also by cache size), MKL's GEMM branches, numpy's SIMD loops and OpenBLAS's
core type. Each gives floats that differ in the last bits, and training amplifies that: the demo recipe on
this project's AVX-512 machine and on the same machine restricted to AVX2 gave a stage-1 test LWLRAP of
0.621 and 0.651, and gap-closed figures 0.41 apart after three cycles. A table in the README can only be
checked elsewhere when every machine runs the same kernels.

``RFCX_KIT_NUMERICS=portable`` pins all of them to what every x86-64-v2 CPU runs (the variables below),
two torch threads, and the fused optimizer step (the foreach step's sqrt differs across CPUs), in two tiers:
``avx2`` (the default on a CPU with AVX2 and FMA) lets ATen use its AVX2 kernels, ``baseline`` (other CPUs, or
``RFCX_KIT_NUMERICS_TIER=baseline``) keeps ATen's default ones; oneDNN stays at SSE4.1 in both, since oneDNN
promises equal bits only on one platform. Checked by ``benchmarks/portable_numerics.py`` (bit-identical
training on this machine and under QEMU's CPU models) and by CI (the README's demo table, printed by another
machine). The cost: about 1.75x the time of a native training step with the demo's backbone
(``benchmarks/STEP.md``). ``rfcx-kit demo`` uses it unless ``--numerics native``; other commands use it when
the variable is set.

The variables act when a library loads, so they are set when ``rfcx_kit`` is imported, before torch and
numpy are; when either was already imported (or for the demo's default), :func:`ensure_portable` starts the
same command again in a fresh process with them set. This module imports nothing heavy.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

ENV = "RFCX_KIT_NUMERICS"  # "portable" or "native" (the default)
MODES = ("portable", "native")
APPLIED = "RFCX_KIT_NUMERICS_APPLIED"  # set by apply_at_import when the pins took effect before torch/numpy
TIER_ENV = "RFCX_KIT_NUMERICS_TIER"  # "avx2" or "baseline": which portable tier (default: avx2 where the CPU has it)
THREADS = 2

# Each variable: the library it pins and why that value. ATEN_CPU_CAPABILITY is the tier's (ATEN_TIERS).
PINS: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "default",  # ATen's kernels without AVX2/AVX-512 vector code (the baseline tier)
    "ONEDNN_MAX_CPU_ISA": "SSE41",  # oneDNN's convolutions: the AVX2 kernels differ between CPU models
    "MKL_CBWR": "COMPATIBLE",  # MKL's conditional numerical reproducibility: one code branch on every CPU
    "NPY_ENABLE_CPU_FEATURES": "X86_V2",  # numpy's SIMD loops: the x86-64-v2 baseline only (numpy >= 2.4)
    "OPENBLAS_CORETYPE": "Nehalem",  # numpy's OpenBLAS: one kernel whatever the CPU
    "OMP_NUM_THREADS": str(THREADS),  # reductions split by thread count: a fixed count
    "MKL_NUM_THREADS": str(THREADS),
}


# The portable tiers. ATen's own AVX2 kernels are one binary's instructions (no dispatch on the CPU's model, cache or
# vendor, unlike oneDNN's and MKL's, which stay pinned below AVX2 in both tiers): every CPU with AVX2 and FMA runs them
# alike, about half again as fast as the baseline. A CPU without AVX2 takes the baseline tier, whose figures differ.
ATEN_TIERS = {"avx2": "avx2", "baseline": "default"}


def cpu_has_avx2() -> bool:
    """The CPU offers AVX2 and FMA (``/proc/cpuinfo``'s flags); False where that cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        return False
    return "avx2" in flags and "fma" in flags


def tier() -> str:
    """The portable tier of this machine: ``RFCX_KIT_NUMERICS_TIER`` when set, else avx2 where the CPU has it."""
    asked = os.environ.get(TIER_ENV, "").strip().lower()
    if asked in ATEN_TIERS:
        return asked
    return "avx2" if platform.machine() in ("x86_64", "AMD64") and cpu_has_avx2() else "baseline"


def _numpy_pins_apply() -> bool:
    """numpy's feature names (X86_V2) are those of numpy 2.4 on; older numpy would refuse the variable."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor = (int(p) for p in version("numpy").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (2, 4)


def pins() -> dict[str, str]:
    """The environment of portable numerics on this installation."""
    out = dict(PINS) | {"ATEN_CPU_CAPABILITY": ATEN_TIERS[tier()]}
    if not _numpy_pins_apply():
        out.pop("NPY_ENABLE_CPU_FEATURES")
    return out


def requested() -> bool:
    """``RFCX_KIT_NUMERICS=portable`` is set."""
    return os.environ.get(ENV, "native").strip().lower() == "portable"


def apply_at_import() -> None:
    """Set the pins if portable numerics are requested and neither torch nor numpy is loaded yet."""
    if not requested() or os.environ.get(APPLIED) == "1":
        return
    if "torch" in sys.modules or "numpy" in sys.modules:
        # too late in this process (the demo's ensure_portable starts a fresh one); a library user is told
        import warnings

        warnings.warn(f"{ENV}=portable has no effect: import rfcx_kit before torch and numpy "
                      "(this process keeps the native kernels)", RuntimeWarning, stacklevel=2)
        return
    os.environ.update(pins())
    os.environ[APPLIED] = "1"


def in_effect() -> bool:
    """The pins were set before torch and numpy loaded in this process (or in a parent that passed them on)."""
    return os.environ.get(APPLIED) == "1" and all(os.environ.get(k) == v for k, v in pins().items())


def ensure_portable() -> None:
    """Make this process run with portable numerics: if they are not in effect, start the same command again.

    The new process replaces this one (``os.execve``): nothing has been written yet when a command calls this
    first. ``sys.orig_argv`` repeats the interpreter's own options, so ``python -m rfcx_kit``, the
    ``rfcx-kit`` script and ``python -c`` all start again the way they were started.
    """
    if in_effect():
        return
    # the pins go into the new process's environment, so they act whatever it imports first
    env = dict(os.environ) | pins() | {ENV: "portable", APPLIED: "1"}
    argv = [sys.executable, *sys.orig_argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def optimizer_kwargs() -> dict[str, Any]:
    """Extra optimizer arguments: the fused step under portable numerics (the same floats on every CPU)."""
    return {"fused": True} if in_effect() else {}


def describe() -> dict[str, Any]:
    """What a run's figures depend on: the mode, the CPU, the kernels torch chose and its thread count."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    capability = torch.backends.cpu.get_cpu_capability()  # what ATen runs: a tier asked beyond the CPU falls back
    portable = in_effect()
    return {"mode": "portable" if portable else "native",
            "tier": ("avx2" if capability == "AVX2" else "baseline") if portable else None,
            "machine": platform.machine(), "cpu": cpu,
            "torch_cpu_capability": capability, "torch_threads": torch.get_num_threads(),
            "pins": {k: os.environ.get(k) for k in PINS}}
