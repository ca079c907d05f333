"""Time per epoch of CrossAttOmics on the 615 training patients of TCGA BRCA, against peers run back to back.

Usage: python benchmarks/tcga_speed.py [--threads 1] [--repeats 5] [--epochs 20]

Measured, in one process and interleaved: (1) CrossAttOmics trained through scvi-tools/Lightning
(`model.train`, validation on 154 patients every epoch); (2) the same network in a bare PyTorch loop over
pre-loaded tensors (the cost of the arithmetic plus autograd); (3) a plain 256-64 MLP on the concatenated
omics in the same bare loop. FLOPs are counted with torch's FlopCounterMode on one training step and
compared with this machine's measured fp32 matrix-multiply peak. Writes results/tcga_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import multiomix as mx

warnings.filterwarnings("ignore")
logging.getLogger("multiomix").setLevel(logging.WARNING)
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


def matmul_peak(threads: int, size: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def bare_epoch_seconds(net, inputs, labels, batch_size, epochs) -> float:
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
    n = labels.shape[0]
    net.train()
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in torch.randperm(n).split(batch_size):
            logits = net({k: v[batch] for k, v in inputs.items()}) if isinstance(inputs, dict) else net(inputs[batch])
            loss = torch.nn.functional.cross_entropy(logits, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return (time.perf_counter() - start) / epochs


def step_flops(net, inputs, labels, batch_size) -> float:
    batch = torch.arange(batch_size)
    with FlopCounterMode(display=False) as counter:
        logits = net({k: v[batch] for k, v in inputs.items()}) if isinstance(inputs, dict) else net(inputs[batch])
        torch.nn.functional.cross_entropy(logits, labels[batch]).backward()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "tcga_speed"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mdata = mx.datasets.tcga_brca()
    mx.pp.split(mdata, label_key="subtype", test_size=0.2, random_state=0)
    train = np.flatnonzero(mdata.obs["split"] == "train")
    test = np.flatnonzero(mdata.obs["split"] == "test")
    mx.models.CrossAttOmics.setup_mudata(mdata, label_key="subtype")
    model = mx.models.CrossAttOmics(mdata, group_sizes=(16,), hidden=(64,), dropout=0.3)
    inputs = {m: torch.as_tensor(mdata.mod[m].X[train]) for m in model.modalities}
    labels = torch.as_tensor(mdata.obs["subtype"].cat.codes.to_numpy()[train], dtype=torch.long)
    concatenated = torch.cat(list(inputs.values()), dim=1)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(concatenated.shape[1], 256), torch.nn.ReLU(), torch.nn.Linear(256, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 5),
    )
    flops = {
        "crossattomics": step_flops(model.module.net, inputs, labels, args.batch_size),
        "mlp_256_64": step_flops(mlp, concatenated, labels, args.batch_size),
    }
    n_steps = int(np.ceil(len(train) / args.batch_size))
    times = {"crossattomics_engine": [], "crossattomics_bare_loop": [], "mlp_256_64_bare_loop": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.train(args.epochs, train_indices=train, validation_indices=test, early_stopping=False,
                    batch_size=args.batch_size, enable_progress_bar=False)
        times["crossattomics_engine"].append((time.perf_counter() - start) / args.epochs)
        times["crossattomics_bare_loop"].append(
            bare_epoch_seconds(model.module.net, inputs, labels, args.batch_size, args.epochs))
        times["mlp_256_64_bare_loop"].append(
            bare_epoch_seconds(mlp, concatenated, labels, args.batch_size, args.epochs))
    peak = matmul_peak(args.threads)
    medians = {k: float(np.median(v)) for k, v in times.items()}
    epoch_flops = {"crossattomics": flops["crossattomics"] * n_steps, "mlp_256_64": flops["mlp_256_64"] * n_steps}
    report = {
        "threads": args.threads, "batch_size": args.batch_size, "train_patients": len(train),
        "steps_per_epoch": n_steps, "seconds_per_epoch_median": medians, "seconds_per_epoch_all": times,
        "train_flops_per_epoch": epoch_flops, "matmul_peak_flops": peak,
        "arithmetic_floor_seconds": {k: v / peak for k, v in epoch_flops.items()},
        "engine_over_bare_loop": medians["crossattomics_engine"] / medians["crossattomics_bare_loop"],
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=1))
    lines = [
        "# CrossAttOmics time per epoch, TCGA BRCA (615 training patients)\n",
        f"torch threads {args.threads}, batch {args.batch_size} ({n_steps} steps/epoch), median of {args.repeats} "
        f"repeats x {args.epochs} epochs, peers interleaved; command: `python benchmarks/tcga_speed.py "
        f"--threads {args.threads}`\n",
        "| what | s / epoch |", "|---|---|",
        *[f"| {k} | {v:.4f} |" for k, v in medians.items()],
        "",
        f"Training FLOPs per epoch: CrossAttOmics {epoch_flops['crossattomics'] / 1e9:.3f} G, "
        f"MLP {epoch_flops['mlp_256_64'] / 1e9:.3f} G; measured fp32 matmul peak {peak / 1e9:.0f} GFLOP/s "
        f"-> arithmetic floor {epoch_flops['crossattomics'] / peak:.4f} s/epoch for CrossAttOmics. "
        f"Engine / bare loop: {report['engine_over_bare_loop']:.2f}x (the engine epoch includes validation).",
        f"Load average when the run ended: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
    ]
    output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
