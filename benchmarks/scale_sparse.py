"""Scale run: one training epoch of MultimodalAE and MULTIVI on a synthetic sparse multiome.

The data are random sparse CSR matrices (RNA counts at 10% density, binary ATAC peaks at 3% density) of
``--n-obs`` cells x ``--n-genes`` genes + ``--n-peaks`` peaks. Each model runs in its own subprocess, which
reports its resident memory after building the data, its peak resident memory (``ru_maxrss``) after one epoch,
and cells per second. The dense float32 size of the same matrices is reported beside them: the models slice
and densify one minibatch at a time, so the peak should stay far below it.

Run from the repository root::

    python benchmarks/scale_sparse.py                      # sizes used for the stored report (see --help)
    python benchmarks/scale_sparse.py --n-obs 100000       # the full 100,000-cell run

Writes ``benchmarks/results/scale_sparse.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_data(n_obs: int, n_genes: int, n_peaks: int, seed: int):
    import anndata as ad
    import mudata as md
    import numpy as np
    import pandas as pd
    from scipy import sparse

    rng = np.random.default_rng(seed)

    def random_csr(n_cols: int, per_row: int, binary: bool):
        indices = rng.integers(0, n_cols, size=n_obs * per_row, dtype=np.int32)
        data = np.ones(n_obs * per_row, dtype=np.float32) if binary else rng.poisson(1.0, n_obs * per_row) + 1.0
        indptr = np.arange(0, n_obs * per_row + 1, per_row, dtype=np.int64)
        m = sparse.csr_matrix((data.astype(np.float32), indices, indptr), shape=(n_obs, n_cols))
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    names = pd.Index([f"cell{i}" for i in range(n_obs)])
    rna = ad.AnnData(X=random_csr(n_genes, max(1, n_genes // 10), binary=False), obs=pd.DataFrame(index=names))
    rna.var_names = [f"gene{i}" for i in range(n_genes)]
    atac = ad.AnnData(X=random_csr(n_peaks, max(1, (3 * n_peaks) // 100), binary=True), obs=pd.DataFrame(index=names))
    atac.var_names = [f"peak{i}" for i in range(n_peaks)]
    rna.layers["counts"] = rna.X
    atac.layers["counts"] = atac.X
    return md.MuData({"rna": rna, "atac": atac})


def child(args) -> None:
    warnings.filterwarnings("ignore")
    import logging

    import torch

    torch.set_num_threads(args.threads)
    for name in ("multiomix", "lightning", "lightning.pytorch", "lightning.fabric", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import scvi

    import multiomix as mx

    base = rss_mb()
    start = time.perf_counter()
    mdata = make_data(args.n_obs, args.n_genes, args.n_peaks, seed=0)
    gen_seconds = time.perf_counter() - start
    data_rss = rss_mb()
    nnz = mdata["rna"].X.nnz + mdata["atac"].X.nnz
    scvi.settings.seed = 0
    if args.model == "mmae":
        mx.models.MultimodalAE.setup_mudata(mdata, modalities=["rna", "atac"], layer="counts")
        model = mx.models.MultimodalAE(mdata, losses={"rna": "nb", "atac": "bce"}, latent_dim=20, hidden_dim=256)
        train = {"max_epochs": 1, "batch_size": args.batch_size, "accelerator": "cpu"}
    else:
        scvi.model.MULTIVI.setup_mudata(
            mdata, rna_layer="counts", atac_layer="counts", modalities={"rna_layer": "rna", "atac_layer": "atac"}
        )
        model = scvi.model.MULTIVI(mdata, n_hidden=256, n_latent=20)
        train = {"max_epochs": 1, "batch_size": args.batch_size, "accelerator": "cpu", "enable_progress_bar": False,
                 "early_stopping": False}
    start = time.perf_counter()
    model.train(train_size=1.0, **train)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "model": args.model,
                "n_obs": args.n_obs,
                "n_genes": args.n_genes,
                "n_peaks": args.n_peaks,
                "nnz": int(nnz),
                "sparse_mb": round(nnz * 8 / 2**20, 1),
                "dense_float32_mb": round(args.n_obs * (args.n_genes + args.n_peaks) * 4 / 2**20, 1),
                "rss_start_mb": round(base, 1),
                "rss_after_data_mb": round(data_rss, 1),
                "peak_rss_mb": round(peak, 1),
                "data_seconds": round(gen_seconds, 1),
                "epoch_seconds": round(seconds, 1),
                "cells_per_second": round(args.n_obs / seconds, 1),
                "threads": args.threads,
                "batch_size": args.batch_size,
            }
        ),
        flush=True,
    )


def run_children(script: str, models: list[str], options: list[str]) -> list[dict]:
    """Run ``script --model <model> <options>`` for each model in its own process; its last JSON line each."""
    results = []
    for model in models:
        cmd = [sys.executable, script, "--model", model, *options]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if out.returncode != 0 or not lines:
            raise RuntimeError(f"{model} failed:\n{out.stderr[-3000:]}")
        results.append(json.loads(lines[-1]))
        print(results[-1], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-obs", type=int, default=20000)
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument("--n-peaks", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=["mmae", "multivi"])
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "scale_sparse"))
    args = parser.parse_args()
    if args.model:
        child(args)
        return
    results = run_children(__file__, args.models, ["--n-obs", str(args.n_obs), "--n-genes", str(args.n_genes),
                                                   "--n-peaks", str(args.n_peaks), "--batch-size",
                                                   str(args.batch_size), "--threads", str(args.threads)])
    Path(args.output + ".json").parent.mkdir(parents=True, exist_ok=True)
    Path(args.output + ".json").write_text(json.dumps(results, indent=1))
    r0 = results[0]
    lines = [
        "# Sparse scale run (`benchmarks/scale_sparse.py`)",
        "",
        f"Synthetic sparse multiome: {r0['n_obs']:,} cells x {r0['n_genes']:,} genes + {r0['n_peaks']:,} peaks "
        f"({r0['nnz']:,} stored values, {r0['sparse_mb']} MB as CSR; {r0['dense_float32_mb']:,} MB if dense float32). "
        f"One epoch, batch size {r0['batch_size']}, {r0['threads']} torch thread(s), CPU. "
        "Each model in its own process.",
        "",
        "| model | RSS after data (MB) | peak RSS (MB) | peak - data (MB) | dense size (MB) | epoch (s) | cells/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['rss_after_data_mb']} | {r['peak_rss_mb']} | "
            f"{r['peak_rss_mb'] - r['rss_after_data_mb']:.1f} | {r['dense_float32_mb']} | {r['epoch_seconds']} | "
            f"{r['cells_per_second']} |"
        )
    if len(results) == 2:
        a, b = results
        lines += [
            "",
            f"Ratio {a['model']}/{b['model']}: peak RSS {a['peak_rss_mb'] / b['peak_rss_mb']:.2f}, "
            f"cells/s {a['cells_per_second'] / b['cells_per_second']:.2f}.",
        ]
    Path(args.output + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
