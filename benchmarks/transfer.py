"""Annotation transfer and protein-from-RNA on the NeurIPS 2021 BMMC starter data (CITE-seq and Multiome).

Reference: batch ``s1d1`` (the ``is_train`` rows), query: batch ``s1d2``. The query's labels are used only for
the scores. Peers in the same script, same split:

- kNN (k=5) on the reference PCA (20 components per modality fitted on the reference, query projected): concatenated
  RNA + protein PCA for CITE-seq, RNA PCA for Multiome;
- scANVI: SCVI + SCANVI on the reference RNA counts, then ``SCANVI.load_query_data`` and query training;
- protein from RNA on the query cells: ridge (alpha by internal CV) and kNN regression on the reference RNA
  PCA, against UnitedNet trained on the reference only (before adaptation, which sees query proteins): the
  supervised transfer model, and a translation-mode model whose latent width and input dropout are chosen by CV
  on the reference (``--protein-latents``, ``--protein-input-dropouts``, ``--protein-epochs``), alone and as an
  ensemble of seeds (``--protein-ensemble``).

UnitedNet: its learning rate is chosen by stratified cross-validation *within the reference* (accuracy on
held-out reference cells, ``--lr-grid``, ``--cv-folds``, ``--cv-seeds`` fits per rate and fold, averaged; the
query is not looked at), then
:func:`multiomix.tl.transfer_labels` (supervised fit on the reference, then translation /
contrastive adaptation on reference + query, classification on the reference only). Query cells of types
absent from the reference cannot be right; the report says how well the confidence flags them (AUROC of
``1 - confidence``, novel vs known types) for UnitedNet and for kNN (fraction of neighbours agreeing).

Run: ``python benchmarks/transfer.py``; writes ``benchmarks/results/transfer.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import scanpy as sc
import scvi
import torch
from mudata import MuData
from scipy import sparse
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.preprocessing import StandardScaler

import multiomix as mx

warnings.filterwarnings("ignore")
for name in ("lightning", "lightning.pytorch", "multiomix", "scvi"):
    logging.getLogger(name).setLevel(logging.ERROR)

RESULTS = Path(__file__).parent / "results"
DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
MODEL_KW = {"latent_dim": 64, "hidden": (256,), "n_heads": 5, "input_dropout": 0.5, "dropout": 0.2,
            "loss_weights": {"reconstruction": 0.3, "translation": 3.0}}


def dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sparse.issparse(x) else x, dtype=np.float64)


def mean_pearson(truth: np.ndarray, pred: np.ndarray) -> float:
    t, p = truth - truth.mean(0), pred - pred.mean(0)
    denom = np.sqrt((t**2).sum(0) * (p**2).sum(0))
    ok = denom > 1e-12
    return float(((t * p).sum(0)[ok] / denom[ok]).mean())


def scores(y: np.ndarray, pred: np.ndarray, confidence: np.ndarray | None, known: set[str]) -> dict:
    out = {"accuracy": float(accuracy_score(y, pred)), "macro_f1": float(f1_score(y, pred, average="macro")),
           "accuracy_known_types": float(accuracy_score(y[np.isin(y, list(known))], pred[np.isin(y, list(known))]))}
    novel = ~np.isin(y, list(known))
    if confidence is not None and novel.any() and (~novel).any():
        out["novel_auroc"] = float(roc_auc_score(novel, 1 - confidence))
    return out


def knn_transfer(ref_feats: list[np.ndarray], query_feats: list[np.ndarray], y_ref: np.ndarray, seed: int):
    """kNN (k=5) on 20 PCA components per modality fitted on the reference (query projected), concatenated."""
    ref_parts, query_parts = [], []
    for r, q in zip(ref_feats, query_feats):
        pca = PCA(n_components=20, random_state=seed).fit(r)
        ref_parts.append(pca.transform(r))
        query_parts.append(pca.transform(q))
    knn = KNeighborsClassifier(n_neighbors=5).fit(np.hstack(ref_parts), y_ref)
    proba = knn.predict_proba(np.hstack(query_parts))
    return knn.classes_[proba.argmax(1)], proba.max(1)


def scanvi_transfer(mdata, ref_mask, label_key: str, epochs: int, seed: int):
    scvi.settings.seed = seed
    rna = mdata.mod["rna"]
    adata = sc.AnnData(X=rna.layers["counts"].copy(), obs=mdata.obs[[label_key]].astype(str).copy())
    adata.obs_names = rna.obs_names
    ref, query = adata[ref_mask].copy(), adata[~ref_mask].copy()
    scvi.model.SCVI.setup_anndata(ref, labels_key=label_key)
    vae = scvi.model.SCVI(ref, n_latent=20)
    vae.train(max_epochs=epochs, accelerator="cpu", enable_progress_bar=False)
    lvae = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category="Unknown", labels_key=label_key)
    lvae.train(max_epochs=max(epochs // 5, 10), accelerator="cpu", enable_progress_bar=False)
    query.obs[label_key] = "Unknown"
    qvae = scvi.model.SCANVI.load_query_data(query, lvae)
    qvae.train(max_epochs=epochs, accelerator="cpu", enable_progress_bar=False, plan_kwargs={"weight_decay": 0.0})
    proba = qvae.predict(soft=True)
    return proba.columns.to_numpy()[proba.to_numpy().argmax(1)].astype(str), proba.to_numpy().max(1)


def with_held_out(reference, held_out: np.ndarray):
    """A copy of ``reference`` whose ``obs['split']`` marks the rows ``held_out`` as test (the rest: train)."""
    work = reference.copy()
    split = np.full(work.n_obs, "train", dtype=object)
    split[held_out] = "test"
    work.obs["split"] = split
    return work


def choose_lr(reference, label_key: str, lrs: list[float], *, folds: int, epochs: int, seed: int,
              cv_seeds: int = 1) -> dict:
    """Mean held-out accuracy of UnitedNet reference fits per learning rate, by stratified CV on the reference.

    Every learning rate is fitted with ``cv_seeds`` seeds (``seed``, ``seed + 1``, ...) on the same folds; the
    choice is by the mean over folds and seeds, so one unlucky initialisation does not decide it.
    """
    y = reference.obs[label_key].astype(str).to_numpy()
    with warnings.catch_warnings():  # classes with fewer cells than folds only warn
        warnings.simplefilter("ignore")
        splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    table = {}
    for lr in lrs:
        per_seed = []
        for fit_seed in range(seed, seed + cv_seeds):
            accuracies = []
            for _train, held_out in splits:
                work = with_held_out(reference, held_out)
                mx.tl.fit_unitednet(work, label_key=label_key, max_epochs=epochs, lr=lr, random_state=fit_seed,
                                    accelerator="cpu", progress_bar=False, validation_size=0.1, baseline=False,
                                    **MODEL_KW)
                accuracies.append(float(work.uns["unitednet"]["test_metrics"]["accuracy"]))
            per_seed.append(accuracies)
        table[f"{lr:g}"] = {"accuracy": float(np.mean(per_seed)), "per_fold": per_seed[0],
                            "per_seed": [float(np.mean(a)) for a in per_seed]}
        print("lr", lr, table[f"{lr:g}"], flush=True)
    best = max(table, key=lambda k: table[k]["accuracy"])
    return {"grid": table, "chosen": float(best)}


def protein_predictions(reference, query, *, seed: int, folds: int, latents: list[int], epochs: int,
                        ensemble: int, input_dropouts: tuple[float, ...] = (0.5,)) -> dict:
    """Protein from RNA: ridge, kNN and a translation-mode UnitedNet whose latent width is chosen by CV.

    The CV runs on the reference cells only (mean per-protein Pearson on held-out reference cells); the chosen
    width is then refitted on the whole reference and scored once on the query, alone (seed ``seed``) and as an
    ensemble of ``ensemble`` seeds (``seed``, ``seed + 1``, ...) averaged by :func:`multiomix.tl.predict_modality`.
    The ensemble's held-out reference Pearson is reported too (the same folds).
    """
    x_ref, x_q = dense(reference.mod["rna"].X), dense(query.mod["rna"].X)
    p_ref, p_q = dense(reference.mod["adt"].X), dense(query.mod["adt"].X)
    splits = list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(reference.n_obs)))

    def ridge_fit(x, p):
        sx, sp = StandardScaler().fit(x), StandardScaler().fit(p)
        ridge = RidgeCV(alphas=np.logspace(-1, 5, 13)).fit(sx.transform(x), sp.transform(p))
        return lambda new: sp.inverse_transform(ridge.predict(sx.transform(new)))

    ridge_held_out = np.zeros_like(p_ref)
    for train, held_out in splits:
        ridge_held_out[held_out] = ridge_fit(x_ref[train], p_ref[train])(x_ref[held_out])
    sx = StandardScaler().fit(x_ref)
    pca = PCA(50, random_state=seed).fit(sx.transform(x_ref))
    knn = KNeighborsRegressor(15).fit(pca.transform(sx.transform(x_ref)), p_ref)
    out = {"ridge": mean_pearson(p_q, ridge_fit(x_ref, p_ref)(x_q)),
           "ridge_reference_cv": float(np.mean([mean_pearson(p_ref[h], ridge_held_out[h]) for _, h in splits])),
           "knn": mean_pearson(p_q, knn.predict(pca.transform(sx.transform(x_q))))}

    def fit(data, setting: tuple[int, float], fit_seed: int):
        kw = {**MODEL_KW, "latent_dim": setting[0], "input_dropout": setting[1]}
        return mx.tl.fit_unitednet(data, mode="translation", modalities=["rna", "adt"], max_epochs=epochs,
                                   random_state=fit_seed, accelerator="cpu",
                                   progress_bar=False, validation_size=0.1, test_size=0, **kw)

    def held_out_predictions(setting: tuple[int, float], fit_seed: int) -> np.ndarray:
        pred = np.zeros_like(p_ref)
        for _train, held_out in splits:
            model = fit(with_held_out(reference, held_out), setting, fit_seed)
            pred[held_out] = model.translate(reference[held_out], source="rna", target="adt")
        return pred

    def cv_pearson(pred: np.ndarray) -> list[float]:
        return [mean_pearson(p_ref[held_out], pred[held_out]) for _train, held_out in splits]

    t0 = time.perf_counter()
    grid, held_out = {}, {}
    for setting in [(latent, rate) for rate in input_dropouts for latent in latents]:
        held_out[setting] = held_out_predictions(setting, seed)
        per_fold = cv_pearson(held_out[setting])
        grid[setting] = {"pearson": float(np.mean(per_fold)), "per_fold": per_fold}
        print("protein latent, input dropout", setting, grid[setting], flush=True)
    chosen = max(grid, key=lambda k: grid[k]["pearson"])
    out["translation_selection"] = {"grid": [{"latent": k[0], "input_dropout": k[1], **v} for k, v in grid.items()],
                                    "chosen_latent": chosen[0], "chosen_input_dropout": chosen[1], "epochs": epochs,
                                    "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    members = [held_out[chosen]] + [held_out_predictions(chosen, seed + k) for k in range(1, ensemble)]
    out["ensemble_reference_cv"] = {"size": ensemble, "pearson": float(np.mean(cv_pearson(np.mean(members, 0)))),
                                    "members": [float(np.mean(cv_pearson(m))) for m in members],
                                    "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    models = [fit(reference.copy(), chosen, seed + k) for k in range(ensemble)]
    out["translation_seconds_per_model"] = (time.perf_counter() - t0) / ensemble
    out["unitednet_translation"] = mean_pearson(p_q, models[0].translate(query, source="rna", target="adt"))
    out["unitednet_translation_members"] = [mean_pearson(p_q, m.translate(query, source="rna", target="adt"))
                                            for m in models]
    rna_only = MuData({"rna": query.mod["rna"].copy()})
    mx.tl.predict_modality(rna_only, models, source="rna", target="adt")
    out["unitednet_translation_ensemble"] = mean_pearson(p_q, dense(rna_only.mod["adt_from_rna"].X))
    return out


def run_dataset(name: str, mdata, *, epochs: int, adapt_epochs: int, scanvi_epochs: int, seed: int,
                lrs: list[float], cv_folds: int, protein_latents: list[int], protein_input_dropouts: list[float],
                protein_epochs: int,
                protein_ensemble: int, transfer_seeds: int, cv_seeds: int) -> dict:
    label_key = "cell_type"
    ref_mask = (mdata.obs["batch"].astype(str) == "s1d1").to_numpy()
    reference, query = mdata[ref_mask].copy(), mdata[~ref_mask].copy()
    y_ref = reference.obs[label_key].astype(str).to_numpy()
    y_query = query.obs[label_key].astype(str).to_numpy()
    del query.obs[label_key]
    known = set(y_ref)
    mods = list(mdata.mod)
    out: dict = {"n_reference": int(ref_mask.sum()), "n_query": int((~ref_mask).sum()),
                 "novel_fraction": float(np.mean(~np.isin(y_query, list(known))))}
    # kNN on reference PCA
    knn_mods = mods if name == "cite" else ["rna"]
    t0 = time.perf_counter()
    pred, conf = knn_transfer([dense(reference.mod[m].X) for m in knn_mods],
                              [dense(query.mod[m].X) for m in knn_mods], y_ref, seed)
    out["knn"] = {**scores(y_query, pred, conf, known), "seconds": time.perf_counter() - t0,
                  "features": "+".join(knn_mods) + " PCA"}
    # scANVI
    t0 = time.perf_counter()
    pred, conf = scanvi_transfer(mdata, ref_mask, label_key, scanvi_epochs, seed)
    out["scanvi"] = {**scores(y_query, pred, conf, known), "seconds": time.perf_counter() - t0}
    # UnitedNet: learning rate by CV on the reference, reference model, then adaptation
    t0 = time.perf_counter()
    lr = lrs[0]
    if len(lrs) > 1:
        out["lr_selection"] = choose_lr(reference, label_key, lrs, folds=cv_folds, epochs=epochs, seed=seed,
                                        cv_seeds=cv_seeds)
        out["lr_selection"]["seconds"] = time.perf_counter() - t0
        lr = out["lr_selection"]["chosen"]
    runs, models = [], []
    for k in range(transfer_seeds):
        t0 = time.perf_counter()
        models.append(mx.tl.fit_unitednet(reference.copy(), label_key=label_key, max_epochs=epochs, lr=lr,
                                          random_state=seed + k, accelerator="cpu",
                                          progress_bar=False, validation_size=0.1, test_size=0, baseline=False,
                                          **MODEL_KW))
        t_ref = time.perf_counter() - t0
        mx.tl.transfer_labels(reference, query, label_key=label_key, model=models[-1], adapt_epochs=adapt_epochs,
                              random_state=seed + k, accelerator="cpu", progress_bar=False,
                              key_added="unitednet_transfer")
        runs.append({"proba": np.asarray(query.obsm["unitednet_transfer_proba"]), "seconds": time.perf_counter() - t0,
                     "seconds_reference_fit": t_ref})
    model = models[0]  # the first seed's reference model: the no-adaptation row and protein from RNA
    classes = np.asarray(query.uns["unitednet_transfer"]["classes"]).astype(str)
    # prediction = most probable class, confidence = its probability (as transfer_labels writes them)
    per_seed = [scores(y_query, classes[r["proba"].argmax(1)], r["proba"].max(1), known) for r in runs]
    out["unitednet"] = {**per_seed[0], "seconds": runs[0]["seconds"],
                        "seconds_reference_fit": runs[0]["seconds_reference_fit"]}
    mean_proba = np.mean([r["proba"] for r in runs], 0)
    out["unitednet_seeds"] = {"seeds": [seed + k for k in range(transfer_seeds)], "per_seed": per_seed,
                              "seconds": float(np.mean([r["seconds"] for r in runs]))}
    out["unitednet_ensemble"] = {**scores(y_query, classes[mean_proba.argmax(1)], mean_proba.max(1), known),
                                 "seconds": float(np.sum([r["seconds"] for r in runs]))}
    mx.tl.transfer_labels(reference, query, label_key=label_key, model=model, adapt_epochs=0, key_added="noadapt")
    out["unitednet_no_adaptation"] = scores(y_query, query.obs["noadapt"].astype(str).to_numpy(),
                                            query.obs["noadapt_confidence"].to_numpy(), known)
    if name == "cite":  # protein from RNA on the query cells (the transfer model saw no query protein yet)
        protein = protein_predictions(reference, query, seed=seed, folds=cv_folds, latents=protein_latents,
                                      input_dropouts=tuple(protein_input_dropouts),
                                      epochs=protein_epochs, ensemble=protein_ensemble)
        protein["unitednet"] = mean_pearson(dense(query.mod["adt"].X),
                                            model.translate(query, source="rna", target="adt"))
        out["protein_from_rna_pearson"] = protein
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--adapt-epochs", type=int, default=30)
    parser.add_argument("--scanvi-epochs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr-grid", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2],
                        help="UnitedNet learning rates compared by CV on the reference (one value: no CV)")
    parser.add_argument("--cv-folds", type=int, default=5)
    parser.add_argument("--cv-seeds", type=int, default=3,
                        help="seeds per learning rate in the reference CV (the choice uses their mean)")
    parser.add_argument("--protein-latents", type=int, nargs="+", default=[8, 16, 32, 64],
                        help="latent widths of the translation-mode UnitedNet compared by CV on the reference")
    parser.add_argument("--protein-input-dropouts", type=float, nargs="+", default=[0.5, 0.7, 0.8],
                        help="input dropout rates of the translation-mode UnitedNet compared by CV (jointly with "
                             "the latent widths)")
    parser.add_argument("--protein-epochs", type=int, default=200)
    parser.add_argument("--transfer-seeds", type=int, default=5,
                        help="UnitedNet transfer runs (seeds seed, seed + 1, ...): spread and probability-averaged "
                             "ensemble; the main row is the first seed")
    parser.add_argument("--protein-ensemble", type=int, default=5,
                        help="seeds averaged for the ensemble of translation-mode models at the chosen width")
    parser.add_argument("--report", action="store_true", help="rebuild transfer.md from transfer.json")
    args = parser.parse_args()
    if args.report:
        write_report(json.loads((RESULTS / "transfer.json").read_text()))
        return
    torch.set_num_threads(args.threads)
    data_dir = DATA if DATA.exists() else None
    results = {"args": vars(args), "model_kwargs": MODEL_KW}
    for name, loader in (("cite", mx.datasets.bmmc_cite), ("multiome", mx.datasets.bmmc_multiome)):
        results[name] = run_dataset(name, loader(data_dir=data_dir), epochs=args.epochs,
                                    adapt_epochs=args.adapt_epochs, scanvi_epochs=args.scanvi_epochs, seed=args.seed,
                                    lrs=args.lr_grid, cv_folds=args.cv_folds,
                                    protein_latents=args.protein_latents,
                                    protein_input_dropouts=args.protein_input_dropouts,
                                    protein_epochs=args.protein_epochs,
                                    protein_ensemble=args.protein_ensemble, transfer_seeds=args.transfer_seeds,
                                    cv_seeds=args.cv_seeds)
        print(name, json.dumps(results[name], indent=1), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transfer.json").write_text(json.dumps(results, indent=1))
    write_report(results)


def write_report(results: dict) -> None:
    """Write ``transfer.md`` from the results (``--report`` rebuilds it from ``transfer.json``)."""
    args = argparse.Namespace(**results["args"])
    lines = ["# Annotation transfer s1d1 -> s1d2 (BMMC starter data)", "",
             f"Command: `python benchmarks/transfer.py --epochs {args.epochs} --adapt-epochs {args.adapt_epochs} "
             f"--scanvi-epochs {args.scanvi_epochs} --lr-grid {' '.join(f'{v:g}' for v in args.lr_grid)} "
             f"--cv-folds {args.cv_folds}"
             + (f" --cv-seeds {args.cv_seeds}" if hasattr(args, "cv_seeds") else "")
             + (f" --protein-latents {' '.join(map(str, args.protein_latents))} --protein-epochs {args.protein_epochs}"
                if hasattr(args, "protein_latents") else "")
             + (f" --protein-input-dropouts {' '.join(f'{v:g}' for v in args.protein_input_dropouts)}"
                if hasattr(args, "protein_input_dropouts") else "")
             + (f" --protein-ensemble {args.protein_ensemble}" if hasattr(args, "protein_ensemble") else "")
             + (f" --transfer-seeds {args.transfer_seeds}" if hasattr(args, "transfer_seeds") else "")
             + f"` ({args.threads} CPU thread).", ""]
    for name in ("cite", "multiome"):
        r = results[name]
        lines += [f"## {name}: {r['n_reference']} reference, {r['n_query']} query cells, "
                  f"{100 * r['novel_fraction']:.0f} % of query cells of types absent from the reference", "",
                  "| method | accuracy | macro-F1 | accuracy on known types | novel-type AUROC of 1 - confidence | s |",
                  "|---|---|---|---|---|---|"]
        rows = {key: r[key] for key in ("unitednet", "unitednet_seeds", "unitednet_ensemble",
                                         "unitednet_no_adaptation", "knn", "scanvi") if key in r}
        n_seeds = len(r.get("unitednet_seeds", {}).get("seeds", []))
        labels = {"unitednet": "UnitedNet (transfer_labels)" + (", first seed" if n_seeds else ""),
                  "unitednet_seeds": f"UnitedNet, mean ± sd over {n_seeds} seeds",
                  "unitednet_ensemble": f"UnitedNet, {n_seeds} seeds, probabilities averaged",
                  "unitednet_no_adaptation": "UnitedNet, reference model only (first seed)",
                  "knn": f"kNN on reference {r['knn']['features']}", "scanvi": "scANVI load_query_data"}
        for key, m in rows.items():
            if key == "unitednet_seeds":
                cells = [f"{np.mean([v[q] for v in m['per_seed']]):.3f} ± {np.std([v[q] for v in m['per_seed']]):.3f}"
                         for q in ("accuracy", "macro_f1", "accuracy_known_types", "novel_auroc")]
                lines.append(f"| {labels[key]} | {' | '.join(cells)} | {m['seconds']:.0f} |")
                continue
            lines.append(f"| {labels[key]} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | "
                         f"{m['accuracy_known_types']:.3f} | {m.get('novel_auroc', float('nan')):.3f} | "
                         f"{m.get('seconds', float('nan')):.0f} |")
        if "unitednet_seeds" in r:
            acc = ", ".join(f"{v['accuracy']:.3f}" for v in r["unitednet_seeds"]["per_seed"])
            lines += ["", f"UnitedNet accuracy per seed ({', '.join(map(str, r['unitednet_seeds']['seeds']))}; each "
                      f"its own reference fit and adaptation): {acc}. The ensemble row averages the seeds' class "
                      "probabilities; kNN is deterministic, scANVI is one seed."]
        if "lr_selection" in r:
            sel = r["lr_selection"]
            grid = ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in sel["grid"].items())
            n_cv_seeds = len(next(iter(sel["grid"].values())).get("per_seed", [0]))
            spread = "; ".join(f"{k}: " + ", ".join(f"{a:.3f}" for a in v["per_seed"])
                               for k, v in sel["grid"].items() if "per_seed" in v)
            lines += ["", f"UnitedNet learning rate chosen by {args.cv_folds}-fold CV on the reference cells only, "
                      f"{n_cv_seeds} seed(s) per rate (mean held-out reference accuracy: {grid}"
                      + (f"; per seed, {spread}" if n_cv_seeds > 1 else "")
                      + f"): {sel['chosen']:g}; the adaptation runs at the "
                      f"model's default rate. The CV took {sel['seconds']:.0f} s, not included in the table's `s`."]
        if "protein_from_rna_pearson" in r:
            p = r["protein_from_rna_pearson"]
            lines += ["", "Protein from RNA on the query cells, mean per-protein Pearson: "
                      f"UnitedNet (the supervised reference model above) {p['unitednet']:.3f}, ridge {p['ridge']:.3f}, "
                      f"kNN {p['knn']:.3f}."]
            if "translation_selection" in p:
                sel = p["translation_selection"]
                if isinstance(sel["grid"], dict):  # older runs: latent widths only, input dropout 0.5
                    rows = [{"latent": int(k), "input_dropout": 0.5, **v} for k, v in sel["grid"].items()]
                    sel = {**sel, "grid": rows, "chosen_input_dropout": 0.5}
                grid = ", ".join(f"{g['latent']} / {g['input_dropout']:g} {g['pearson']:.3f}" for g in sel["grid"])
                lines += ["", f"UnitedNet in translation mode (RNA and protein only, {sel['epochs']} epochs), latent "
                          f"width and input dropout chosen by {args.cv_folds}-fold CV on the reference cells only "
                          f"(mean per-protein Pearson on held-out reference cells, width / input dropout: {grid}; "
                          "ridge and kNN are not part of the choice): "
                          f"{sel['chosen_latent']} / {sel['chosen_input_dropout']:g}, refitted on the whole reference: "
                          f"**{p['unitednet_translation']:.3f}** on the query cells (the CV took "
                          f"{sel['seconds']:.0f} s)."]
            if "unitednet_translation_ensemble" in p:
                ens = p["ensemble_reference_cv"]
                members = ", ".join(f"{v:.3f}" for v in p["unitednet_translation_members"])
                lines += ["", f"Ensemble of {ens['size']} seeds at that setting (`mx.tl.predict_modality` with a list "
                          f"of models): **{p['unitednet_translation_ensemble']:.4f}** on the query cells (members: "
                          f"{members}; {p['translation_seconds_per_model']:.0f} s per member). On held-out reference "
                          f"cells, same folds: ensemble {ens['pearson']:.3f}, members "
                          f"{', '.join(f'{v:.3f}' for v in ens['members'])}, ridge {p['ridge_reference_cv']:.3f} "
                          "(the query batch costs every method about the same: compare ridge's "
                          f"{p['ridge_reference_cv']:.3f} on held-out reference cells with its {p['ridge']:.3f} on "
                          "the query)."]
        lines.append("")
    (RESULTS / "transfer.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
