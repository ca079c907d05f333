"""UnitedNet on Patch-seq (Gouwens et al. 2020; 448 GABAergic neurons, RNA / ephys / morphology, 27 MET types).

5-fold stratified cross-validation (``StratifiedKFold(5, shuffle=True, random_state=0)``). In every fold the
model standardises each modality with the statistics of its training rows only, 10 % of the training rows
(``train_test_split(..., random_state=0)``) choose the checkpoint and the best head, and the test fold is
used only for the numbers below. Peers, same folds, same script: logistic regression on all modalities and
on RNA alone, k-means (27 clusters) on a 30-component RNA PCA, ridge regression (alpha by internal CV) for
every ordered cross-modal pair; they are fitted on all training rows of the fold (train + validation),
standardised with those rows' statistics.

Metrics: MET-type accuracy, ARI, NMI (supervised); ARI, NMI and Hungarian-matched accuracy of the clusters
(unsupervised); cross-modal R^2 (1 - SSE / SST summed over the target's features in training-standardised
units, i.e. variance-weighted R^2) and mean per-feature Pearson r, for each ordered pair.

UnitedNet is fitted ``--seeds`` times per fold and mode (``random_state = fold + 100 * seed``); its metrics
are averaged over the seeds within each fold, then over the folds, and the spread over seeds (standard
deviation of the per-seed means over folds) is reported next to them.

Run: ``python benchmarks/patchseq.py [--epochs 40] [--folds 5] [--seeds 1] [--n-splits 5]``; writes
``benchmarks/results/patchseq.{md,json}`` (``patchseq_<n>fold.{md,json}`` for ``--n-splits`` other than 5,
e.g. 10 to match the protocol of the original's unsupervised numbers).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import adjusted_rand_score, confusion_matrix, normalized_mutual_info_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.preprocessing import StandardScaler

import multiomix as mx
from multiomix._baseline import logistic_baseline
from multiomix.models import UnitedNet

warnings.filterwarnings("ignore")
for name in ("lightning", "lightning.pytorch", "multiomix", "scvi"):
    logging.getLogger(name).setLevel(logging.ERROR)

RESULTS = Path(__file__).parent / "results"
DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
MODS = ("rna", "ephys", "morph")
PAIRS = [(s, t) for s in MODS for t in MODS if s != t]
MODEL_KW = {"latent_dim": 64, "hidden": (256,), "n_heads": 5, "input_dropout": 0.5, "dropout": 0.2,
            "loss_weights": {"reconstruction": 0.3, "translation": 3.0}}
# per-mode settings on top of MODEL_KW: a 32-wide latent for clustering, chosen by the ARI of the *training*
# rows' clusters (labels are not used in unsupervised training, so this does not look at the test folds):
# 0.432 against 0.421 (64) and 0.407 (16), 5 folds x 2 seeds
MODE_KW = {"supervised": {}, "unsupervised": {"latent_dim": 32}}
TRAIN_KW = {"lr": {"translation": 3e-3, "classification": 3e-3, "clustering": 3e-4}, "weight_decay": 1e-3,
            "batch_size": 64}
ORIGINAL = {  # original UnitedNet code on this machine's CPU (10-fold, its notebook protocol), from the issue
    "unsupervised": {"ari": 0.365, "nmi": 0.830, "matched_accuracy": 0.618, "s_per_epoch": 5.2},
    "supervised": {"accuracy": 0.904, "ari": 0.742, "s_per_epoch": 12.3},
    "r2": {"rna->ephys": 0.273, "rna->morph": 0.115, "ephys->rna": 0.135, "ephys->morph": 0.032,
           "morph->rna": 0.087, "morph->ephys": 0.059},
}


def r2_vw(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(1 - ((truth - pred) ** 2).sum() / ((truth - truth.mean(0)) ** 2).sum())


def mean_pearson(truth: np.ndarray, pred: np.ndarray) -> float:
    t, p = truth - truth.mean(0), pred - pred.mean(0)
    denom = np.sqrt((t**2).sum(0) * (p**2).sum(0))
    ok = denom > 1e-12
    return float(((t * p).sum(0)[ok] / denom[ok]).mean())


def group_scores(truth: np.ndarray, groups: np.ndarray) -> dict:
    """ARI and NMI (geometric) of predicted groups against the true types."""
    return {"ari": float(adjusted_rand_score(truth, groups)),
            "nmi": float(normalized_mutual_info_score(truth, groups, average_method="geometric"))}


def matched_accuracy(y: np.ndarray, clusters: np.ndarray) -> float:
    labels, y_codes = np.unique(y, return_inverse=True)
    _, c_codes = np.unique(clusters, return_inverse=True)
    cm = confusion_matrix(y_codes, c_codes)
    rows, cols = linear_sum_assignment(-cm)
    return float(cm[rows, cols].sum() / len(y))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="UnitedNet fits per fold and mode")
    parser.add_argument("--n-splits", type=int, default=5, help="folds of the stratified CV")
    parser.add_argument("--report", action="store_true", help="rebuild the page from the JSON of an earlier run")
    parser.add_argument("--defaults", action="store_true",
                        help="UnitedNet at its defaults (no settings above, its own epochs); writes patchseq_defaults")
    args = parser.parse_args()
    if args.defaults:
        MODEL_KW.clear()
        MODE_KW.update({"supervised": {}, "unsupervised": {}})
        TRAIN_KW.clear()
        args.epochs = None
    if args.report:
        stem = _stem(args)
        saved = json.loads((RESULTS / f"{stem}.json").read_text())
        for key in ("epochs", "seeds", "threads"):
            setattr(args, key, saved["summary"][key])
        write_report(saved["folds"], args)
        return
    torch.set_num_threads(args.threads)
    mdata = mx.datasets.patchseq(data_dir=DATA if DATA.exists() else None)
    y = mdata.obs["cell_type_TEM"].astype(str).to_numpy()
    raw = {m: np.asarray(mdata.mod[m].X, dtype=np.float64) for m in MODS}
    folds = list(StratifiedKFold(args.n_splits, shuffle=True, random_state=0).split(np.zeros(len(y)), y))
    folds = folds[: args.folds]
    rows = []
    for k, (train_all, test) in enumerate(folds):
        train, val = train_test_split(train_all, test_size=0.1, random_state=0)
        scaled = {m: StandardScaler().fit(raw[m][train_all]).transform(raw[m]) for m in MODS}
        # peers
        row: dict = {"fold": k, "n_test": len(test)}
        t0 = time.perf_counter()
        for name, feats in (("logreg_all", np.hstack([scaled[m] for m in MODS])), ("logreg_rna", scaled["rna"]),
                            ("logreg_all_cv", np.hstack([scaled[m] for m in MODS]))):
            clf = (logistic_baseline(feats[train_all], y[train_all]) if name.endswith("_cv")  # every fit's baseline
                   else LogisticRegression(max_iter=3000).fit(feats[train_all], y[train_all]))
            pred = clf.predict(feats[test])
            row[name] = {"accuracy": float((pred == y[test]).mean()), "ari": float(adjusted_rand_score(y[test], pred))}
        # k-means (27) on the RNA PCA (30 components), fitted on the training rows
        pca = PCA(30, random_state=0).fit(scaled["rna"][train_all])
        km = KMeans(27, n_init=10, random_state=0).fit(pca.transform(scaled["rna"][train_all]))
        pred = km.predict(pca.transform(scaled["rna"][test]))
        row["kmeans_rna_pca"] = {**group_scores(y[test], pred), "matched_accuracy": matched_accuracy(y[test], pred)}
        for s, t in PAIRS:
            ridge = RidgeCV(alphas=np.logspace(-1, 5, 13)).fit(scaled[s][train_all], scaled[t][train_all])
            pred = ridge.predict(scaled[s][test])
            truth = scaled[t][test]
            row[f"ridge {s}->{t}"] = {"r2": r2_vw(truth, pred), "pearson": mean_pearson(truth, pred)}
        row["peer_seconds"] = time.perf_counter() - t0
        # UnitedNet, both modes, --seeds fits each
        for mode in ("supervised", "unsupervised"):
            fits = [fit_unitednet(mdata, mode, raw, y, train, val, test, train_all, args.epochs, k + 100 * seed)
                    for seed in range(args.seeds)]
            per_seed = [res for res, _outputs in fits]
            row[f"unitednet_{mode}"] = _average(per_seed)
            row[f"unitednet_{mode}_per_seed"] = per_seed
            if args.seeds > 1:
                row[f"unitednet_{mode}_ensemble"] = score_ensemble([o for _r, o in fits], raw, y, test, train_all)
        rows.append(row)
        print(json.dumps({k2: (v if not isinstance(v, dict) else {a: round(b, 3) if isinstance(b, float) else b
                                                                  for a, b in v.items()}) for k2, v in row.items()}),
              flush=True)
    write_report(rows, args)


def fit_unitednet(mdata, mode, raw, y, train, val, test, train_all, epochs: int, seed: int) -> tuple[dict, dict]:
    """Fit one UnitedNet on ``train`` (checkpoint and head on ``val``) and score it on ``test``.

    Returns the scores and the raw test outputs (class probabilities in the supervised mode, translations in
    training-standardised units) for :func:`score_ensemble`.
    """
    UnitedNet.setup_mudata(mdata, label_key="cell_type_TEM")
    model = UnitedNet(mdata, mode=mode, n_clusters=27, random_state=seed, **{**MODEL_KW, **MODE_KW[mode]})
    t0 = time.perf_counter()
    model.train(epochs, train_indices=np.sort(train), validation_indices=np.sort(val), accelerator="cpu",
                progress_bar=False, **TRAIN_KW)
    seconds = time.perf_counter() - t0
    epochs_run = epochs or len(model.history["train_loss"])
    pred = model.predict(indices=test).astype(str).to_numpy()
    res = {"seed": seed, "seconds": seconds, "s_per_epoch": seconds / epochs_run, "best_head": model.best_head,
           **group_scores(y[test], pred)}
    outputs: dict = {"translations": {}}
    if mode == "supervised":
        res["accuracy"] = float((pred == y[test]).mean())
        outputs["proba"] = model.predict_proba(indices=test)
    else:
        res["matched_accuracy"] = matched_accuracy(y[test], pred)
        outputs["clusters"] = pred
    for s, t in PAIRS:
        out = model.translate(mdata[test], source=s, target=t)
        sc = StandardScaler().fit(raw[t][train_all])
        truth, est = sc.transform(raw[t][test]), sc.transform(out.astype(np.float64))
        res[f"{s}->{t}"] = {"r2": r2_vw(truth, est), "pearson": mean_pearson(truth, est)}
        outputs["translations"][f"{s}->{t}"] = est
    return res, outputs


def score_ensemble(outputs: list[dict], raw, y, test, train_all) -> dict:
    """Scores of the seeds' combined outputs: averaged class probabilities (supervised), a consensus of the
    clusterings (unsupervised) and averaged translations.

    Clusters of different seeds are not aligned, so they are combined by evidence accumulation
    (:func:`multiomix.tl.consensus_clusters`; Fred & Jain, 2005): the fraction of seeds that put two test cells in
    one cluster is a similarity, and average-linkage clustering of ``1 - similarity`` cuts it into 27 clusters.
    """
    res: dict = {}
    if "clusters" in outputs[0]:
        runs = AnnData(obs=pd.DataFrame({f"seed{i}": o["clusters"] for i, o in enumerate(outputs)},
                                        index=[str(i) for i in range(len(test))]))
        mx.tl.consensus_clusters(runs, list(runs.obs.columns), n_clusters=27)
        pred = runs.obs["consensus_clusters"].to_numpy()
        res.update({**group_scores(y[test], pred), "matched_accuracy": matched_accuracy(y[test], pred)})
    if "proba" in outputs[0]:
        proba = sum(o["proba"] for o in outputs) / len(outputs)
        pred = proba.columns.to_numpy().astype(str)[proba.to_numpy().argmax(1)]
        res.update({"accuracy": float((pred == y[test]).mean()), **group_scores(y[test], pred)})
    for s, t in PAIRS:
        truth = StandardScaler().fit(raw[t][train_all]).transform(raw[t][test])
        est = np.mean([o["translations"][f"{s}->{t}"] for o in outputs], 0)
        res[f"{s}->{t}"] = {"r2": r2_vw(truth, est), "pearson": mean_pearson(truth, est)}
    return res


def _average(results: list[dict]) -> dict:
    """Average numeric entries (and nested dicts of them) over a list of result dicts with the same keys."""
    out = {}
    for key, value in results[0].items():
        if isinstance(value, dict):
            out[key] = _average([r[key] for r in results])
        elif isinstance(value, int | float) and key not in ("seed", "best_head"):
            out[key] = float(np.mean([r[key] for r in results]))
    return out


def _seed_sd(rows, key, metric) -> float:
    """Standard deviation over seeds of the fold-averaged metric (0 with one seed)."""
    n_seeds = len(rows[0][key + "_per_seed"])
    means = [np.mean([r[key + "_per_seed"][s][metric] for r in rows]) for s in range(n_seeds)]
    return float(np.std(means, ddof=1)) if n_seeds > 1 else 0.0


def _mean(rows, key, metric):
    return float(np.mean([r[key][metric] for r in rows]))


def _stem(args) -> str:
    stem = "patchseq" if args.n_splits == 5 else f"patchseq_{args.n_splits}fold"
    return f"{stem}_defaults" if getattr(args, "defaults", False) else stem


def write_report(rows: list[dict], args) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary: dict = {"epochs": args.epochs, "folds": len(rows), "n_splits": args.n_splits, "seeds": args.seeds,
                     "threads": args.threads,
                     "model_kwargs": dict(MODEL_KW), "mode_kwargs": MODE_KW, "train_kwargs": TRAIN_KW,
                     "original_unitednet": ORIGINAL}
    for key in [k for k in ("logreg_all", "logreg_rna", "logreg_all_cv") if k in rows[0]]:
        summary[key] = {m: _mean(rows, key, m) for m in ("accuracy", "ari")}
    for mode in ("supervised", "unsupervised"):
        key = f"unitednet_{mode}"
        metrics = ["ari", "nmi", "s_per_epoch", "seconds"] + (["accuracy"] if mode == "supervised"
                                                             else ["matched_accuracy"])
        summary[key] = {m: _mean(rows, key, m) for m in metrics}
        summary[key]["seed_sd"] = {m: _seed_sd(rows, key, m) for m in metrics}
        summary[key]["translation"] = {
            f"{s}->{t}": {q: float(np.mean([r[key][f"{s}->{t}"][q] for r in rows])) for q in ("r2", "pearson")}
            for s, t in PAIRS}
        if f"{key}_ensemble" in rows[0]:
            ens = f"{key}_ensemble"
            summary[ens] = {m: _mean(rows, ens, m) for m in rows[0][ens] if "->" not in m}
            summary[ens]["translation"] = {
                f"{s}->{t}": {q: float(np.mean([r[ens][f"{s}->{t}"][q] for r in rows])) for q in ("r2", "pearson")}
                for s, t in PAIRS}
    summary["kmeans_rna_pca"] = {m: _mean(rows, "kmeans_rna_pca", m) for m in ("ari", "nmi", "matched_accuracy")}
    summary["ridge"] = {f"{s}->{t}": {q: _mean(rows, f"ridge {s}->{t}", q) for q in ("r2", "pearson")}
                        for s, t in PAIRS}
    stem = _stem(args)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"summary": summary, "folds": rows}, indent=1))
    sup, uns = summary["unitednet_supervised"], summary["unitednet_unsupervised"]
    sd_s = {m: f" ± {v:.3f}" if args.seeds > 1 else "" for m, v in sup["seed_sd"].items()}
    sd_u = {m: f" ± {v:.3f}" if args.seeds > 1 else "" for m, v in uns["seed_sd"].items()}
    command = ("python benchmarks/patchseq.py" + (" --defaults" if getattr(args, "defaults", False)
                                                   else f" --epochs {args.epochs}")
               + f" --folds {len(rows)} --seeds {args.seeds}"
               + (f" --n-splits {args.n_splits}" if args.n_splits != 5 else ""))
    used = f"{len(rows)} of {args.n_splits} folds" if len(rows) < args.n_splits else f"{args.n_splits} folds"
    lines = [
        "# UnitedNet on Patch-seq (448 cells, RNA / ephys / morph, 27 MET types)",
        "",
        f"{args.n_splits}-fold stratified CV (random_state=0; {used}), "
        f"{args.epochs or 'the default number of'} epochs per mode, batch 64, "
        f"{args.threads} CPU thread(s); standardisation and checkpoint/head choice on training rows only. "
        f"Settings: {MODEL_KW}, per mode {MODE_KW}. "
        f"UnitedNet: {args.seeds} seed(s) per fold and mode; its numbers are means over folds and seeds"
        + (", with the standard deviation over seeds (of the fold-averaged metric) after the ±." if args.seeds > 1
           else "."),
        f"Command: `{command}`.",
        "",
        "## Group identification (mean over folds, test folds)",
        "",
        "| method | accuracy | ARI | NMI | s / epoch |",
        "|---|---|---|---|---|",
        f"| UnitedNet supervised | {sup['accuracy']:.3f}{sd_s['accuracy']} | {sup['ari']:.3f}{sd_s['ari']} | "
        f"{sup['nmi']:.3f} | {sup['s_per_epoch']:.2f} |",
        f"| UnitedNet unsupervised (matched acc.) | {uns['matched_accuracy']:.3f}{sd_u['matched_accuracy']} | "
        f"{uns['ari']:.3f}{sd_u['ari']} | {uns['nmi']:.3f} | {uns['s_per_epoch']:.2f} |",
    ]
    ens_s, ens_u = summary.get("unitednet_supervised_ensemble"), summary.get("unitednet_unsupervised_ensemble")
    if ens_s:
        lines.append(f"| UnitedNet supervised, ensemble of the {args.seeds} seeds (probabilities averaged) | "
                     f"{ens_s['accuracy']:.3f} | {ens_s['ari']:.3f} | {ens_s['nmi']:.3f} | |")
    if ens_u and "ari" in ens_u:
        lines.append(f"| UnitedNet unsupervised, consensus of the {args.seeds} seeds' clusters (matched acc.) | "
                     f"{ens_u['matched_accuracy']:.3f} | {ens_u['ari']:.3f} | {ens_u['nmi']:.3f} | |")
    lines += [
        f"| logistic regression, all modalities | {summary['logreg_all']['accuracy']:.3f} | "
        f"{summary['logreg_all']['ari']:.3f} | | |",
        f"| logistic regression, RNA only | {summary['logreg_rna']['accuracy']:.3f} | "
        f"{summary['logreg_rna']['ari']:.3f} | | |",
    ]
    if "logreg_all_cv" in summary:
        lines.append(f"| logistic regression, all modalities, C by inner CV (every fit's baseline) | "
                     f"{summary['logreg_all_cv']['accuracy']:.3f} | {summary['logreg_all_cv']['ari']:.3f} | | |")
    lines += [
        f"| k-means (27) on RNA PCA, training rows (matched acc.) | "
        f"{summary['kmeans_rna_pca']['matched_accuracy']:.3f} | {summary['kmeans_rna_pca']['ari']:.3f} | "
        f"{summary['kmeans_rna_pca']['nmi']:.3f} | |",
        "| original UnitedNet, supervised (3 folds, from the issue) | 0.904 | 0.742 | | 12.3 |",
        "| original UnitedNet, unsupervised (10-fold, from the issue; matched acc.) | 0.618 | 0.365 | 0.830 | 5.2 |",
        "",
        "## Cross-modal prediction, test folds: R^2 (variance-weighted) / mean per-feature Pearson",
        "",
        "| pair | UnitedNet supervised | UnitedNet unsupervised | "
        + (f"supervised, {args.seeds}-seed ensemble | unsupervised, {args.seeds}-seed ensemble | " if ens_s else "")
        + "ridge | original UnitedNet R^2 |",
        "|---|---|---|" + ("---|---|" if ens_s else "") + "---|---|",
    ]
    for s, t in PAIRS:
        p = f"{s}->{t}"
        cells = [sup["translation"][p], uns["translation"][p]]
        cells += [ens_s["translation"][p], ens_u["translation"][p]] if ens_s else []
        cells.append(summary["ridge"][p])
        lines.append(f"| {p} | " + " | ".join(f"{c['r2']:.3f} / {c['pearson']:.3f}" for c in cells)
                     + f" | {ORIGINAL['r2'][p]:.3f} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
