"""How much does the evaluation protocol move UnitedNet's supervised Patch-seq accuracy?

The original UnitedNet notebook standardises every split with its own statistics (the test fold with the test
fold's mean and variance) and keeps the checkpoint with the lowest loss on the *test* fold. Both leak test
information. This script fits the same model (settings of ``benchmarks/patchseq.py``) on the same 10-fold
stratified split under three protocols, same seeds:

- ``honest``: training-row statistics; checkpoint and best head chosen on 10 % of the training rows (as in
  ``patchseq.py``; reproduces its 10-fold numbers);
- ``test_checkpoint``: training-row statistics; all training rows train, and the test fold chooses checkpoint
  and best head;
- ``original``: as ``test_checkpoint``, and every split standardised with its own statistics (the original's
  protocol).

Only the first of these is a valid estimate of accuracy on new cells; the others say how much of a published
number can come from the protocol. Logistic regression (all modalities, training-row statistics) is scored on
the same folds. Per-fold numbers are kept, so subsets of folds (e.g. the first 3, the size of the original's
supervised run) can be compared.

Run: ``python benchmarks/patchseq_protocol.py [--epochs 40] [--seeds 3] [--folds 10]``; writes
``benchmarks/results/patchseq_protocol.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from patchseq import DATA, MODEL_KW, MODS, RESULTS, TRAIN_KW
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.preprocessing import StandardScaler

import multiomix as mx
from multiomix.models import UnitedNet

PROTOCOLS = ("honest", "test_checkpoint", "original")


def per_split_standardised(mdata, raw: dict[str, np.ndarray], train_all: np.ndarray, test: np.ndarray):
    """A copy of ``mdata`` whose modalities are standardised per split (training rows and test rows each with
    their own mean and variance), as the original notebook does."""
    work = mdata.copy()
    for m in MODS:
        x = raw[m].copy()
        for rows in (train_all, test):
            x[rows] = StandardScaler().fit_transform(raw[m][rows])
        work.mod[m].X = x.astype(np.float32)
    return work


def fit_score(mdata, y, train, val, test, epochs: int, seed: int) -> dict:
    """Fit one supervised UnitedNet (checkpoint and head on ``val``) and score it on ``test``."""
    UnitedNet.setup_mudata(mdata, label_key="cell_type_TEM")
    model = UnitedNet(mdata, mode="supervised", random_state=seed, **MODEL_KW)
    t0 = time.perf_counter()
    model.train(epochs, train_indices=np.sort(train), validation_indices=np.sort(val), accelerator="cpu",
                progress_bar=False, **TRAIN_KW)
    pred = model.predict(indices=test).astype(str).to_numpy()
    return {"seed": seed, "accuracy": float((pred == y[test]).mean()), "seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folds", type=int, default=10, help="folds of the 10-fold split to run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report", action="store_true", help="rebuild the page from the JSON of an earlier run")
    args = parser.parse_args()
    if args.report:
        saved = json.loads((RESULTS / "patchseq_protocol.json").read_text())
        write_report(saved["folds"], argparse.Namespace(**{**saved["args"], "report": False}))
        return
    torch.set_num_threads(args.threads)
    mdata = mx.datasets.patchseq(data_dir=DATA if DATA.exists() else None)
    y = mdata.obs["cell_type_TEM"].astype(str).to_numpy()
    raw = {m: np.asarray(mdata.mod[m].X, dtype=np.float64) for m in MODS}
    folds = list(StratifiedKFold(10, shuffle=True, random_state=0).split(np.zeros(len(y)), y))[: args.folds]
    rows = []
    for k, (train_all, test) in enumerate(folds):
        train, val = train_test_split(train_all, test_size=0.1, random_state=0)
        scaled = {m: StandardScaler().fit(raw[m][train_all]).transform(raw[m]) for m in MODS}
        feats = np.hstack([scaled[m] for m in MODS])
        logreg = LogisticRegression(max_iter=3000).fit(feats[train_all], y[train_all])
        row: dict = {"fold": k, "logreg_all": float((logreg.predict(feats[test]) == y[test]).mean())}
        setups = {"honest": (mdata, train, val), "test_checkpoint": (mdata, train_all, test),
                  "original": (per_split_standardised(mdata, raw, train_all, test), train_all, test)}
        for protocol, (data, fit_rows, choice_rows) in setups.items():
            row[protocol] = [fit_score(data, y, fit_rows, choice_rows, test, args.epochs, k + 100 * seed)
                             for seed in range(args.seeds)]
        rows.append(row)
        print(json.dumps({"fold": k, "logreg_all": round(row["logreg_all"], 3),
                          **{p: [round(r["accuracy"], 3) for r in row[p]] for p in PROTOCOLS}}), flush=True)
    write_report(rows, args)


def _accuracy(rows: list[dict], protocol: str) -> tuple[float, float]:
    """Mean over folds and seeds, and the standard deviation over seeds of the fold-averaged accuracy."""
    per_seed = np.array([[r["accuracy"] for r in row[protocol]] for row in rows]).mean(0)
    return float(per_seed.mean()), float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0


def write_report(rows: list[dict], args) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "patchseq_protocol.json").write_text(json.dumps({"args": vars(args), "folds": rows}, indent=1))
    subsets = {f"all {len(rows)} folds": rows}
    if len(rows) > 3:
        subsets["first 3 folds"] = rows[:3]
    lines = ["# Supervised Patch-seq accuracy under three evaluation protocols", "",
             f"10-fold stratified CV (random_state=0), {len(rows)} folds, {args.seeds} seed(s) per fold, "
             f"{args.epochs} epochs, {args.threads} CPU thread(s). Command: `python benchmarks/patchseq_protocol.py "
             f"--epochs {args.epochs} --seeds {args.seeds} --folds {args.folds}`. Only `honest` estimates accuracy "
             "on new cells. Mean accuracy over folds and seeds ± the standard deviation over seeds of the "
             "fold-averaged accuracy.", "",
             "| folds | honest | all training rows train, test fold chooses checkpoint and head | + per-split "
             "standardisation (the original's protocol) | logistic regression (honest) |", "|---|---|---|---|---|"]
    for name, subset in subsets.items():
        cells = [f"{m:.3f} ± {sd:.3f}" for m, sd in (_accuracy(subset, p) for p in PROTOCOLS)]
        lines.append(f"| {name} | {' | '.join(cells)} | {np.mean([r['logreg_all'] for r in subset]):.3f} |")
    lines += ["", "Per fold (mean over seeds; honest / test checkpoint / original's protocol): " + "; ".join(
        f"{r['fold']}: " + " / ".join(f"{np.mean([s['accuracy'] for s in r[p]]):.3f}" for p in PROTOCOLS)
        + f" (LR {r['logreg_all']:.3f})" for r in rows) + "."]
    (RESULTS / "patchseq_protocol.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
