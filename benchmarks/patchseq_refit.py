"""Patch-seq MET types: where one UnitedNet at its defaults stands against logistic regression, row for row.

Same folds as ``benchmarks/patchseq.py --defaults`` (``StratifiedKFold(5, shuffle=True, random_state=0)``, 10 % of
each fold's training rows, ``train_test_split(..., random_state=0)``, choose UnitedNet's epoch and head). Per fold:

- logistic regression (C = 1, all modalities, standardised with the fold's training statistics) fitted on every
  training row (the peer of the main report), on the 90 % rows UnitedNet trains on, and on 85 % of them;
- UnitedNet at its defaults on the 90 % rows (``random_state = fold + 100 * seed``, as the main report);
- "refit": a second UnitedNet with the same seed trained on every training row, without validation, for the
  number of epochs the first one chose, predicting with the head the first one chose;
- the mean of the two UnitedNets' probabilities (two trainings, as a 2-seed ensemble).

Run: ``python benchmarks/patchseq_refit.py [--seeds 2] [--threads 1]``; writes
``benchmarks/results/patchseq_refit.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.preprocessing import StandardScaler

import multiomix as mx
from multiomix.models import UnitedNet

warnings.filterwarnings("ignore")
for name in ("lightning", "lightning.pytorch", "multiomix", "scvi"):
    logging.getLogger(name).setLevel(logging.ERROR)

RESULTS = Path(__file__).parent / "results"
MODS = ("rna", "ephys", "morph")


def accuracy(proba, truth: np.ndarray) -> float:
    """Accuracy of the most probable class (``proba``: a DataFrame with class columns)."""
    return float((proba.columns.to_numpy()[np.asarray(proba).argmax(1)] == truth).mean())


def logistic_rows(raw: dict, y: np.ndarray, train_all: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Logistic regression (C = 1) trained on all, 90 % and 85 % of the training rows."""
    scaled = np.hstack([StandardScaler().fit(raw[m][train_all]).transform(raw[m]) for m in MODS])
    subsets = {"all": train_all,
               "90": train_test_split(train_all, test_size=0.1, random_state=0)[0],
               "85": train_test_split(train_all, test_size=0.15, random_state=0)[0]}
    out = {}
    for name, rows in subsets.items():
        clf = LogisticRegression(max_iter=3000).fit(scaled[rows], y[rows])
        out[f"logistic_{name}"] = float((clf.predict(scaled[test]) == y[test]).mean())
    return out


def unitednet_rows(mdata, y, train_all, test, seed: int) -> dict:
    """UnitedNet on 90 % of the training rows, its refit on all of them, and their mean."""
    train, val = train_test_split(train_all, test_size=0.1, random_state=0)
    UnitedNet.setup_mudata(mdata, label_key="cell_type_TEM")
    start = time.perf_counter()
    first = UnitedNet(mdata, mode="supervised", n_clusters=27, random_state=seed)
    first.train(train_indices=np.sort(train), validation_indices=np.sort(val), accelerator="cpu", progress_bar=False)
    seconds_first = time.perf_counter() - start
    epochs = int(np.nanargmin(np.asarray(first.history["validation_loss"]).ravel())) + 1
    start = time.perf_counter()
    refit = UnitedNet(mdata, mode="supervised", n_clusters=27, random_state=seed)
    refit.train(epochs, train_indices=np.sort(train_all), validation_indices=[], early_stopping=False,
                accelerator="cpu", progress_bar=False)
    refit.module.best_head.fill_(first.best_head)
    seconds_refit = time.perf_counter() - start
    p_first, p_refit = first.predict_proba(indices=test), refit.predict_proba(indices=test)
    return {"seed": seed, "epochs": epochs, "head": first.best_head,
            "unitednet": accuracy(p_first, y[test]), "refit": accuracy(p_refit, y[test]),
            "mean_of_both": accuracy((p_first + p_refit) / 2, y[test]),
            "seconds_first": seconds_first, "seconds_refit": seconds_refit}


def report(rows: list[dict], args) -> str:
    def mean(key):
        return float(np.mean([r[key] for r in rows]))

    lines = [
        "# Patch-seq MET types: UnitedNet at its defaults and logistic regression, row for row", "",
        f"Command: `python benchmarks/patchseq_refit.py --seeds {args.seeds} --threads {args.threads}`. "
        f"5 folds x {args.seeds} seeds (UnitedNet); test-fold accuracy, mean over folds (and seeds).", "",
        "| method | training rows | accuracy |", "|---|---|---|",
        f"| logistic regression, C = 1 | all | {mean('logistic_all'):.3f} |",
        f"| logistic regression, C = 1 | the 90 % UnitedNet trains on | {mean('logistic_90'):.3f} |",
        f"| logistic regression, C = 1 | 85 % | {mean('logistic_85'):.3f} |",
        f"| UnitedNet, defaults | 90 % (10 % choose epoch and head) | {mean('unitednet'):.3f} |",
        f"| UnitedNet refit | all, for the chosen epochs, with the chosen head | {mean('refit'):.3f} |",
        f"| mean of the two UnitedNets' probabilities | both | {mean('mean_of_both'):.3f} |", "",
        f"Seconds per fit (median): first {np.median([r['seconds_first'] for r in rows]):.1f}, refit "
        f"{np.median([r['seconds_refit'] for r in rows]):.1f} ({args.threads} torch thread(s)).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(RESULTS / "patchseq_refit"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mdata = mx.datasets.patchseq()
    y = mdata.obs["cell_type_TEM"].astype(str).to_numpy()
    raw = {m: np.asarray(mdata.mod[m].X, dtype=np.float64) for m in MODS}
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y))
    rows = []
    for k, (train_all, test) in enumerate(folds):
        peers = logistic_rows(raw, y, train_all, test)
        for s in range(args.seeds):
            rows.append({"fold": k, **peers, **unitednet_rows(mdata, y, train_all, test, k + 100 * s)})
            print(json.dumps(rows[-1]), flush=True)
    output = Path(args.output)
    stored_args = {k: v for k, v in vars(args).items() if k != "output"}  # no path of the machine that ran it
    output.with_suffix(".json").write_text(json.dumps({"args": stored_args, "rows": rows}, indent=1))
    text = report(rows, args)
    output.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
