"""Med-CrossViT on SYNTHETIC tile bags + expression with a planted signal, against per-modality peers.

There is no public whole-slide tile-embedding data set small enough to ship, so this benchmark uses
``mx.datasets.synthetic_tile_bags`` in two settings: ``planted`` (the class is set by a few tiles' embedding
direction and a few genes, so each modality alone informs) and ``interaction`` (the label is a tile state XOR an
expression state, so the answer needs both modalities and no linear model on mean-pooled features finds it).
Same stratified split (``mx.pp.split``) for every method:

* Med-CrossViT (``mx.tl.fit_med_crossvit`` at its defaults, with its fitted wide path, over several seeds; the
  same without the wide path, ``wide_path=None``, over the same seeds; and the original's dense tokenizer without
  the wide path for one seed);
* mean-pooled tiles + logistic regression (scikit-learn), RNA-only logistic regression, both concatenated, and an
  MLP on the concatenation (a non-linear peer), fitted on train + validation rows.

Reported: test accuracy / balanced accuracy, and attention hit rates on the test patients: of the ``k``
planted tiles of a patient, the fraction found among the ``k`` tiles with the largest CLS -> tile weight
(chance = k / bag size); of the planted genes, the fraction among the top genes by CLS -> gene weight,
per patient and for the mean over patients.

Run: ``python benchmarks/med_crossvit.py`` (about 10 minutes per setting on 1 CPU thread; ``--settings`` to run
one; ``--quick`` for a smoke run).
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
from sklearn.neural_network import MLPClassifier
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


SETTINGS = {
    # the class sets both the planted tiles' direction and the planted genes' pattern: each modality alone informs
    "planted": {"n_classes": 2, "tile_dim": 32, "n_tiles": (24, 48), "n_signal_tiles": 2, "tile_signal": 4.0,
                "n_genes": 40, "n_signal_genes": 4, "gene_signal": 0.6},
    # label = tile state XOR expression state: neither modality alone, nor a linear model on the mean tile and the
    # expression, carries information; the same signal strengths as "planted"
    "interaction": {"n_classes": 2, "tile_dim": 32, "n_tiles": (24, 48), "n_signal_tiles": 2, "tile_signal": 4.0,
                    "n_genes": 40, "n_signal_genes": 4, "gene_signal": 0.6, "interaction": True},
}
FUSED = "Med-CrossViT (per-gene tokens)"
NO_WIDE = "Med-CrossViT (per-gene tokens, no wide path)"
PEERS = {
    "tiles": "mean-pooled tiles + logistic regression",
    "rna": "RNA-only logistic regression",
    "joint": "tiles (mean) + RNA concatenated, logistic regression",
    "mlp": "tiles (mean) + RNA concatenated, MLP (scikit-learn)",
}


def run_setting(setting: str, args) -> tuple[list[dict], dict]:
    data_kwargs = SETTINGS[setting]
    mdata, truth = mx.datasets.synthetic_tile_bags(args.n_patients, random_state=args.data_seed, **data_kwargs)
    mx.pp.split(mdata, label_key="label", test_size=0.25, validation_size=0.15, random_state=0)
    split = mdata.obs["split"].astype(str).to_numpy()
    fit_rows, test_rows = np.flatnonzero(split != "test"), np.flatnonzero(split == "test")
    y = mdata.obs["label"].astype(str).to_numpy()
    mask = mdata.mod["wsi"].obsm["tile_mask"]
    chance_tiles = float(np.mean(truth["signal_tiles"][test_rows].sum(1) / mask[test_rows].sum(1)))
    chance_genes = data_kwargs["n_signal_genes"] / data_kwargs["n_genes"]

    rows = []

    def score(name: str, pred: np.ndarray, extra: dict | None = None) -> None:
        row = {"setting": setting, "method": name, "accuracy": accuracy_score(y[test_rows], pred[test_rows]),
               "balanced_accuracy": balanced_accuracy_score(y[test_rows], pred[test_rows]), **(extra or {})}
        rows.append(row)
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)

    tiles, rna = mdata.mod["wsi"].X, mdata.mod["rna"].X
    features = {PEERS["tiles"]: tiles, PEERS["rna"]: rna, PEERS["joint"]: np.hstack([tiles, rna])}
    for name, X in features.items():
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(X[fit_rows], y[fit_rows])
        score(name, clf.predict(X))
    X = np.hstack([tiles, rna])
    mlp = make_pipeline(StandardScaler(), MLPClassifier((64,), alpha=1e-2, early_stopping=True, max_iter=2000,
                                                        random_state=0)).fit(X[fit_rows], y[fit_rows])
    score(PEERS["mlp"], mlp.predict(X))

    configs = {
        FUSED: {},
        NO_WIDE: {"wide_path": None},
        "Med-CrossViT (dense tokens, no wide path, as the original)": {"gene_tokenizer": "dense", "wide_path": None},
    }
    fit_options = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
    for name, extra in configs.items():
        seeds = args.seeds if name in (FUSED, NO_WIDE) else args.seeds[:1]
        for seed in seeds:
            data = mdata.copy()
            start = time.perf_counter()
            model = mx.tl.fit_med_crossvit(data, label_key="label", random_state=seed, accelerator="cpu",
                                           progress_bar=False, **fit_options, **extra)
            seconds = time.perf_counter() - start
            result = data.uns["medcrossvit"]
            gene_names = list(data.mod["rna"].var_names)
            stats = hit_rates(result["attention"], truth, test_rows, gene_names)
            # kept epoch: -1 = the weights before training (with the wide path: the wide path alone)
            stats.update({"seed": seed, "epochs": len(result["history"]), "seconds": seconds,
                          "kept_epoch": model.best_epoch_})
            score(name, data.obs["medcrossvit_prediction"].astype(str).to_numpy(), stats)
    meta = {"generator": "multiomix.datasets.synthetic_tile_bags (SYNTHETIC)", "n_patients": args.n_patients,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in data_kwargs.items()},
            "n_train": int((split == "train").sum()), "n_validation": int((split == "validation").sum()),
            "n_test": len(test_rows), "chance_hit_rate": {"tiles": chance_tiles, "genes": chance_genes}}
    return rows, meta


def section(setting: str, rows: list[dict], meta: dict) -> list[str]:
    kw = SETTINGS[setting]
    if kw.get("interaction"):
        what = ("each patient has a tile state and an expression state (independent, balanced); the planted tiles "
                "point along the tile state's direction, the planted genes follow the expression state's pattern, "
                "and **the label is tile state XOR expression state**: each modality alone, and any linear model "
                "on the mean tile and the expression, is at chance")
    else:
        what = "the class sets both the planted tiles' direction and the planted genes' pattern"
    chance = meta["chance_hit_rate"]
    lines = [
        f"## Setting `{setting}`",
        "",
        f"{meta['n_patients']} patients, bags of {kw['n_tiles'][0]}-{kw['n_tiles'][1]} tiles ({kw['tile_dim']}-d), "
        f"{kw['n_signal_tiles']} planted tiles per bag along a unit direction (length {kw['tile_signal']}), "
        f"{kw['n_genes']} genes of which {kw['n_signal_genes']} shifted by {kw['gene_signal']} SD; {what}. "
        f"Split (stratified, `mx.pp.split`): {meta['n_train']} train / {meta['n_validation']} validation / "
        f"{meta['n_test']} test. Chance hit rates: tiles {chance['tiles']:.3f}, genes {chance['genes']:.3f}.",
        "",
        "| method | seed | test accuracy | balanced acc. | tile hit (self) | tile hit (cross) | gene hit (self, /mean)"
        " | gene hit (cross, /mean) | epochs (kept) | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "tiles_hit" in r:
            lines.append(
                f"| {r['method']} | {r['seed']} | {r['accuracy']:.3f} | {r['balanced_accuracy']:.3f} | "
                f"{r['tiles_hit']:.3f} | {r['tiles_cross_hit']:.3f} | {r['genes_hit']:.3f} / {r['genes_hit_mean']:.2f}"
                f" | {r['genes_cross_hit']:.3f} / {r['genes_cross_hit_mean']:.2f} | {r['epochs']} "
                f"({r.get('kept_epoch', '-')}) | "
                f"{r['seconds']:.0f} |"
            )
        else:
            lines.append(f"| {r['method']} | - | {r['accuracy']:.3f} | {r['balanced_accuracy']:.3f} | "
                         "- | - | - | - | - | - |")
    fused = np.array([r["accuracy"] for r in rows if r["method"] == FUSED])
    if len(fused):
        peer = {key: next(r["accuracy"] for r in rows if r["method"] == name) for key, name in PEERS.items()}
        chance = 1.0 / kw["n_classes"]  # balanced classes; a peer below chance is counted at chance
        joint, best_single = max(peer["joint"], chance), max(peer["tiles"], peer["rna"], chance)
        hit = np.mean([r["tiles_hit"] for r in rows if r["method"] == FUSED])
        ok_joint = fused.mean() >= joint
        ok_single = fused.mean() >= best_single + 0.05
        lines += [
            "",
            f"{FUSED} over {len(fused)} seeds: accuracy {fused.mean():.3f} (min {fused.min():.3f}, max "
            f"{fused.max():.3f}); tile hit rate {hit:.3f}. Peers below chance ({chance:.2f}) count as chance. Against "
            f"the joint logistic regression ({joint:.3f}): {fused.mean() - joint:+.3f} "
            f"({'met' if ok_joint else 'NOT met'}); against the better single modality ({best_single:.3f}) + 0.05: "
            f"{fused.mean() - best_single - 0.05:+.3f} ({'met' if ok_single else 'NOT met'}); against the MLP on the "
            f"concatenated features ({peer['mlp']:.3f}): {fused.mean() - peer['mlp']:+.3f}.",
        ]
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-patients", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the fit's own default")
    parser.add_argument("--data-seed", type=int, default=0,
                        help="seed of the generated patients and planted signal (not 0: a fresh draw of the same "
                             "task, written to med_crossvit_data<seed>.*)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (not for reporting)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from the .json of a run")
    args = parser.parse_args()
    if args.quick:
        args.n_patients, args.seeds, args.max_epochs = 120, [0], 5
    suffix = "_quick" if args.quick else (f"_data{args.data_seed}" if args.data_seed else "")
    if args.report_only:
        report = json.loads((RESULTS / f"med_crossvit{suffix}.json").read_text())
        args.settings, args.seeds = list(report["settings"]), report["seeds"]
        args.data_seed = report.get("data_seed", 0)
        args.max_epochs = report["max_epochs"] if isinstance(report["max_epochs"], int) else None
        write_report(report["results"], report["settings"], args, report["machine"], suffix)
        return
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("multiomix").setLevel(logging.WARNING)

    all_rows, metas = [], {}
    for setting in args.settings:
        rows, metas[setting] = run_setting(setting, args)
        all_rows += rows

    RESULTS.mkdir(exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 CPU thread"
    report = {"settings": metas, "max_epochs": args.max_epochs or "fit default", "seeds": args.seeds,
              "data_seed": args.data_seed,
              "machine": machine, "results": all_rows}
    (RESULTS / f"med_crossvit{suffix}.json").write_text(json.dumps(report, indent=2))
    write_report(all_rows, metas, args, machine, suffix)


def write_report(all_rows: list[dict], metas: dict, args, machine: str, suffix: str) -> None:

    command = "python benchmarks/med_crossvit.py" + (" --quick" if args.quick else "")
    if args.max_epochs is not None and not args.quick:
        command += f" --max-epochs {args.max_epochs}"
    if args.settings != list(SETTINGS):
        command += " --settings " + " ".join(args.settings)
    if args.seeds != [0, 1, 2]:
        command += " --seeds " + " ".join(map(str, args.seeds))
    if args.data_seed:
        command += f" --data-seed {args.data_seed}"
    lines = [
        "# Med-CrossViT on synthetic tile bags + RNA (planted signal)",
        "",
        "SYNTHETIC data from `mx.datasets.synthetic_tile_bags` (no real slides). `mx.tl.fit_med_crossvit` at its "
        "defaults (only the seed set): it trains on the train rows and keeps the best validation epoch. "
        "Scikit-learn peers (standardised features) are fitted on train + validation rows; the MLP (64 hidden "
        "units, early stopping on 10 % of those rows) is an extra, non-linear peer on the same mean-pooled "
        "features. Every method is scored on the same test patients.",
        "",
        f"Command: `{command}`",
        "",
        "Hit rates on the test patients: tile = fraction of a patient's planted tiles among its top-k "
        "tiles by attention (k = number planted); gene = fraction of planted genes among the top genes per "
        "patient (`/mean`: ranking by the mean over patients). `tiles`/`genes` = each CLS over its own tokens "
        "(tile/gene transformer); `*_cross` = the other modality's CLS in the cross-attention.",
        "",
    ]
    for setting in args.settings:
        lines += section(setting, [r for r in all_rows if r["setting"] == setting], metas[setting])
    lines += [f"Machine: {machine}."]
    (RESULTS / f"med_crossvit{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
