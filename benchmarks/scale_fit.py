"""Scale run of the ``tl.fit_*`` functions at their defaults: one epoch on a large sparse multiome with labels.

``benchmarks/scale_sparse.py`` times the training loop alone; this script runs the whole fit a user calls
(standardisation, UnitedNet's linear maps, CrossAttOmics' fitted linear path, the baseline, test metrics), where
work that grows with cells x features lives. The data are ``scale_sparse.make_data``'s random sparse CSR
matrices (RNA counts, binary ATAC peaks) with ``--n-classes`` random labels; only memory and time are measured
(the labels carry no signal). Each fit runs in its own subprocess, which reports its peak resident memory
(``ru_maxrss``) and seconds, next to the dense float32 size of the data.

Run from the repository root::

    python benchmarks/scale_fit.py            # 20,000 cells x 10,000 genes + 5,000 peaks

Writes ``benchmarks/results/scale_fit.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def child(args) -> None:
    warnings.filterwarnings("ignore")
    import numpy as np
    import pandas as pd
    import torch
    from scale_sparse import make_data, rss_mb

    import multiomix as mx

    torch.set_num_threads(args.threads)
    mdata = make_data(args.n_obs, args.n_genes, args.n_peaks, seed=0)
    labels = np.random.default_rng(0).integers(0, args.n_classes, args.n_obs)
    mdata.obs["label"] = pd.Categorical([f"type{c}" for c in labels])
    data_rss = rss_mb()
    fit = {"unitednet": mx.tl.fit_unitednet, "crossattomics": mx.tl.fit_crossattomics}[args.model]
    start = time.perf_counter()
    fit(mdata, label_key="label", max_epochs=1, progress_bar=False)
    seconds = time.perf_counter() - start
    info = mdata.uns[args.model]
    print(json.dumps({
        "model": args.model, "n_obs": args.n_obs, "n_genes": args.n_genes, "n_peaks": args.n_peaks,
        "dense_float32_mb": round(args.n_obs * (args.n_genes + args.n_peaks) * 4 / 2**20, 1),
        "rss_after_data_mb": round(data_rss, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "fit_seconds": round(seconds, 1), "threads": args.threads,
        "baseline_rows": info["baseline"].get("n_train"), "test_accuracy": info["test_metrics"]["accuracy"],
    }), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-obs", type=int, default=20000)
    parser.add_argument("--n-genes", type=int, default=10000)
    parser.add_argument("--n-peaks", type=int, default=5000)
    parser.add_argument("--n-classes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=["unitednet", "crossattomics"])
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "scale_fit"))
    args = parser.parse_args()
    if args.model:
        child(args)
        return
    from scale_sparse import run_children

    results = run_children(__file__, args.models, ["--n-obs", str(args.n_obs), "--n-genes", str(args.n_genes),
                                                   "--n-peaks", str(args.n_peaks), "--n-classes",
                                                   str(args.n_classes), "--threads", str(args.threads)])
    Path(args.output + ".json").write_text(json.dumps(results, indent=1))
    r0 = results[0]
    lines = [
        "# Whole-fit scale run (`benchmarks/scale_fit.py`)",
        "",
        f"Synthetic sparse multiome with random labels: {r0['n_obs']:,} cells x {r0['n_genes']:,} genes (counts) + "
        f"{r0['n_peaks']:,} binary peaks ({r0['dense_float32_mb']:,} MB if dense float32). `mx.tl.fit_<model>` at "
        f"its defaults with `max_epochs=1`, {r0['threads']} torch thread(s), CPU, each fit in its own process.",
        "",
        "| fit | RSS after data (MB) | peak RSS (MB) | dense size (MB) | fit (s) | baseline rows |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['model']} | {r['rss_after_data_mb']} | {r['peak_rss_mb']} | {r['dense_float32_mb']} | "
              f"{r['fit_seconds']} | {r['baseline_rows']} |" for r in results]
    Path(args.output + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
