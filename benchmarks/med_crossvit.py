"""Med-CrossViT on SYNTHETIC tile bags + expression with a planted signal, against per-modality peers.

There is no public whole-slide tile-embedding data set small enough to ship, so this benchmark uses
``mx.datasets.synthetic_tile_bags``: the class is set by a few tiles' embedding direction and a few genes.
Same stratified split (``mx.pp.split``) for every method:

* Med-CrossViT (``mx.tl.fit_med_crossvit``; default per-gene tokens, and the original's dense tokenizer),
  several seeds;
* mean-pooled tiles + logistic regression (scikit-learn), RNA-only logistic regression, and both
  concatenated (an extra peer), fitted on train + validation rows.

Reported: test accuracy / balanced accuracy, and attention hit rates on the test patients: of the ``k``
planted tiles of a patient, the fraction found among the ``k`` tiles with the largest CLS -> tile weight
(chance = k / bag size); of the planted genes, the fraction among the top genes by CLS -> gene weight,
per patient and for the mean over patients.

Run: ``python benchmarks/med_crossvit.py`` (about 10 minutes on 1 CPU thread; ``--quick`` for a smoke run).
Writes ``benchmarks/results/med_crossvit.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import multiomix as mx

RESULTS = Path(__file__).parent / "results"


def hit_rates(attention: dict, truth: dict, rows: np.ndarray, gene_names: list[str]) -> dict[str, float]:
    planted = truth["signal_tiles"]
    out = {}
    for key in ("tiles", "tiles_cross"):
        weights = np.asarray(attention[key])
        hits = []
        for i in rows:
            k = int(planted[i].sum())
            top = np.argsort(-weights[i])[:k]
            hits.append(planted[i, top].mean())
        out[f"{key}_hit"] = float(np.mean(hits))
    genes = set(truth["signal_genes"])
    k = len(genes)
    for key in ("genes", "genes_cross"):
        frame = attention[key]
        values = frame.to_numpy()[rows]
        per_patient = [len(genes & {gene_names[j] for j in np.argsort(-v)[:k]}) / k for v in values]
        mean_top = set(frame.iloc[rows].mean(0).sort_values(ascending=False).index[:k])
        out[f"{key}_hit"] = float(np.mean(per_patient))
        out[f"{key}_hit_mean"] = len(genes & mean_top) / k
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-patients", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (not for reporting)")
    args = parser.parse_args()
    if args.quick:
        args.n_patients, args.seeds, args.max_epochs = 120, [0], 5
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("multiomix").setLevel(logging.WARNING)

    data_kwargs = {"n_classes": 2, "tile_dim": 32, "n_tiles": (24, 48), "n_signal_tiles": 2, "tile_signal": 4.0,
                   "n_genes": 40, "n_signal_genes": 4, "gene_signal": 0.6}
    mdata, truth = mx.datasets.synthetic_tile_bags(args.n_patients, random_state=0, **data_kwargs)
    mx.pp.split(mdata, label_key="label", test_size=0.25, validation_size=0.15, random_state=0)
    split = mdata.obs["split"].astype(str).to_numpy()
    fit_rows, test_rows = np.flatnonzero(split != "test"), np.flatnonzero(split == "test")
    y = mdata.obs["label"].astype(str).to_numpy()
    mask = mdata.mod["wsi"].obsm["tile_mask"]
    chance_tiles = float(np.mean(truth["signal_tiles"][test_rows].sum(1) / mask[test_rows].sum(1)))
    chance_genes = data_kwargs["n_signal_genes"] / data_kwargs["n_genes"]

    rows = []

    def score(name: str, pred: np.ndarray, extra: dict | None = None) -> None:
        row = {"method": name, "accuracy": accuracy_score(y[test_rows], pred[test_rows]),
               "balanced_accuracy": balanced_accuracy_score(y[test_rows], pred[test_rows]), **(extra or {})}
        rows.append(row)
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)

    features = {
        "mean-pooled tiles + logistic regression": mdata.mod["wsi"].X,
        "RNA-only logistic regression": mdata.mod["rna"].X,
        "tiles (mean) + RNA concatenated, logistic regression": np.hstack([mdata.mod["wsi"].X, mdata.mod["rna"].X]),
    }
    for name, X in features.items():
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(X[fit_rows], y[fit_rows])
        score(name, clf.predict(X))

    configs = {
        "Med-CrossViT (per-gene tokens)": {},
        "Med-CrossViT (dense tokens, as the original)": {"gene_tokenizer": "dense"},
    }
    for name, extra in configs.items():
        seeds = args.seeds if not extra else args.seeds[:1]
        for seed in seeds:
            data = mdata.copy()
            start = time.perf_counter()
            mx.tl.fit_med_crossvit(data, label_key="label", random_state=seed, max_epochs=args.max_epochs,
                                   accelerator="cpu", progress_bar=False, **extra)
            seconds = time.perf_counter() - start
            result = data.uns["medcrossvit"]
            gene_names = list(data.mod["rna"].var_names)
            stats = hit_rates(result["attention"], truth, test_rows, gene_names)
            stats.update({"seed": seed, "epochs": len(result["history"]), "seconds": seconds})
            score(name, data.obs["medcrossvit_prediction"].astype(str).to_numpy(), stats)

    RESULTS.mkdir(exist_ok=True)
    report = {
        "data": {"generator": "multiomix.datasets.synthetic_tile_bags (SYNTHETIC)", "n_patients": args.n_patients,
                 **{k: list(v) if isinstance(v, tuple) else v for k, v in data_kwargs.items()},
                 "n_train": int((split == "train").sum()), "n_validation": int((split == "validation").sum()),
                 "n_test": len(test_rows)},
        "chance_hit_rate": {"tiles": chance_tiles, "genes": chance_genes},
        "max_epochs": args.max_epochs,
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 CPU thread",
        "results": rows,
    }
    suffix = "_quick" if args.quick else ""
    (RESULTS / f"med_crossvit{suffix}.json").write_text(json.dumps(report, indent=2))

    lines = [
        "# Med-CrossViT on synthetic tile bags + RNA (planted signal)",
        "",
        "SYNTHETIC data from `mx.datasets.synthetic_tile_bags` (no real slides): "
        f"{args.n_patients} patients, bags of {data_kwargs['n_tiles'][0]}-{data_kwargs['n_tiles'][1]} tiles "
        f"({data_kwargs['tile_dim']}-d), {data_kwargs['n_signal_tiles']} planted tiles per bag along the class "
        f"direction (length {data_kwargs['tile_signal']}), {data_kwargs['n_genes']} genes of which "
        f"{data_kwargs['n_signal_genes']} shifted by {data_kwargs['gene_signal']} SD. Split (stratified, "
        f"`mx.pp.split`): {report['data']['n_train']} train / {report['data']['n_validation']} validation / "
        f"{len(test_rows)} test. Logistic regressions are fitted on train + validation; Med-CrossViT trains on "
        "train and keeps the best validation epoch.",
        "",
        "Command: `python benchmarks/med_crossvit.py" + (" --quick" if args.quick else "") + "`",
        "",
        "Hit rates on the test patients: tile = fraction of a patient's planted tiles among its top-k "
        "tiles by attention (k = number planted); gene = fraction of planted genes among the top genes per "
        f"patient (`/mean`: ranking by the mean over patients). Chance: tiles {chance_tiles:.3f}, genes "
        f"{chance_genes:.3f}. `tiles`/`genes` = each CLS over its own tokens (tile/gene transformer); "
        "`*_cross` = the other modality's CLS in the cross-attention.",
        "",
        "| method | seed | test accuracy | balanced acc. | tile hit (self) | tile hit (cross) | gene hit (self, /mean)"
        " | gene hit (cross, /mean) | epochs | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "tiles_hit" in r:
            lines.append(
                f"| {r['method']} | {r['seed']} | {r['accuracy']:.3f} | {r['balanced_accuracy']:.3f} | "
                f"{r['tiles_hit']:.3f} | {r['tiles_cross_hit']:.3f} | {r['genes_hit']:.3f} / {r['genes_hit_mean']:.2f}"
                f" | {r['genes_cross_hit']:.3f} / {r['genes_cross_hit_mean']:.2f} | {r['epochs']} | "
                f"{r['seconds']:.0f} |"
            )
        else:
            lines.append(f"| {r['method']} | - | {r['accuracy']:.3f} | {r['balanced_accuracy']:.3f} | "
                         "- | - | - | - | - | - |")
    main_rows = [r for r in rows if r["method"] == "Med-CrossViT (per-gene tokens)"]
    if main_rows:
        acc = np.array([r["accuracy"] for r in main_rows])
        hit = np.array([r["tiles_hit"] for r in main_rows])
        lines += ["", f"Med-CrossViT (per-gene tokens) over {len(main_rows)} seeds: accuracy {acc.mean():.3f} "
                  f"(min {acc.min():.3f}), tile hit rate {hit.mean():.3f} (chance {chance_tiles:.3f})."]
    lines += ["", f"Machine: {report['machine']}."]
    (RESULTS / f"med_crossvit{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
