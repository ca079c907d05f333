"""CrossAttOmics at its defaults against scikit-learn peers on the TCGA cohorts (5-fold stratified CV x seeds).

Usage: python benchmarks/tcga.py [--cohorts brca lgg kipan] [--seeds 0 1 2] [--variants default] [--threads 1]

Every method sees the same folds. Peers: standardised logistic regression with C chosen by inner 5-fold CV and
balanced class weights (what every fit stores as its baseline), a random forest and an MLP on standardised
features. CrossAttOmics standardises internally with the training rows and early-stops on 15 % of them (never on
the test fold). Writes results/tcga.{json,md}; ``--report`` rebuilds the page from the JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import mudata as md
import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

import multiomix as mx
from multiomix._baseline import logistic_baseline

md.set_options(pull_on_update=False)
mx.settings.verbosity = 1
mx.settings.progress_bar = False
RESULTS = Path(__file__).parent / "results"
LABELS = {"brca": "subtype", "lgg": "vital_status", "kipan": "subtype"}
VARIANTS: dict[str, dict] = {
    "default": {},
    "no_linear": {"linear_path": None},  # the original architecture
    "trained_linear": {"linear_path": "trained"},
    "ensemble3": {"n_models": 3},  # a seed ensemble of three default models (probabilities averaged)
    # AttOmics groups = co-variation modules of mx.pp.group_features, computed on the fold's training rows only
    "modules": {"groups": "feature_group"},
    "modules_no_linear": {"groups": "feature_group", "linear_path": None},
}


def peers(x_train, y_train, x_test, seed: int) -> dict[str, tuple[np.ndarray, float]]:
    out = {}
    start = time.perf_counter()
    out["logistic_regression"] = (logistic_baseline(x_train, y_train, random_state=seed).predict(x_test),
                                  time.perf_counter() - start)
    scaler = StandardScaler().fit(x_train)
    for name, clf in {
        "random_forest": RandomForestClassifier(n_estimators=500, random_state=seed, n_jobs=1),
        "mlp_256_64": MLPClassifier((256, 64), early_stopping=True, max_iter=500, random_state=seed),
    }.items():
        start = time.perf_counter()
        clf.fit(scaler.transform(x_train), y_train)
        out[name] = (clf.predict(scaler.transform(x_test)), time.perf_counter() - start)
    return out


def crossattomics(mdata, label_key, train_rows, test_rows, seed, variant) -> tuple[np.ndarray, float]:
    data = mdata.copy()
    split = np.full(mdata.n_obs, "train", dtype=object)
    split[test_rows] = "test"
    data.obs["split"] = pd.Categorical(split, categories=["train", "validation", "test"])
    start = time.perf_counter()
    if VARIANTS[variant].get("groups") == "feature_group":  # label-free, and the test fold is not read
        train = data[np.setdiff1d(np.arange(mdata.n_obs), test_rows)].copy()
        mx.pp.group_features(train, random_state=seed)
        for m in data.mod:
            data.mod[m].var["feature_group"] = train.mod[m].var["feature_group"]
    mx.tl.fit_crossattomics(data, label_key=label_key, random_state=seed, baseline=False, **VARIANTS[variant])
    return data.obs["crossattomics_prediction"].astype(str).to_numpy()[test_rows], time.perf_counter() - start


def markdown(frame: pd.DataFrame) -> str:
    cells = [[frame.index.name or ""] + list(frame.columns)]
    for index, row in frame.iterrows():
        cells.append([str(index)] + [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "|" + "---|" * len(cells[0]))
    return "\n".join(lines)


def report(table: pd.DataFrame, command: str, output: Path) -> str:
    parts = [f"# TCGA cohorts: CrossAttOmics at its defaults vs peers\n\nCommand: `{command}`\n"]
    summary = table.groupby(["cohort", "method"]).agg(
        accuracy=("accuracy", "mean"), macro_f1=("macro_f1", "mean"), macro_f1_sd=("macro_f1", "std"),
        fit_seconds=("fit_seconds", "median"), folds=("macro_f1", "size"))
    for cohort, frame in summary.groupby(level=0):
        frame = frame.droplevel(0).sort_values("macro_f1", ascending=False)
        parts.append(f"## {cohort}\n\n{markdown(frame)}\n")
    means = summary["macro_f1"].unstack(0)
    means["mean_over_cohorts"] = means.mean(1)
    parts.append("## Macro-F1, mean over cohorts\n\n" + markdown(means.sort_values("mean_over_cohorts",
                                                                                     ascending=False)) + "\n")
    text = "\n".join(parts)
    output.with_suffix(".md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cohorts", nargs="+", default=["brca", "lgg", "kipan"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["default"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(RESULTS / "tcga"))
    parser.add_argument("--report", action="store_true", help="rebuild the page from the JSON of an earlier run")
    args = parser.parse_args()
    output = Path(args.output)
    command = ("python benchmarks/tcga.py --cohorts " + " ".join(args.cohorts) + " --seeds "
               + " ".join(map(str, args.seeds)) + " --variants " + " ".join(args.variants)
               + f" --threads {args.threads}"
               + (f" --output benchmarks/results/{output.name}" if output.name != "tcga" else ""))
    if args.report:
        print(report(pd.read_json(output.with_suffix(".json")), command, output))
        return
    torch.set_num_threads(args.threads)
    logging.getLogger("multiomix").setLevel(logging.WARNING)
    rows = []
    for cohort in args.cohorts:
        mdata = mx.datasets.tcga(cohort)
        label_key = LABELS[cohort]
        x = np.hstack([np.asarray(a.X) for a in mdata.mod.values()])
        y = mdata.obs[label_key].astype(str).to_numpy()
        for seed in args.seeds:
            folds = StratifiedKFold(args.folds, shuffle=True, random_state=seed).split(x, y)
            for fold, (train_rows, test_rows) in enumerate(folds):
                results = peers(x[train_rows], y[train_rows], x[test_rows], seed)
                for variant in args.variants:
                    results[f"crossattomics_{variant}"] = crossattomics(mdata, label_key, train_rows, test_rows,
                                                                        seed, variant)
                for method, (prediction, seconds) in results.items():
                    rows.append({"cohort": cohort, "seed": seed, "fold": fold, "method": method,
                                 "accuracy": accuracy_score(y[test_rows], prediction),
                                 "macro_f1": f1_score(y[test_rows], prediction, average="macro"),
                                 "fit_seconds": seconds, "threads": args.threads})
                    print(json.dumps(rows[-1]), flush=True)
                pd.DataFrame(rows).to_json(output.with_suffix(".json"), orient="records", indent=1)
    print(report(pd.DataFrame(rows), command, output))


if __name__ == "__main__":
    main()
