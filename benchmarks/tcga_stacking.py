"""Can a deep part learn what logistic regression misses on the TCGA cohorts? A stacking check.

Usage: python benchmarks/tcga_stacking.py [--cohorts brca lgg kipan] [--seeds 0] [--threads 1]

CrossAttOmics' default starts from a frozen logistic regression fitted on the training rows and trains the
deep part on top of its logits. On TCGA the regression fits its training rows almost perfectly, so the deep
part sees next to no residual and early stopping keeps the regression alone. This script asks whether that
is the reason the deep part adds nothing: a residual MLP (64 hidden units, dropout 0.3, AdamW, class-weighted,
early stopping on 15 % of the training rows, output layer starting at zero) is trained on top of

- ``stack_insample``: the regression's logits on its own training rows (what the default does), or
- ``stack_oof``: out-of-fold logits (5 inner folds, the same ``C``), so the residual is the regression's
  generalisation error, as in stacking.

Both add the full regression's logits on the test fold. Same outer folds as ``benchmarks/tcga.py``; ``C`` by
the inner cross-validation every fit's baseline uses. Writes results/tcga_stacking.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.preprocessing import StandardScaler
from tcga import markdown  # the same table format as benchmarks/tcga.py
from torch import nn

import multiomix as mx
from multiomix._baseline import logistic_baseline

RESULTS = Path(__file__).parent / "results"
LABELS = {"brca": "subtype", "lgg": "vital_status", "kipan": "subtype"}


def two_logits(scores: np.ndarray) -> np.ndarray:
    """A binary decision function as two logits (half each way); several classes unchanged."""
    return scores if scores.ndim == 2 else np.c_[-scores / 2, scores / 2]


def regression(x, y, c: float) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=2000, class_weight="balanced").fit(x, y)


def residual_mlp(train, val, n_classes: int, seed: int, *, hidden: int = 64, patience: int = 20) -> nn.Module:
    """Train ``offset + mlp(x)`` with the offset frozen; keep the epoch of lowest validation loss."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(train[0].shape[1], hidden), nn.GELU(), nn.Dropout(0.3), nn.Linear(hidden, n_classes))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    counts = np.bincount(train[2], minlength=n_classes)
    loss = nn.CrossEntropyLoss(weight=torch.tensor(len(train[2]) / (n_classes * np.maximum(counts, 1)),
                                                   dtype=torch.float32))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
    x, o, y = (torch.as_tensor(a) for a in train)
    xv, ov, yv = (torch.as_tensor(a) for a in val)

    def val_loss() -> float:
        net.eval()
        with torch.no_grad():
            return loss(ov + net(xv), yv).item()

    best, state, waited = val_loss(), {k: v.clone() for k, v in net.state_dict().items()}, 0
    generator = torch.Generator().manual_seed(seed)
    for _ in range(200):
        net.train()
        for idx in torch.randperm(len(y), generator=generator).split(64):
            opt.zero_grad()
            loss(o[idx] + net(x[idx]), y[idx]).backward()
            opt.step()
        current = val_loss()
        if current < best - 1e-4:
            best, state, waited = current, {k: v.clone() for k, v in net.state_dict().items()}, 0
        elif (waited := waited + 1) >= patience:
            break
    net.load_state_dict(state)
    return net.eval()


def cohort_rows(cohort: str, seed: int) -> list[dict]:
    mdata = mx.datasets.tcga(cohort)
    x = np.hstack([np.asarray(a.X) for a in mdata.mod.values()]).astype(np.float64)
    classes, y = np.unique(mdata.obs[LABELS[cohort]].astype(str).to_numpy(), return_inverse=True)
    rows = []
    for fold, (tr, te) in enumerate(StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y)):
        scaler = StandardScaler().fit(x[tr])
        xtr, xte = scaler.transform(x[tr]), scaler.transform(x[te])
        c = logistic_baseline(xtr, y[tr], random_state=seed).best_params_["logisticregression__C"]
        full = regression(xtr, y[tr], c)
        test_offset = two_logits(full.decision_function(xte))
        oof = np.zeros((len(tr), len(classes)))
        for inner_tr, inner_va in StratifiedKFold(5, shuffle=True, random_state=seed + 1).split(xtr, y[tr]):
            oof[inner_va] = two_logits(regression(xtr[inner_tr], y[tr][inner_tr], c).decision_function(xtr[inner_va]))
        offsets = {"stack_insample": two_logits(full.decision_function(xtr)), "stack_oof": oof}
        fit_rows, val_rows = train_test_split(np.arange(len(tr)), test_size=0.15, stratify=y[tr], random_state=seed)
        predictions = {"logistic_regression": test_offset.argmax(1)}
        for name, offset in offsets.items():
            part = [(xtr[r].astype(np.float32), offset[r].astype(np.float32), y[tr][r]) for r in (fit_rows, val_rows)]
            net = residual_mlp(part[0], part[1], len(classes), seed)
            with torch.no_grad():
                predictions[name] = (test_offset + net(torch.as_tensor(xte, dtype=torch.float32)).numpy()).argmax(1)
        for method, prediction in predictions.items():
            rows.append({"cohort": cohort, "seed": seed, "fold": fold, "method": method,
                         "accuracy": accuracy_score(y[te], prediction),
                         "macro_f1": f1_score(y[te], prediction, average="macro")})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def write_report(table: pd.DataFrame, command: str) -> str:
    means = table.groupby(["method", "cohort"])["macro_f1"].mean().unstack()
    means["mean_over_cohorts"] = means.mean(1)
    accuracy = table.groupby(["method", "cohort"])["accuracy"].mean().unstack()
    text = (f"# TCGA: a deep residual on top of logistic regression (stacking check)\n\n{__doc__.split(chr(10), 2)[2]}"
            f"\nCommand: `{command}`\n\n## Macro-F1 (mean over folds)\n\n{markdown(means.round(4))}\n\n"
            f"## Accuracy (mean over folds)\n\n{markdown(accuracy.round(4))}\n")
    (RESULTS / "tcga_stacking.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cohorts", nargs="+", default=["brca", "lgg", "kipan"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report", action="store_true", help="rebuild the page from the JSON of an earlier run")
    args = parser.parse_args()
    command = (f"python benchmarks/tcga_stacking.py --cohorts {' '.join(args.cohorts)} --seeds "
               f"{' '.join(map(str, args.seeds))} --threads {args.threads}")
    if args.report:
        print(write_report(pd.read_json(RESULTS / "tcga_stacking.json"), command))
        return
    torch.set_num_threads(args.threads)
    mx.settings.verbosity = 1
    rows = [row for cohort in args.cohorts for seed in args.seeds for row in cohort_rows(cohort, seed)]
    table = pd.DataFrame(rows)
    (RESULTS / "tcga_stacking.json").write_text(table.to_json(orient="records", indent=1))
    print(write_report(table, command))


if __name__ == "__main__":
    main()
