"""ONNX (onnxruntime, CPU) against torch: windows per second of one fold model at the post's window size.

Same weights (random init, eval mode), same input: batches of normalised windows ``(B, 3, 128, 512)``. torch runs
with ``torch.set_num_threads(T)`` under ``no_grad``; onnxruntime with ``intra_op_num_threads=T`` on the graph
``rfcx-kit export`` writes (``method.export.export_onnx``). Outputs are checked equal first (max |difference|).
Each figure is the median of ``--repeat`` timed runs of ``--batches`` forwards after one warm-up forward.

    python benchmarks/bench_onnx.py [--backbones mobilenetv3_small_050,resnet18] [--batch 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from rfcx_kit.method.export import export_onnx, onnx_session  # noqa: E402
from rfcx_kit.model.sed import SEDModel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="mobilenetv3_small_050,resnet18")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    load_before = common.warn_if_busy("onnx")
    torch.set_num_threads(args.threads)
    rows = []
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (args.batch, 3, 128, 512)).astype(np.float32))
    for backbone in args.backbones.split(","):
        torch.manual_seed(0)
        model = SEDModel(backbone).eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            export_onnx(model, path, (3, 128, 512))
            session = onnx_session(path, threads=args.threads)
            got = session.run(None, {"x": x.numpy()})
            with torch.no_grad():
                want = model(x)
            diff = max(float(np.abs(got[0] - want["clipwise"].numpy()).max()),
                       float(np.abs(got[1] - want["framewise"].numpy()).max()))

            def run_torch() -> None:
                with torch.no_grad():
                    for _ in range(args.batches):
                        model(x)

            def run_onnx() -> None:
                for _ in range(args.batches):
                    session.run(None, {"x": x.numpy()})

            run_torch(), run_onnx()  # warm-up
            for name, fn in (("torch", run_torch), ("onnxruntime", run_onnx)):
                times = common.time_call(fn, repeat=args.repeat)
                median = common.summary(times)["median"]
                rows.append({"backbone": backbone, "runtime": name, "windows/s": args.batch * args.batches / median,
                             "ms per window": 1000 * median / (args.batch * args.batches), "max |diff|": diff})
            print(common.table(rows[-2:]))
    for backbone in args.backbones.split(","):
        pair = {r["runtime"]: r["windows/s"] for r in rows if r["backbone"] == backbone}
        for r in rows:
            if r["backbone"] == backbone:
                r["vs torch"] = r["windows/s"] / pair["torch"]
    common.write_result("onnx", {"rows": rows, "batch": args.batch, "threads": args.threads,
                                 "load_before": load_before})


if __name__ == "__main__":
    main()
