"""Joint-embedding benchmark: MultimodalAE against concatenated PCA/LSI, RNA-only PCA, MULTIVI and TOTALVI.

Real data: the NeurIPS 2021 BMMC starter sets (multiome: 500 cells, 600 genes + 600 peaks; CITE-seq: 600 cells,
1000 genes + 134 proteins), read by ``mx.datasets`` from ``$MULTIOMIX_DATA_DIR`` (default ``../shared/data``
beside the repository). Every embedding is scored by ``mx.tl.benchmark_embeddings`` (Leiden best NMI over
resolutions 0.2-2.0 with the ARI of that clustering, cell-type ASW, batch ASW, graph connectivity) over the same
seeds. Deep models also report seconds per epoch (1 torch thread). The MultimodalAE is fitted at the defaults of
``mx.tl.fit_multimodal_ae`` (only the seed is set; the defaults were chosen on another data set,
``benchmarks/mmae_defaults.py``); ``--tuned`` runs the former per-dataset settings instead. At the defaults a fit
is a seed ensemble of five autoencoders (``n_models=5``); run ``s`` uses ``random_state=5 * s``, so that the runs
share no member. ``mmae_single`` is one autoencoder (``n_models=1``, ``random_state=s``), the default before.

Run from the repository root::

    python benchmarks/joint_embedding.py --seeds 5
    python benchmarks/joint_embedding.py --seeds 5 --only mmae   # without the slow MULTIVI / TOTALVI

Writes ``benchmarks/results/joint_embedding.{md,json}`` and PNG figures beside them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MULTIOMIX_DATA_DIR", str(ROOT.parent / "shared" / "data"))
warnings.filterwarnings("ignore")
torch.set_num_threads(1)

import scvi  # noqa: E402

import multiomix as mx  # noqa: E402

for name in ("multiomix", "lightning", "lightning.pytorch", "lightning.fabric", "scvi"):
    logging.getLogger(name).setLevel(logging.ERROR)

METRICS = ["nmi", "ari", "ari_best", "asw_label", "asw_batch", "graph_connectivity"]

# The former MultimodalAE settings per dataset (``--tuned``; the default run fits at the defaults of
# fit_multimodal_ae). Chosen by one-to-three-seed pilots on these same data, so rows run with them are tuned on the
# scored cells and the baselines are not: 50 epochs on every cell (no validation), 128 hidden units, all features,
# and on the multiome ATAC's loss weighted 0.2.
MMAE = {
    "multiome": {
        "layer": None,  # rna: log-normalised X; atac: binary X
        "losses": {"rna": "mse", "atac": "bce"},
        "loss_weights": {"atac": 0.2},
        "latent_dim": 20,
        "hidden_dim": 128,
        "max_epochs": 50,
    },
    "cite": {
        "layer": None,  # rna: log-normalised X; adt: normalised X
        "losses": {"rna": "mse", "adt": "mse"},
        "latent_dim": 20,
        "hidden_dim": 128,
        "max_epochs": 50,
    },
}


def _shown(row: dict) -> dict:
    """A table row for the progress print: numbers to 3 decimals, the recorded settings as they are."""
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}

def score(mdata, keys: list[str]) -> pd.DataFrame:
    return mx.tl.benchmark_embeddings(mdata, keys=keys, label_key="cell_type", batch_key="batch")


def run_mmae(mdata, dataset: str, seed: int, overrides: dict, tuned: bool = False) -> float:
    if not tuned:  # the fit's defaults: only the seed and the output key are set
        n_models = overrides.get("n_models", 5)  # the default's members: seeds 5 s, ..., 5 s + 4
        mx.tl.fit_multimodal_ae(mdata, random_state=seed * n_models, key_added="mmae", accelerator="cpu",
                                **overrides)
        return float(mdata.uns["mmae"]["seconds_per_epoch"])
    cfg = {**MMAE[dataset], "n_models": 1, **overrides}
    # the former tuned protocol: every cell trained on, last epoch kept (validation_size=0), all features
    # (use_highly_variable=False; the fit would otherwise read var['highly_variable'] of select_features)
    mx.tl.fit_multimodal_ae(mdata, random_state=seed, accelerator="cpu", key_added="mmae", validation_size=0.0,
                            use_highly_variable=False, **cfg)
    return float(mdata.uns["mmae"]["seconds_per_epoch"])


def epochs_run(model) -> int:
    history = model.history
    key = "elbo_train" if "elbo_train" in history else next(iter(history))
    return max(len(history[key]), 1)


def run_multivi(mdata, seed: int, epochs: int) -> tuple[np.ndarray, float]:
    peer = mdata.copy()
    scvi.settings.seed = seed
    scvi.model.MULTIVI.setup_mudata(
        peer, rna_layer="counts", atac_layer="counts", modalities={"rna_layer": "rna", "atac_layer": "atac"}
    )
    model = scvi.model.MULTIVI(peer, n_hidden=128, n_latent=20)
    start = time.perf_counter()
    model.train(max_epochs=epochs, lr=1e-3, accelerator="cpu", enable_progress_bar=False)
    seconds = (time.perf_counter() - start) / epochs_run(model)
    return model.get_latent_representation(), seconds


def run_totalvi(mdata, seed: int, epochs: int) -> tuple[np.ndarray, float]:
    peer = mdata.copy()
    peer["adt"].layers["counts"] = np.asarray(peer["adt"].layers["counts"].toarray())  # TOTALVI's prior init is dense
    scvi.settings.seed = seed
    scvi.model.TOTALVI.setup_mudata(
        peer, rna_layer="counts", protein_layer="counts", modalities={"rna_layer": "rna", "protein_layer": "adt"}
    )
    model = scvi.model.TOTALVI(peer)
    start = time.perf_counter()
    model.train(max_epochs=epochs, accelerator="cpu", enable_progress_bar=False)
    seconds = (time.perf_counter() - start) / epochs_run(model)
    return model.get_latent_representation(), seconds


def load(dataset: str):
    if dataset == "multiome":
        mdata = mx.datasets.bmmc_multiome()
        mx.pp.select_features(mdata, n_top={"rna": 2500, "atac": 5000}, layer="counts")
    else:
        mdata = mx.datasets.bmmc_cite()
        mx.pp.select_features(mdata, n_top={"rna": 2500}, layer="counts")
    return mdata


def benchmark(dataset: str, seeds: list[int], peer_epochs: int, variants: dict, only: str, umap: bool,
              tuned: bool = False):
    mdata = load(dataset)
    rows, timing = [], {}
    skip_peers = only == "mmae"
    mx.tl.pca_concat(mdata, n_comps=20, layer="counts")
    mx.tl.pca_concat(mdata, n_comps=20, layer="counts", modalities=["rna"], key_added="X_pca_rna")
    if only != "peers":
        table = score(mdata, ["X_pca_concat", "X_pca_rna"])
        for key, row in table.iterrows():
            rows.append({"dataset": dataset, "method": key.removeprefix("X_"), "seed": -1, **row.to_dict()})
    peer_name = "multivi" if dataset == "multiome" else "totalvi"
    for variant, overrides in (variants.items() if only != "peers" else []):
        for seed in seeds:
            t = run_mmae(mdata, dataset, seed, overrides, tuned)
            timing.setdefault(variant, []).append(t)
            row = score(mdata, ["X_mmae"]).iloc[0].to_dict()
            rows.append({"dataset": dataset, "method": variant, "seed": seed, **row})
            print(dataset, variant, seed, _shown(row), f"{t:.3f}s/epoch", flush=True)
    if not skip_peers:
        for seed in seeds:
            runner = run_multivi if dataset == "multiome" else run_totalvi
            latent, t = runner(mdata, seed, peer_epochs)
            timing.setdefault(peer_name, []).append(t)
            mdata.obsm[f"X_{peer_name}"] = latent
            row = score(mdata, [f"X_{peer_name}"]).iloc[0].to_dict()
            rows.append({"dataset": dataset, "method": peer_name, "seed": seed, **row})
            print(dataset, peer_name, seed, _shown(row), f"{t:.3f}s/epoch", flush=True)
    if not umap:
        return rows, {k: float(np.mean(v)) for k, v in timing.items()}
    # UMAPs of the last seed of each method for the figure
    keys = ["X_pca_concat", "X_pca_rna"] + [k for k in ("X_mmae", f"X_{peer_name}") if k in mdata.obsm]
    mx.tl.benchmark_embeddings(mdata, keys=keys, label_key="cell_type", umap=True, key_added="umap_tmp")
    fig = mx.pl.embedding(mdata, keys=keys, color="cell_type", point_size=6)
    fig.savefig(ROOT / "benchmarks" / "results" / f"joint_embedding_{dataset}_umap.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return rows, {k: float(np.mean(v)) for k, v in timing.items()}


def summarise(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    agg = df.groupby(["dataset", "method"], sort=False)[METRICS].agg(["mean", "std"])
    agg.columns = [f"{m}_{s}" for m, s in agg.columns]
    agg["n_seeds"] = df.groupby(["dataset", "method"], sort=False)["seed"].apply(lambda s: int((s >= 0).sum()) or 1)
    return agg.reset_index()


def command(args: dict) -> str:
    """The command line that produced a (partial) run, from its recorded arguments."""
    parts = ["python benchmarks/joint_embedding.py", f"--seeds {args['seeds']}"]
    if args.get("seed_list"):
        parts.append("--seed-list " + " ".join(map(str, args["seed_list"])))
    if args.get("only", "all") != "mmae":
        parts.append(f"--peer-epochs {args['peer_epochs']}")
    if args.get("only", "all") != "all":
        parts.append(f"--only {args['only']}")
    if args.get("tuned"):
        parts.append("--tuned")
    if args.get("no_umap"):
        parts.append("--no-umap")
    return "`" + " ".join(parts) + "`"


def markdown(summary: pd.DataFrame, timing: dict, args, parts: list[dict] | None = None) -> str:
    if parts:
        what = "; ".join(f"{command(p['args'])} ({', '.join(sorted({r['method'] for r in p['rows']}))})"
                         for p in parts)
        ran = (f"Merged from separate runs (each row's method from the run named): {what}. The MultimodalAE runs "
               "without `--tuned` fit it at the defaults of `fit_multimodal_ae` of their time (only the seed set). ")
    else:
        ran = f"Command: {command(vars(args))}. "
    mode = ("MultimodalAE at the former tuned settings (`--tuned`)" if getattr(args, "tuned", False)
            else "MultimodalAE at the defaults of `fit_multimodal_ae` (only the seed set)")
    lines = [
        "# Joint-embedding benchmark (`benchmarks/joint_embedding.py`)",
        "",
        ran + (f"{mode}. " if not parts else "")
        + "CPU, 1 torch thread. Leiden best NMI over resolutions 0.2-2.0 (step 0.2) and the ARI of that clustering "
        "(`ari`), best ARI over resolutions (`ari_best`), cell-type ASW scaled to [0, 1], batch ASW and graph "
        "connectivity (batch = donor/site). Deep models: mean ± sd over seeds. `mmae`: `fit_multimodal_ae` at its "
        "defaults, a seed ensemble of five autoencoders whose standardised latents are joined (run s: seeds 5s to "
        "5s + 4); `mmae_single`: one autoencoder (`n_models=1`, seed s; the default before). Rows named "
        "`*_ensemble5` (older runs) joined the latents of five single runs after the fact.",
        "",
        "| dataset | method | seeds | NMI | ARI | ARI (best) | cell-type ASW | batch ASW | graph conn. |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in summary.iterrows():
        def cell(m, r=r):
            mean, std = r[f"{m}_mean"], r[f"{m}_std"]
            return f"{mean:.3f}" if not np.isfinite(std) or r["n_seeds"] <= 1 else f"{mean:.3f} ± {std:.3f}"

        lines.append(
            f"| {r['dataset']} | {r['method']} | {r['n_seeds']} | "
            + " | ".join(cell(m) for m in METRICS)
            + " |"
        )
    lines += ["", "MultimodalAE (mean over seeds) against the better of RNA-only PCA and concatenated PCA/LSI, "
              "per metric:", ""]
    for dataset, sub in summary.groupby("dataset", sort=False):
        sub = sub.set_index("method")
        if "mmae" not in sub.index or not {"pca_rna", "pca_concat"} <= set(sub.index):
            continue
        parts = []
        for m, label in (("nmi", "NMI"), ("ari", "ARI")):
            ours, base = sub.loc["mmae", f"{m}_mean"], sub.loc[["pca_rna", "pca_concat"], f"{m}_mean"]
            parts.append(f"{label} {ours:.3f} vs {base.max():.3f} ({base.idxmax()}): {ours - base.max():+.3f}")
        lines.append(f"- {dataset}: " + "; ".join(parts))
    lines += ["", "Seconds per epoch (mean over seeds, 1 thread, this machine; an ensemble's: its training time over "
              "its members' epochs):", ""]
    for dataset, t in timing.items():
        lines.append(f"- {dataset}: " + ", ".join(f"{k} {v:.3f} s" for k, v in t.items()))
    return "\n".join(lines) + "\n"


def recorded_args(args) -> dict:
    """The command-line arguments for the JSON report, with the output path relative to the repository."""
    recorded = vars(args).copy()
    output = Path(recorded["output"]).resolve()
    if output.is_relative_to(ROOT):
        recorded["output"] = str(output.relative_to(ROOT))
    return recorded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed-list", type=int, nargs="+", help="run these seeds only (to run seeds in parallel)")
    parser.add_argument("--peer-epochs", type=int, default=200, help="max epochs of MULTIVI / TOTALVI")
    parser.add_argument("--datasets", nargs="+", default=["multiome", "cite"])
    parser.add_argument("--only", choices=["all", "mmae", "peers"], default="all",
                        help="run only part of the methods (to run parts in parallel; combine with --merge)")
    parser.add_argument("--no-umap", action="store_true")
    parser.add_argument("--tuned", action="store_true",
                        help="the former per-dataset MultimodalAE settings (MMAE) instead of the fit's defaults")
    parser.add_argument("--merge", nargs="+", help="combine the JSON outputs of partial runs into one report")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "joint_embedding"))
    args = parser.parse_args()
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    if args.merge:
        parts = [json.loads(Path(p).read_text()) for p in args.merge]
        rows = [r for p in parts for r in p["rows"]]
        timing = {}
        for p in parts:
            for dataset, t in p["seconds_per_epoch"].items():
                timing.setdefault(dataset, {}).update(t)
        order = {"multiome": 0, "cite": 1}
        rows.sort(key=lambda r: order.get(r["dataset"], 2))
        Path(args.output + ".json").write_text(json.dumps({"rows": rows, "seconds_per_epoch": timing,
                                                           "args": recorded_args(args)}, indent=1))
        Path(args.output + ".md").write_text(markdown(summarise(rows), timing, args, parts))
        print(markdown(summarise(rows), timing, args, parts))
        charts(summarise(rows), list(dict.fromkeys(r["dataset"] for r in rows)), args.output)
        return
    seeds = args.seed_list if args.seed_list else list(range(args.seeds))
    variants = {"mmae_single": {"n_models": 1}, "mmae": {}} if not args.tuned else {"mmae": {}}
    all_rows, timing = [], {}
    for dataset in args.datasets:
        rows, timing[dataset] = benchmark(dataset, seeds, args.peer_epochs, variants, args.only, not args.no_umap,
                                          args.tuned)
        all_rows += rows
        summary = summarise(all_rows)
        Path(args.output + ".json").write_text(
            json.dumps({"rows": all_rows, "seconds_per_epoch": timing, "args": recorded_args(args)}, indent=1)
        )
        Path(args.output + ".md").write_text(markdown(summary, timing, args))
    print(markdown(summarise(all_rows), timing, args))
    if args.only == "all":
        charts(summary, args.datasets, args.output)


def charts(summary: pd.DataFrame, datasets: list[str], output: str) -> None:
    """Bar chart of the mean scores per dataset, drawn by mx.pl.benchmark."""
    for dataset in datasets:
        sub = summary[summary["dataset"] == dataset].set_index("method")
        table = sub[[f"{m}_mean" for m in ["nmi", "ari", "asw_label", "asw_batch", "graph_connectivity"]]]
        table.columns = [c.removesuffix("_mean") for c in table.columns]
        holder = type("Holder", (), {})()
        holder.uns = {"embedding_benchmark": table}
        ax = mx.pl.benchmark(holder)
        ax.set_title(f"BMMC {dataset}: mean over seeds")
        ax.figure.savefig(f"{output}_{dataset}.png", dpi=130, bbox_inches="tight")
        plt.close(ax.figure)


if __name__ == "__main__":
    main()
