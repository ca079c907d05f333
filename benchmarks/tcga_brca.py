"""CrossAttOmics on TCGA BRCA PAM50 subtypes against scikit-learn peers (5-fold stratified CV x seeds).

Usage: python benchmarks/tcga_brca.py [--seeds 0 1 2] [--variants default ensemble3] [--threads 1]

Every fold uses the same split for every method. The sklearn peers see features standardised with the
training fold's statistics; CrossAttOmics standardises internally with the training rows' statistics and
early-stops on 15 % of the training rows (never on the test fold). Writes results/tcga_brca.{json,md}.
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
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

import multiomix as mx

warnings.filterwarnings("ignore")
logging.getLogger("multiomix").setLevel(logging.WARNING)
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

VARIANTS = {
    "default": {},
    "unweighted": {"class_weighting": False},
    "ensemble5": {"n_models": 5},
    "eps1e-8": {"plan_kwargs": {"eps": 1e-8}},
}


def sklearn_peers(x_train, y_train, x_test, rna_columns, seed):
    scaler = StandardScaler().fit(x_train)
    xs_train, xs_test = scaler.transform(x_train), scaler.transform(x_test)
    peers = {
        "logistic_regression": LogisticRegression(max_iter=5000, C=0.1),
        "logistic_regression_rna_only": LogisticRegression(max_iter=5000, C=0.1),
        "random_forest": RandomForestClassifier(n_estimators=500, random_state=seed, n_jobs=1),
        "mlp_256_64": MLPClassifier((256, 64), early_stopping=True, max_iter=500, random_state=seed),
    }
    out = {}
    for name, clf in peers.items():
        cols = rna_columns if name.endswith("rna_only") else slice(None)
        start = time.perf_counter()
        clf.fit(xs_train[:, cols], y_train)
        out[name] = (clf.predict(xs_test[:, cols]), time.perf_counter() - start, None)
    return out


def crossattomics(mdata, train_rows, test_rows, seed, variant):
    kwargs = dict(VARIANTS[variant])
    n_models = kwargs.pop("n_models", 1)
    split = np.full(mdata.n_obs, "train", dtype=object)
    split[test_rows] = "test"
    probas, seconds, epochs = [], 0.0, 0
    for k in range(n_models):
        data = mdata.copy()
        data.obs["split"] = pd.Categorical(split, categories=["train", "validation", "test"])
        start = time.perf_counter()
        mx.tl.fit_crossattomics(data, label_key="subtype", random_state=seed * 100 + k, enable_progress_bar=False,
                                **kwargs)
        seconds += time.perf_counter() - start
        epochs += len(data.uns["crossattomics"]["history"])
        probas.append(data.obsm["crossattomics_proba"][test_rows])
    classes = np.asarray(mdata.obs["subtype"].cat.categories)
    prediction = classes[np.mean(probas, 0).argmax(1)]
    return prediction, seconds, seconds / epochs


def markdown(frame: pd.DataFrame) -> str:
    """A DataFrame as a markdown table (floats with 3 decimals)."""
    cells = [[frame.index.name or ""] + list(frame.columns)]
    for index, row in frame.iterrows():
        cells.append([str(index)] + [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "|" + "---|" * len(cells[0]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["default", "unweighted", "ensemble5"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "tcga_brca"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mdata = mx.datasets.tcga_brca()
    x = np.hstack([mdata.mod[m].X for m in ("rna", "methylation", "mirna")])
    rna_columns = np.arange(mdata.mod["rna"].n_vars)
    y = mdata.obs["subtype"].astype(str).to_numpy()
    rows = []
    for seed in args.seeds:
        folds = StratifiedKFold(args.folds, shuffle=True, random_state=seed).split(x, y)
        for fold, (train_rows, test_rows) in enumerate(folds):
            results = sklearn_peers(x[train_rows], y[train_rows], x[test_rows], rna_columns, seed)
            for variant in args.variants:
                results[f"crossattomics_{variant}"] = crossattomics(mdata, train_rows, test_rows, seed, variant)
            for method, (prediction, seconds, epoch_seconds) in results.items():
                rows.append({
                    "seed": seed, "fold": fold, "method": method,
                    "accuracy": accuracy_score(y[test_rows], prediction),
                    "macro_f1": f1_score(y[test_rows], prediction, average="macro"),
                    "fit_seconds": seconds, "seconds_per_epoch": epoch_seconds,
                })
                print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    summary = table.groupby("method").agg(
        accuracy=("accuracy", "mean"), accuracy_sd=("accuracy", "std"), macro_f1=("macro_f1", "mean"),
        macro_f1_sd=("macro_f1", "std"), fit_seconds=("fit_seconds", "median"),
        seconds_per_epoch=("seconds_per_epoch", "median"),
    ).sort_values("macro_f1", ascending=False)
    reference = table[table.method == "logistic_regression"].set_index(["seed", "fold"])["macro_f1"]
    wins = {
        m: int((table[table.method == m].set_index(["seed", "fold"])["macro_f1"] > reference).sum())
        for m in summary.index
    }
    summary["folds_better_than_logreg"] = pd.Series(wins)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    table.to_json(output.with_suffix(".json"), orient="records", indent=1)
    header = (
        f"# TCGA BRCA PAM50 (769 patients; rna 200, methylation 400, mirna 100)\n\n"
        f"{args.folds}-fold stratified CV x seeds {args.seeds}; torch threads {args.threads}; "
        f"command: `python benchmarks/tcga_brca.py --seeds {' '.join(map(str, args.seeds))} "
        f"--variants {' '.join(args.variants)} --threads {args.threads}`\n\n"
    )
    output.with_suffix(".md").write_text(header + markdown(summary) + "\n")
    print(summary.to_string())


if __name__ == "__main__":
    main()
