"""Run every benchmark (one after the other, each in its own process) and write ``benchmarks/RESULTS.md``.

Each script writes ``/tmp/bench/<name>.json`` (``$RFCX_BENCH_DIR``); this script then renders all of them
(figures, machine, exact command, load average, targets met or missed) into RESULTS.md. Timings on a busy
machine are unreliable: before each benchmark it waits (up to ``--wait`` seconds) for the 1-minute load
average to fall below ``--max-load``, and records the load it started at.

    python benchmarks/run_all.py                 # everything (about 20-30 min on 2 cores), then RESULTS.md
    python benchmarks/run_all.py --quick         # small sizes, to check the scripts (figures not for RESULTS)
    python benchmarks/run_all.py --only predict,lwlrap
    python benchmarks/run_all.py --report-only   # re-render RESULTS.md from the JSON files present
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"

# name -> (script args for the full run, args for --quick)
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "lwlrap": (["bench_lwlrap.py"], ["bench_lwlrap.py", "--repeat", "2"]),
    "features": (["bench_features.py"], ["bench_features.py", "--files", "8", "--repeat", "1"]),
    "predict": (["bench_predict.py"], ["bench_predict.py", "--recordings", "8", "--batch-sizes", "1,8",
                                       "--repeat", "1", "--backbones", "mobilenetv3_small_050"]),
    "train_input": (["bench_train_input.py"], ["bench_train_input.py", "--steps", "6", "--warmup", "1",
                                               "--backbones", "mobilenetv3_small_050"]),
    "scaling": (["bench_scaling.py"], ["bench_scaling.py", "--data", str(common.BENCH_DIR / "synth_npy_small"),
                                       "--sizes", "20,60", "--png", str(common.BENCH_DIR / "scaling_quick.png")]),
    "gpu": (["bench_gpu.py"], ["bench_gpu.py", "--steps", "5"]),
    "onnx": (["bench_onnx.py"], ["bench_onnx.py", "--backbones", "mobilenetv3_small_050", "--repeat", "1"]),
    "dask_test": (["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_dask.py"],
                  ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_dask.py"]),
}


def wait_for_quiet(max_load: float, wait: float) -> float:
    deadline = time.time() + wait
    load = common.load_average()
    while load > max_load and time.time() < deadline:
        time.sleep(15)
        load = common.load_average()
    return load


def run_one(name: str, quick: bool, max_load: float, wait: float) -> int:
    args = BENCHES[name][1 if quick else 0]
    load = wait_for_quiet(max_load, wait)
    if args[0] == "-m":
        cmd = [sys.executable, *args]
    else:
        cmd = [sys.executable, str(HERE / args[0]), *args[1:]]
    print(f"\n=== {name} (load {load}) ===\n{' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=common.REPO)
    seconds = time.perf_counter() - start
    if name == "dask_test":  # pytest writes no JSON: record its outcome and time here
        shown = "python " + " ".join(args)
        common.BENCH_DIR.mkdir(parents=True, exist_ok=True)
        (common.BENCH_DIR / "dask_test.json").write_text(json.dumps({
            "benchmark": "dask_test", "command": shown, "machine": common.machine_info(), "load_before": load,
            "load_after": common.load_average(), "seconds": seconds, "returncode": proc.returncode,
            "target": {"what": "Dask test passes (loopback, bounded time)", "value": seconds,
                       "met": proc.returncode == 0}}, indent=2))
    print(f"=== {name}: exit {proc.returncode} in {seconds:.0f} s ===", flush=True)
    return proc.returncode


# ---------------------------------------------------------------------------------------------------
# RESULTS.md
# ---------------------------------------------------------------------------------------------------


def _load(name: str) -> dict | None:
    path = common.BENCH_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _md(rows: list[dict], columns: list[str] | None = None) -> str:
    return common.table(rows, columns, markdown=True)


def _status(target: dict | None) -> str:
    if not target:
        return "-"
    return "met" if target.get("met") else "**missed**"


def _header(res: dict) -> str:
    foreign = res.get("foreign_cores")
    return (f"Command: `{res['command']}`  \nLoad average at the start: {res.get('load_before', '-')}"
            + (f"; other processes used {foreign} cores on average while it ran" if foreign is not None else "")
            + f". Run {res['machine']['when']} at commit {res['machine']['commit']}.")


def section_features(res: dict) -> str:
    ratio, t = res["throughput_ratio"], res["target"]
    out = [_header(res), "",
           f"{res['files']} recordings ({res['audio']}), {res['repeat']} interleaved runs of each path, median shown; "
           f"page cache warm, workers started before timing.", "",
           _md(res["rows"], ["path", "median s", "rec/s", "runs s"]), "", _md(res["ratios"]), "",
           f"- Throughput ratio, notebook / rfcx-kit (default config, {res['n_jobs']} processes): **{ratio:.2f}x** "
           f"(target >= 1.8x: {_status(t)}).",
           "- By `features.batch_size` (recordings per log-mel call): " + "; ".join(
               f"{x['batch_size']}{' (default)' if x['default'] else ''}: throughput ratio "
               f"{x['throughput ratio (' + str(res['n_jobs']) + ' procs)']:.2f}x, rfcx-kit / bare decode+resample floor "
               f"{x['rfcx-kit / floor (' + str(res['n_jobs']) + ' procs)']:.2f}x" for x in res["ratios"]) + ".",
           "", "Log-mel alone (decoded waves in memory), one thread, best of several calls:", "",
           _md(res.get("logmel_only", [])), "",
           f"- Agreement: max |dB| difference between the cache and librosa's output, both saved as float16: "
           f"{res['max_abs_db_vs_librosa']:.4f} dB."]
    return "\n".join(out)


def section_predict(res: dict) -> str:
    t = res["target"]
    keys = ["backbone", "batch", "max_windows", "batched s", "post loop s", "ratio", "batched win/s", "loop win/s",
            "forwards batched", "forwards loop", "max abs diff"]
    alt = res.get("alt_max_windows") or []
    alt = [alt] if isinstance(alt, int) else alt
    keys[6:6] = [f"ratio (max_windows={mw})" for mw in alt]
    rows = [{k: r.get(k, res["max_windows"] if k == "max_windows" else "-") for k in keys} for r in res["rows"]]
    cols = ["backbone", "batch", "path", "total s"] + [c for c in ["read %", "normalize %", "normalize+split %",
                                                                   "split_windows %", "forward %", "sigmoid+max %",
                                                                   "stitch+timeline %"]
                                                       if any(c in b for b in res["breakdown"])]
    chosen = ("the library's automatic choice (`predict.auto_max_windows`, column max_windows)"
              if res["max_windows"] is None else f"`max_windows={res['max_windows']}`")
    return "\n".join([
        _header(res), "",
        f"{res['recordings']} test recordings x {res['windows_per_recording']} windows per measurement, "
        f"windows per forward: {chosen}, {res['torch_threads']} torch threads, median of {res['repeat']} "
        "interleaved runs. Ratio = post-loop time / batched time.", "",
        _md(rows), "",
        f"Minimum ratio {t['value']:.2f} (target >= 1.0 at every batch size: {_status(t)}).", "",
        "Where the time goes (share of each path's time, one step-by-step pass):", "",
        _md(res["breakdown"], cols)])


def section_train_input(res: dict) -> str:
    t = res["target"]
    cols = ["backbone", "page cache", "loader", "steps", "batch", "sampling ms/epoch", "steps/epoch", "data ms/step",
            "compute ms/step", "data share %", "windows/s"]
    cols = [c for c in cols if any(c in r for r in res["rows"])]
    return "\n".join([
        _header(res), "",
        f"{res['train_recordings']} train recordings, `train.batch_size={res['batch_size']}` windows of 512 frames, "
        f"`{res['sampling']}` sampling, {res['torch_threads']} torch threads, CPU.", "",
        _md(res["rows"], cols), "",
        f"Data share of a step ({t['what']}): **{100 * t['value']:.1f}%** (target < 10%: {_status(t)})."])


def section_lwlrap(res: dict) -> str:
    return "\n".join([
        _header(res), "",
        f"Matrix {res['rows_matrix'][0]} x {res['rows_matrix'][1]}, best of {res['repeat']} timings.", "",
        _md(res["rows"], ["implementation", "best ms", "median ms", "x slower than rfcx-kit", "value"]), "",
        f"Speed-up over the per-sample loop: **{res['speedup_vs_loop']:.1f}x**; the three agree to "
        f"{res['max_abs_difference']:.1e}."])


def section_scaling(res: dict) -> str:
    t = res["target"]
    png = Path(res["png"])
    try:
        link = png.resolve().relative_to(HERE)
    except ValueError:
        link = png
    cols = ["N", "train", "test", "bookkeeping s", "(tables, labels, folds) s", "(recording statistics) s",
            "prediction s", "relabel labels s", "bookkeeping peak GiB",
            "prediction peak GiB", "relabel labels peak GiB", "process peak GiB", "after imports GiB", "load",
            "foreign cores"]
    return "\n".join([
        _header(res), "",
        f"Synthetic npy data, memory-mapped; prediction with `{res['backbone']}` on CPU, "
        f"`batch_recordings={res['batch_recordings']}`. Each N in a fresh process.", "",
        _md(res["rows"], cols), "",
        f"- Peak RSS at full size: **{t['value']:.2f} GiB** (< 3 GiB); log-log slope of peak RSS vs N: "
        f"**{t['slope']:.3f}** (< 1 is sub-linear): {_status(t)}. Above the imports: "
        + ", ".join(f"{e:.2f}" for e in res["rss_above_imports_gib"]) + " GiB.",
        "- Log-log slope of time vs N: " + ", ".join(f"{k} {v:.2f}" for k, v in res["time_slope"].items()) + ".",
        *[f"- N={r['n']} ran while other processes used {r['foreign_cores']} cores: its times are inflated (its "
          "memory figures are not affected)." for r in res["results"] if r.get("foreign_cores", 0) > 0.25],
        "", f"![time and memory vs N]({link})"])


def section_gpu(res: dict) -> str:
    if res.get("status") != "measured":
        return f"{_header(res)}\n\n**{res.get('status')}** (the full recipe time too). Run `python benchmarks/bench_gpu.py " \
               "--compile --recipe /tmp/bench/synth_full` on a CUDA machine to fill this section."
    recipe = res.get("recipe")
    text = [_header(res), "", f"{res['device']}, batch {res['batch']} windows, {res['backbone']}.", "",
            _md(res["rows"], ["what", "windows/s", "ms"])]
    if isinstance(recipe, dict):
        text += ["", f"Full recipe (5 folds, stage 1 + 3 cycles): stage 1 {recipe['stage1_s'] / 60:.1f} min, "
                     f"total {recipe['total_s'] / 60:.1f} min."]
    else:
        text += ["", f"Full recipe: {recipe}."]
    return "\n".join(text)


def section_dask(res: dict) -> str:
    return "\n".join([_header(res), "",
                      f"Outcome: {'passed' if res['returncode'] == 0 else 'FAILED'} in {res['seconds']:.0f} s "
                      "(2 tests: two folds on two LocalCluster workers equal a local run; a failing fold is named and "
                      "the other fold's results kept)."])


def section_onnx(res: dict) -> str:
    return "\n".join([_header(res), "", f"One fold model, batches of {res['batch']} windows (3 x 128 x 512), "
                      f"{res['threads']} threads for both runtimes; outputs checked equal first.", "",
                      _md(res["rows"], ["backbone", "runtime", "windows/s", "ms per window", "vs torch", "max |diff|"])])


SECTIONS = [
    ("features", "Feature cache build vs the notebook path (librosa)", section_features),
    ("predict", "Soft frame-wise prediction: batched vs the post's per-window loop", section_predict),
    ("train_input", "Training input pipeline", section_train_input),
    ("lwlrap", "LWLRAP", section_lwlrap),
    ("scaling", "Scaling to the full data set", section_scaling),
    ("gpu", "GPU path", section_gpu),
    ("onnx", "ONNX export: onnxruntime vs torch on CPU", section_onnx),
    ("dask_test", "Folds on a Dask cluster (test)", section_dask),
]


def _missed_notes(results: dict[str, dict]) -> list[str]:
    """Reason and next step for each missed target, computed from the measured figures."""
    notes = []
    f = results.get("features")
    if f and not f["target"]["met"]:
        per_core = {r["batch_size"]: r["per-core ratio (1 proc)"] for r in f["ratios"]}
        default = f["default_batch_size"]
        lm = {r["log-mel only, 1 thread"]: r["ms/recording"] for r in f.get("logmel_only", [])}
        stacked = lm.get(f"rfcx-kit LogMel, {default} recordings per call", float("nan"))
        single = lm.get("rfcx-kit LogMel, 1 recordings per call", float("nan"))
        librosa_ms = lm.get("librosa melspectrogram + power_to_db", float("nan"))
        notes.append(
            f"- **Feature cache build ({f['throughput_ratio']:.2f}x < 1.8x).** Reason: per core, the whole cache "
            f"build with the default `features.batch_size={default}` runs at {per_core.get(default, float('nan')):.2f}x "
            f"the librosa path. `_compute_chunk` computes one STFT over {default} stacked recordings; the log-mel "
            f"alone then costs {stacked:.0f} ms per recording against {single:.0f} ms one recording at a time and "
            f"{librosa_ms:.0f} ms for librosa (one thread each): the {default} x 1025 x 3751 complex STFT and its "
            "power spectrum (~250 MB) no longer fit in cache. "
            + (f"With `--batch-size {f['best_batch_size']}` the ratio is {f['throughput_ratio_best']:.2f}x. "
               if f["best_batch_size"] != default else "")
            + "Next step: compute the log-mel one recording at a time inside `_compute_chunk` (keep the chunk only "
            "as the unit of work sent to a worker), or set `FeatureConfig.batch_size` to 1.")
    p = results.get("predict")
    if p and not p["target"]["met"]:
        low = [r for r in p["rows"] if r["ratio"] < 1.0]
        alt = p.get("alt_max_windows") or []
        alt = [alt] if isinstance(alt, int) else alt
        per_size = "; ".join(
            f"{bb}: " + ", ".join(f"{r['loop win/s']:.1f} win/s at {r['batch']}" for r in p["rows"] if r["backbone"] == bb)
            for bb in dict.fromkeys(r["backbone"] for r in p["rows"]))
        forward = min(b.get("forward %", 0) for b in p["breakdown"])
        alt_text = "; ".join(
            f"`predict.max_windows={mw}`: ratios " + ", ".join(
                f"{r['backbone'].split('_')[0]} b{r['batch']} {r[f'ratio (max_windows={mw})']:.2f}x" for r in p["rows"])
            for mw in alt if all(f"ratio (max_windows={mw})" in r for r in p["rows"]))
        notes.append(
            "- **Batched prediction slower than the post's loop at "
            + ", ".join(f"{r['backbone']} batch {r['batch']} ({r['ratio']:.2f}x)" for r in low)
            + f".** Reason: the forward is {forward:.0f}-99% of both paths' time (breakdown below), and on this CPU "
            "a forward costs more per window the more windows it holds. The post's loop forwards B windows at a time "
            f"(its throughput per forward size B: {per_size}), while the batched path forwards up to "
            f"`max_windows={p['max_windows']}` windows at once (8B, capped). Batching wins where per-call overhead "
            "dominates (batch 1, tiny model) and loses where the larger activations (likely) outgrow the CPU caches. "
            + (f"Measured alternatives: {alt_text}. With forwards as small as the loop's, what is left of the gap is "
               "the batched path's extra work: the window copy (`split_windows`) and the stitched/pooled timelines "
               "(see the breakdown). " if alt_text else "")
            + "Next step: choose `max_windows` by device (about 8 on CPU; large on GPU, where batching is what fills "
            "the device), e.g. `predict.max_windows: auto`, and compute the stitched timelines only for the callers "
            "that use them; the GPU figures are still to be measured.")
    t = results.get("train_input")
    if t and not t["target"]["met"]:
        notes.append(
            f"- **Training input ({100 * t['target']['value']:.1f}% waiting for data >= 10%).** Next step: prefetch the "
            "next batch in a background thread (the 'prefetch thread' row measures it) or a DataLoader with workers.")
    s = results.get("scaling")
    if s and not s["target"]["met"]:
        notes.append(f"- **Scaling memory ({s['target']['value']:.2f} GiB, slope {s['target']['slope']:.2f}).** "
                     "See the per-phase peaks for the phase that grows.")
    g = results.get("gpu")
    if g and g.get("status") != "measured":
        notes.append(f"- **GPU path: {g.get('status')}.** Next step: run `python benchmarks/bench_gpu.py --compile "
                     "--recipe /tmp/bench/synth_full` on a CUDA machine (the script is ready; it skips cleanly here).")
    return notes


def write_results() -> Path:
    results = {name: r for name, *_ in SECTIONS if (r := _load(name)) is not None}
    if not results:
        raise SystemExit(f"no benchmark results in {common.BENCH_DIR}")
    machine = next(iter(results.values()))["machine"]
    summary = []
    for name, title, _ in SECTIONS:
        r = results.get(name)
        if r is None:
            continue
        t = r.get("target")
        if name == "lwlrap":
            fig = f"{r['speedup_vs_loop']:.1f}x faster than the per-sample loop"
        elif name == "gpu":
            fig = r.get("status", "-")
        elif name == "dask_test":
            fig = f"{'passed' if r['returncode'] == 0 else 'failed'} in {r['seconds']:.0f} s"
        elif name == "features":
            fig = "; ".join(f"{x['throughput ratio (' + str(r['n_jobs']) + ' procs)']:.2f}x with batch_size={x['batch_size']}"
                            + (" (default)" if x["default"] else "") for x in r["ratios"])
        elif name == "predict":
            fig = ", ".join(f"{x['backbone'].split('_')[0]} b{x['batch']}: {x['ratio']:.2f}x" for x in r["rows"])
        elif name == "train_input":
            first = {}
            for x in r["rows"]:  # the first warm inline run of each backbone
                if x["page cache"] == "warm" and x["loader"].startswith(("library", "inline")):
                    first.setdefault(x["backbone"], x["windows/s"])
            fig = f"{100 * t['value']:.1f}% data wait; " + ", ".join(f"{k} {v:.1f} win/s" for k, v in first.items())
        elif name == "onnx":
            fig = ", ".join(f"{x['backbone'].split('_')[0]} {x['vs torch']:.2f}x" for x in r["rows"]
                            if x["runtime"] == "onnxruntime")
        elif name == "scaling":
            fig = f"{t['value']:.2f} GiB peak at N={r['results'][-1]['n']}, RSS slope {t['slope']:.2f}"
        else:
            fig = "-"
        summary.append({"benchmark": title, "target": t["what"] if t else "-", "measured": fig,
                        "status": _status(t) if name != "gpu" else ("-" if r.get("status") != "measured" else "measured"),
                        "load at start": r.get("load_before", "-"), "other procs (cores)": r.get("foreign_cores", "-")})
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python benchmarks/run_all.py` (`make bench`) from the JSON files each script writes to "
        f"`{common.BENCH_DIR}`; every figure below is measured, none is typed in. Re-render without re-running: "
        "`python benchmarks/run_all.py --report-only`.",
        "",
        f"**Machine:** {machine['cpu']}, {machine['usable_cores']} cores, {machine['ram_gib']} GiB RAM, "
        f"{'GPU ' + machine['cuda'] if machine.get('cuda') else 'no GPU'}; Python {machine['python']}, "
        f"torch {machine['torch']} ({machine['torch_threads']} threads), numpy {machine['numpy']}; {machine['platform']}.",
        "",
        "Timings on this 2-core machine are only comparable when nothing else runs: each section gives the load "
        "average at its start and the CPU that *other* processes used while it ran (in cores, from the system's "
        "busy time minus the benchmark's own process tree). Every ratio is measured side by side in one run "
        "(interleaved repeats), so interference hits both sides of a ratio alike.",
        "",
        "## Summary",
        "",
        _md(summary, ["benchmark", "target", "measured", "status", "load at start", "other procs (cores)"]),
        "",
    ]
    notes = _missed_notes(results)
    if notes:
        lines += ["## Targets missed: reason and next step", "", *notes, ""]
    for name, title, render in SECTIONS:
        if name in results:
            lines += [f"## {title}", "", render(results[name]), ""]
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")
    return RESULTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Small sizes (checks the scripts; do not publish).")
    parser.add_argument("--only", type=lambda t: t.split(","), default=None, help=f"Subset of {','.join(BENCHES)}.")
    parser.add_argument("--skip", type=lambda t: t.split(","), default=[])
    parser.add_argument("--report-only", action="store_true", help="Only re-render RESULTS.md from the JSON files.")
    parser.add_argument("--max-load", type=float, default=common.LOAD_WARN, help="Wait for a load below this.")
    parser.add_argument("--wait", type=float, default=600, help="Seconds to wait for a quiet machine per benchmark.")
    args = parser.parse_args()
    failed = []
    if not args.report_only:
        for name in args.only or list(BENCHES):
            if name in args.skip:
                continue
            if name not in BENCHES:
                raise SystemExit(f"unknown benchmark {name!r} (known: {', '.join(BENCHES)})")
            if run_one(name, args.quick, args.max_load, args.wait):
                failed.append(name)
    if args.quick and not args.report_only:
        print("--quick: RESULTS.md left as it is (small sizes are for checking the scripts)")
    else:
        write_results()
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    main()
