"""Which score should flag 'unknown' cells: the confidence or the match score? Decided on reference cells only.

For each BMMC reference (CITE-seq and Multiome, donors s1d1 and s1d2) this script hides one cell type at a time
from a labelled reference and asks :func:`multiomix.tl.transfer_labels` to flag it, without any query data:

1. the reference donor's cells are split 50/50 (stratified, ``--seed``) into a training half and a pseudo-query;
2. the cells of type ``c`` are removed from the training half, so the model never sees type ``c``;
3. the pseudo-query's type-``c`` cells are the novel cells; the novel AUROC of ``1 - confidence`` and of
   ``1 - match score`` (the mean of the confidence and the share of the 15 nearest reference cells carrying the
   transferred label) are recorded, for ``model="logistic"`` (the single-modality default) and UnitedNet (the
   default with two modalities, the architecture of ``benchmarks/transfer.py``).

Types hidden: the ``--types`` most frequent of each reference (at least 10 cells). The other donor (the query of
``benchmarks/transfer.py``) is never read.

Run: ``python benchmarks/transfer_unknown_score.py``; writes ``benchmarks/results/transfer_unknown_score.{md,json}``.
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
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from transfer import DATA, LABEL_KEY, MODEL_KW

import multiomix as mx

warnings.filterwarnings("ignore")
for name in ("lightning", "lightning.pytorch", "multiomix", "scvi"):
    logging.getLogger(name).setLevel(logging.ERROR)

RESULTS = Path(__file__).parent / "results"


def hide_and_flag(reference, hidden: str, *, model: str, seed: int, epochs: int, adapt_epochs: int) -> dict:
    """Transfer from the training half without ``hidden`` to the pseudo-query half; AUROCs of both scores."""
    labels = reference.obs[LABEL_KEY].astype(str).to_numpy()
    counts = dict(zip(*np.unique(labels, return_counts=True)))
    strata = np.where([counts[t] >= 2 for t in labels], labels, "rare")
    if (strata == "rare").sum() == 1:  # a lone singleton joins the largest type's stratum
        strata[strata == "rare"] = max(counts, key=counts.get)
    train, pseudo = train_test_split(np.arange(reference.n_obs), test_size=0.5, stratify=strata, random_state=seed)
    train = train[labels[train] != hidden]
    ref, query = reference[np.sort(train)].copy(), reference[np.sort(pseudo)].copy()
    truth = query.obs[LABEL_KEY].astype(str).to_numpy()
    del query.obs[LABEL_KEY]
    ref.obs[LABEL_KEY] = ref.obs[LABEL_KEY].astype(str).astype("category")
    kw = ({"max_epochs": epochs, "adapt_epochs": adapt_epochs, "lr": 1e-3, **MODEL_KW} if model == "unitednet"
          else {})
    start = time.perf_counter()
    mx.tl.transfer_labels(ref, query, label_key=LABEL_KEY, model=model, random_state=seed, accelerator="cpu",
                          progress_bar=False, key_added="t", **kw)
    novel = truth == hidden
    scored = novel | np.isin(truth, ref.obs[LABEL_KEY].unique())  # not other types the training half lacks
    novel = novel[scored]
    conf = query.obs["t_confidence"].to_numpy()[scored]
    match = query.obs["t_match_score"].to_numpy()[scored]
    return {"hidden": hidden, "model": model, "n_novel": int(novel.sum()), "n_pseudo_query": int(len(novel)),
            "auroc_confidence": float(roc_auc_score(novel, 1 - conf)),
            "auroc_match": float(roc_auc_score(novel, 1 - match)),
            "accuracy_known": float(np.mean(query.obs["t"].astype(str).to_numpy()[scored][~novel]
                                            == truth[scored][~novel])),
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", action="store_true", help="rewrite the report from the JSON")
    parser.add_argument("--types", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--adapt-epochs", type=int, default=30)
    parser.add_argument("--models", nargs="+", default=["logistic", "unitednet"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.report:
        saved = json.loads((RESULTS / "transfer_unknown_score.json").read_text())
        write(saved["rows"], argparse.Namespace(**saved["args"]))
        return
    data_dir = DATA if DATA.exists() else None
    data = {"cite": mx.datasets.bmmc_cite(data_dir=data_dir), "multiome": mx.datasets.bmmc_multiome(data_dir=data_dir)}
    rows = []
    for name, mdata in data.items():
        for donor in ("s1d1", "s1d2"):
            reference = mdata[mdata.obs["batch"].astype(str).to_numpy() == donor].copy()
            counts = reference.obs[LABEL_KEY].astype(str).value_counts()
            for hidden in [t for t, n in counts.items() if n >= 10][: args.types]:
                for model in args.models:
                    torch.set_num_threads(args.threads)
                    row = {"data": name, "reference": donor, **hide_and_flag(
                        reference, hidden, model=model, seed=args.seed, epochs=args.epochs,
                        adapt_epochs=args.adapt_epochs)}
                    rows.append(row)
                    print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    write(rows, args)


def write(rows: list[dict], args) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transfer_unknown_score.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    lines = ["# Confidence or match score for 'unknown' cells: hidden reference types, reference cells only", "",
             f"Command: `python benchmarks/transfer_unknown_score.py --types {args.types} --seed {args.seed} "
             f"--epochs {args.epochs} --adapt-epochs {args.adapt_epochs} --models {' '.join(args.models)}` "
             f"({args.threads} torch thread). Each row: one reference donor, one type hidden from the training "
             "half, novel AUROC on the other half (the pseudo-query). The other donor is never read.", "",
             "| data | reference | hidden type | model | novel / pseudo-query cells | AUROC 1 - confidence | "
             "AUROC 1 - match score |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['reference']} | {r['hidden']} | {r['model']} | {r['n_novel']} / "
                     f"{r['n_pseudo_query']} | {r['auroc_confidence']:.3f} | {r['auroc_match']:.3f} |")
    lines += ["", "| model | runs | mean AUROC 1 - confidence | mean AUROC 1 - match score | match better in |",
              "|---|---|---|---|---|"]
    for model in args.models + ["all"]:
        sel = [r for r in rows if model in ("all", r["model"])]
        if not sel:
            continue
        conf = np.array([r["auroc_confidence"] for r in sel])
        match = np.array([r["auroc_match"] for r in sel])
        lines.append(f"| {model} | {len(sel)} | {conf.mean():.3f} | {match.mean():.3f} | "
                     f"{int((match > conf).sum())} of {len(sel)} |")
    diff = np.array([r["auroc_match"] - r["auroc_confidence"] for r in rows])
    draws = np.random.default_rng(0).choice(diff, (10000, len(diff))).mean(1)
    low, high = np.percentile(draws, [2.5, 97.5])
    lines += ["", f"Match score minus confidence over all runs: mean {diff.mean():+.3f} (bootstrap 95 % interval over "
              f"runs [{low:+.3f}, {high:+.3f}]), median {np.median(diff):+.3f}, from {diff.min():+.3f} to "
              f"{diff.max():+.3f}."]
    (RESULTS / "transfer_unknown_score.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
