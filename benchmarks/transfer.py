"""Annotation transfer on the NeurIPS 2021 BMMC starter data (CITE-seq and Multiome), both directions, several seeds.

Directions: reference batch ``s1d1`` -> query ``s1d2`` and ``s1d2`` -> ``s1d1``. The query's labels are used only
for the scores; nothing (no learning rate, threshold, temperature or epoch count) is chosen on the query.

Methods, same split, same seeds:

- **ours**: :func:`multiomix.tl.transfer_labels` (UnitedNet fitted on the reference with the architecture settings of
  ``MODEL_KW`` below, not all of them the defaults, and adapted on reference + query; its temperature-scaled
  probabilities averaged, with the weight of lowest held-out negative log-likelihood (``knn_weight="auto"``,
  the default), with a distance-weighted kNN vote
  (k=15) of the reference cells in a PCA of reference + query cells together, 20 components per modality; the
  average calibrated by temperature scaling on held-out reference cells; 'unknown' threshold by leaving
  reference types out). Learning rate 1e-3: chosen by 5-fold CV on the s1d1 reference cells in an earlier run
  (``git log benchmarks/results/transfer.md``), not re-chosen here;
- **kNN** (k=5) on the joint reference PCA (20 components per modality fitted on the reference, query projected;
  RNA + protein for CITE-seq, RNA for Multiome); probability = neighbour vote share;
- **scANVI** with scArches surgery: SCVI + SCANVI on the reference RNA counts, ``SCANVI.load_query_data`` and
  query training; probability = ``predict(soft=True)``;
- **CellTypist** (the ``celltypist`` package): ``celltypist.train`` (logistic regression, its defaults) on the
  reference RNA normalised to 10,000 counts per cell and log1p-transformed, ``celltypist.annotate`` on the
  query (best match, no majority voting); probability = its probability matrix (one-vs-rest sigmoids,
  renormalised to sum to 1 for the confidence). CellTypist 1.7.1 passes ``multi_class='ovr'``, which
  scikit-learn 1.8 removed: only that call is replaced by the same one-vs-rest fit (``_celltypist_ovr``);
- **ingest**: ``sc.tl.ingest`` of the query into the reference RNA PCA (log-normalised, 50 components, 15
  neighbours, ``embedding_method='pca'``); confidence = share of the 15 nearest reference cells in that PCA
  carrying the ingested label.

Scores per run: accuracy (all query cells: cells of types absent from the reference cannot be right), macro-F1
over the types present in both reference and query, novel-type AUROC of ``1 - confidence`` (ours: of
``1 - match score``, the score its unknown flag thresholds; query cells of types absent from the reference vs the
rest), expected calibration error (10 equal-width bins) on query cells of known types. Paired bootstrap (over
query cells, ``--bootstrap`` resamples) of ours minus the best peer (the peer
with the highest mean), on the seed-averaged metric. Protein from RNA (CITE-seq, s1d1 -> s1d2):
``mx.tl.predict_modality`` with an ensemble of translation-mode UnitedNets (latent 16, input dropout 0.7:
chosen by CV on the reference in the earlier run), mean per-protein Pearson on the query, beside its first member
alone, ridge regression (alpha by 5-fold CV on the reference) and kNN regression from the reference RNA.

``--rna-only`` gives the query its RNA alone (the reference keeps both modalities): ours then takes the
single-modality default of ``transfer_labels`` (a standardised logistic regression on the reference RNA, ``C`` by
inner CV, averaged with the kNN vote in the joint RNA PCA, calibrated the same way) and kNN uses the RNA PCA; the
other peers read only RNA anyway. Report ``transfer_rna_only`` unless ``--name`` says otherwise.

``--n-models n`` runs ours as ``transfer_labels(..., n_models=n)`` (UnitedNets cross-fitted on ``n`` folds of the
reference, every reference cell scored out of fold for the calibration; the query gets their mean probabilities).

Run: ``python benchmarks/transfer.py --seeds 5``; writes ``benchmarks/results/transfer.{md,json}`` (``--name``: another
report name) after every seed.
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
import scanpy as sc
import scvi
import torch
from mudata import MuData
from scipy import sparse
from sklearn.decomposition import PCA
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.neighbors import KNeighborsClassifier

import multiomix as mx
from multiomix.tl._transfer import expected_calibration_error

warnings.filterwarnings("ignore")
for name in ("lightning", "lightning.pytorch", "multiomix", "scvi", "celltypist"):
    logging.getLogger(name).setLevel(logging.ERROR)

RESULTS = Path(__file__).parent / "results"
DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
MODEL_KW = {"latent_dim": 64, "hidden": (256,), "n_heads": 5, "input_dropout": 0.5, "dropout": 0.2,
            "loss_weights": {"reconstruction": 0.3, "translation": 3.0}}
METHODS = ("ours", "knn", "scanvi", "celltypist", "ingest")
LABELS = {"ours": "ours (transfer_labels, UnitedNet)", "knn": "kNN on joint reference PCA",
          "scanvi": "scANVI + scArches surgery", "celltypist": "CellTypist", "ingest": "sc.tl.ingest"}
LABEL_KEY = "cell_type"


def dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sparse.issparse(x) else x, dtype=np.float64)


def mean_pearson(truth: np.ndarray, pred: np.ndarray) -> float:
    t, p = truth - truth.mean(0), pred - pred.mean(0)
    denom = np.sqrt((t**2).sum(0) * (p**2).sum(0))
    ok = denom > 1e-12
    return float(((t * p).sum(0)[ok] / denom[ok]).mean())


def lognorm(adata) -> sc.AnnData:
    """The RNA counts normalised to 10,000 per cell and log1p-transformed (what CellTypist expects)."""
    out = sc.AnnData(X=sparse.csr_matrix(adata.layers["counts"]).astype(np.float32), obs=adata.obs[[]].copy(),
                     var=adata.var[[]].copy())
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    return out


def metrics(y: np.ndarray, pred: np.ndarray, confidence: np.ndarray, known: set[str],
            match: np.ndarray | None = None) -> dict:
    """Scores of one run; the novel-type AUROC is of ``1 - match`` (the score the unknown flag thresholds) where
    given, else of ``1 - confidence``."""
    shared = sorted(known & set(y))
    is_known = np.isin(y, list(known))
    out = {"accuracy": float(accuracy_score(y, pred)),
           "macro_f1": float(f1_score(y, pred, labels=shared, average="macro", zero_division=0)),
           "ece": expected_calibration_error(confidence[is_known], pred[is_known] == y[is_known])}
    if is_known.all() or not is_known.any():
        out["novel_auroc"] = float("nan")
    else:
        out["novel_auroc"] = float(roc_auc_score(~is_known, 1 - (confidence if match is None else match)))
        out["novel_auroc_confidence"] = float(roc_auc_score(~is_known, 1 - confidence))
    return out


def run_knn(reference, query, mods: list[str], y_ref: np.ndarray, seed: int):
    ref_parts, query_parts = [], []
    for m in mods:
        r, q = dense(reference.mod[m].X), dense(query.mod[m].X)
        pca = PCA(n_components=20, random_state=seed).fit(r)
        ref_parts.append(pca.transform(r))
        query_parts.append(pca.transform(q))
    knn = KNeighborsClassifier(n_neighbors=5).fit(np.hstack(ref_parts), y_ref)
    proba = knn.predict_proba(np.hstack(query_parts))
    return knn.classes_[proba.argmax(1)], proba.max(1)


def run_scanvi(reference, query, y_ref: np.ndarray, epochs: int, seed: int):
    scvi.settings.seed = seed
    ref = sc.AnnData(X=sparse.csr_matrix(reference.mod["rna"].layers["counts"]).astype(np.float32),
                     obs=pd.DataFrame({LABEL_KEY: y_ref}, index=reference.obs_names))
    qry = sc.AnnData(X=sparse.csr_matrix(query.mod["rna"].layers["counts"]).astype(np.float32),
                     obs=pd.DataFrame({LABEL_KEY: "Unknown"}, index=query.obs_names))
    scvi.model.SCVI.setup_anndata(ref, labels_key=LABEL_KEY)
    vae = scvi.model.SCVI(ref, n_latent=20)
    vae.train(max_epochs=epochs, accelerator="cpu", enable_progress_bar=False)
    lvae = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category="Unknown", labels_key=LABEL_KEY)
    lvae.train(max_epochs=max(epochs // 5, 10), accelerator="cpu", enable_progress_bar=False)
    qvae = scvi.model.SCANVI.load_query_data(qry, lvae)
    qvae.train(max_epochs=epochs, accelerator="cpu", enable_progress_bar=False, plan_kwargs={"weight_decay": 0.0})
    proba = qvae.predict(soft=True)
    return proba.columns.to_numpy()[proba.to_numpy().argmax(1)].astype(str), proba.to_numpy().max(1)


def _celltypist_ovr(indata, labels, C, solver, max_iter, n_jobs, **kwargs):
    """CellTypist's one-vs-rest logistic regression without ``multi_class='ovr'`` (removed in scikit-learn 1.8).

    ``celltypist.train`` 1.7.1 calls ``LogisticRegression(..., multi_class='ovr')``; this fits the same per-class
    binary models with ``OneVsRestClassifier`` and returns a ``LogisticRegression`` holding their stacked
    coefficients, which is all CellTypist's ``Model.predict`` reads (``decision_function``, ``classes_``).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    ovr = OneVsRestClassifier(LogisticRegression(C=C, solver=solver or "lbfgs", max_iter=max_iter or 1000, **kwargs),
                              n_jobs=n_jobs).fit(indata, labels)
    clf = LogisticRegression(C=C)
    clf.coef_ = np.vstack([e.coef_ for e in ovr.estimators_])
    clf.intercept_ = np.concatenate([e.intercept_ for e in ovr.estimators_])
    clf.classes_ = ovr.classes_
    clf.n_features_in_ = indata.shape[1]
    return clf


def run_celltypist(reference, query, y_ref: np.ndarray, seed: int):
    import importlib

    import celltypist

    importlib.import_module("celltypist.train")._LRClassifier = _celltypist_ovr
    np.random.seed(seed)
    ref, qry = lognorm(reference.mod["rna"]), lognorm(query.mod["rna"])
    model = celltypist.train(ref, labels=y_ref, n_jobs=1)
    result = celltypist.annotate(qry, model=model, majority_voting=False)
    proba = result.probability_matrix
    return proba.columns.to_numpy()[proba.to_numpy().argmax(1)].astype(str), (
        proba.to_numpy().max(1) / np.clip(proba.to_numpy().sum(1), 1e-12, None))


def run_ingest(reference, query, y_ref: np.ndarray, seed: int):
    ref, qry = lognorm(reference.mod["rna"]), lognorm(query.mod["rna"])
    ref.obs[LABEL_KEY] = pd.Categorical(y_ref)
    sc.pp.pca(ref, n_comps=50, random_state=seed)
    sc.pp.neighbors(ref, n_neighbors=15, random_state=seed)
    sc.tl.ingest(qry, ref, obs=LABEL_KEY, embedding_method="pca")
    pred = qry.obs[LABEL_KEY].astype(str).to_numpy()
    knn = KNeighborsClassifier(n_neighbors=15).fit(ref.obsm["X_pca"], y_ref)
    proba = knn.predict_proba(qry.obsm["X_pca"])
    conf = proba[np.arange(len(pred)), knn.classes_.searchsorted(pred)]
    return pred, conf


def run_ours(reference, query, *, epochs: int, adapt_epochs: int, lr: float, seed: int, n_models: int = 1):
    work = query.copy()
    mx.tl.transfer_labels(reference, work, label_key=LABEL_KEY, max_epochs=epochs, adapt_epochs=adapt_epochs, lr=lr,
                          random_state=seed, n_models=n_models, accelerator="cpu", progress_bar=False, key_added="ours",
                          **MODEL_KW)
    uns = work.uns["ours"]
    extra = {"temperature": float(uns["temperature"]), "unknown_threshold": float(uns["unknown_threshold"]),
             "reference_ece_before": float(uns["calibration"]["ece_before"]),
             "reference_ece_after": float(uns["calibration"]["ece_after"]),
             "reference_loto_auroc": float(uns["unknown_selection"]["auroc"]),
             "reference_loto_auroc_confidence": float(uns["unknown_selection"].get(
                 "auroc_confidence", uns["unknown_selection"]["auroc"])),
             "unknown_score": str(uns["unknown_score"]),
             "knn_weight": float(uns["knn_vote"]["knn_weight"]) if "knn_vote" in uns else float("nan"),
             "unknown": work.obs["ours_unknown"].to_numpy().astype(bool).tolist()}
    if "ours_match_score" in work.obs:
        extra["match_score"] = work.obs["ours_match_score"].to_numpy().astype(float).tolist()
    return (work.obs["ours"].astype(str).to_numpy(), work.obs["ours_confidence"].to_numpy().astype(float), extra)


def bootstrap_difference(y, ours: list, peer: list, metric, n: int, seed: int):
    """Paired bootstrap over query cells of mean-over-seeds metric(ours) - metric(peer): (estimate, low, high).

    Each element of ``ours`` / ``peer`` is one seed's per-cell array, or a tuple of such arrays.
    """
    rng = np.random.default_rng(seed)
    point = np.mean([metric(y, p) for p in ours]) - np.mean([metric(y, p) for p in peer])
    draws = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        def take(p, idx=idx):
            return tuple(x[idx] for x in p) if isinstance(p, tuple) else p[idx]

        draws.append(np.mean([metric(y[idx], take(p)) for p in ours])
                     - np.mean([metric(y[idx], take(p)) for p in peer]))
    low, high = np.nanpercentile(draws, [2.5, 97.5])  # nan: a resample without both classes (novel AUROC)
    return {"difference": float(point), "low": float(low), "high": float(high)}


def protein_from_rna(reference, query, *, members: int, epochs: int) -> dict:
    models = []
    for seed in range(members):
        models.append(mx.tl.fit_unitednet(reference.copy(), mode="translation", modalities=["rna", "adt"],
                                          max_epochs=epochs, random_state=seed, accelerator="cpu",
                                          progress_bar=False, validation_size=0.1, test_size=0,
                                          **{**MODEL_KW, "latent_dim": 16, "input_dropout": 0.7}))
    rna_only = MuData({"rna": query.mod["rna"].copy()})
    mx.tl.predict_modality(rna_only, models, source="rna", target="adt")
    pred = dense(rna_only.mod["adt_from_rna"].X)
    proteins = list(rna_only.mod["adt_from_rna"].var_names)
    truth = dense(query.mod["adt"][:, proteins].X)
    single = MuData({"rna": query.mod["rna"].copy()})
    mx.tl.predict_modality(single, models[0], source="rna", target="adt")
    return {"ensemble": mean_pearson(truth, pred), "single": mean_pearson(truth, dense(single.mod["adt_from_rna"].X)),
            **protein_peers(reference, query, proteins, truth), "members": members, "epochs": epochs}


def protein_peers(reference, query, proteins: list[str], truth: np.ndarray) -> dict:
    """Ridge (alpha by 5-fold CV on the reference) and kNN (k=15, RNA PCA of the reference) from RNA to protein."""
    from sklearn.linear_model import RidgeCV
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_ref, x_query = dense(reference.mod["rna"].X), dense(query.mod["rna"].X)
    y_ref = dense(reference.mod["adt"][:, proteins].X)
    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 5, 13), cv=5)).fit(x_ref, y_ref)
    knn = make_pipeline(StandardScaler(), PCA(n_components=50, random_state=0),
                        KNeighborsRegressor(n_neighbors=15, weights="distance")).fit(x_ref, y_ref)
    return {"ridge": mean_pearson(truth, ridge.predict(x_query)), "ridge_alpha": float(ridge[-1].alpha_),
            "knn": mean_pearson(truth, knn.predict(x_query))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--adapt-epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--scanvi-epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n-models", type=int, default=1,
                        help="ours: transfer_labels(n_models=...), cross-fitted on that many reference folds")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--protein-members", type=int, default=5)
    parser.add_argument("--protein-epochs", type=int, default=200)
    parser.add_argument("--reuse-protein", action="store_true",
                        help="with --protein-members 0: keep the protein-from-RNA result of the transfer.json already "
                             "in the results folder (that part does not depend on transfer_labels)")
    parser.add_argument("--protein-only", action="store_true",
                        help="rerun only the protein-from-RNA part into the existing report NAME.json")
    parser.add_argument("--rna-only", action="store_true",
                        help="query with its RNA alone (ours: the single-modality default; kNN on the RNA PCA)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default=None,
                        help="report name: writes benchmarks/results/NAME.{md,json} (default transfer, or "
                             "transfer_rna_only with --rna-only)")
    parser.add_argument("--report", action="store_true",
                        help="rebuild the summary (bootstrap intervals) and NAME.md from NAME.json")
    args = parser.parse_args()
    if args.name is None:
        args.name = "transfer_rna_only" if args.rna_only else "transfer"
    if args.report:
        results = json.loads((RESULTS / f"{args.name}.json").read_text())
        summarise(results)
        (RESULTS / f"{args.name}.json").write_text(json.dumps(results))
        write_report(results)
        return
    torch.set_num_threads(args.threads)
    data_dir = DATA if DATA.exists() else None
    data = {"cite": mx.datasets.bmmc_cite(data_dir=data_dir), "multiome": mx.datasets.bmmc_multiome(data_dir=data_dir)}
    results: dict = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                     "model_kwargs": MODEL_KW, "runs": {}}
    if args.reuse_protein and args.protein_members == 0 and (RESULTS / "transfer.json").exists():
        earlier = json.loads((RESULTS / "transfer.json").read_text()).get("protein_from_rna")
        if earlier is not None:
            results["protein_from_rna"] = {**earlier, "reused": True}
    splits = {}
    for name, mdata in data.items():
        for ref_batch, query_batch in (("s1d1", "s1d2"), ("s1d2", "s1d1")):
            batch = mdata.obs["batch"].astype(str).to_numpy()
            reference, query = mdata[batch == ref_batch].copy(), mdata[batch == query_batch].copy()
            y_ref = reference.obs[LABEL_KEY].astype(str).to_numpy()
            y_query = query.obs[LABEL_KEY].astype(str).to_numpy()
            del query.obs[LABEL_KEY]
            if args.rna_only:
                rna = query.mod["rna"].copy()
                rna.obs = rna.obs.drop(columns=[LABEL_KEY], errors="ignore")
                query = MuData({"rna": rna})
            config = f"{name} {ref_batch}->{query_batch}"
            splits[config] = (name, reference, query, y_ref, y_query)
            results["runs"][config] = {"n_reference": reference.n_obs, "n_query": query.n_obs,
                                       "novel_fraction": float(np.mean(~np.isin(y_query, list(set(y_ref))))),
                                       "reference_types": sorted(set(y_ref)), "y_query": y_query.tolist(),
                                       "seeds": {}}
    if args.protein_only:
        _, reference, query, _, _ = splits["cite s1d1->s1d2"]
        results = json.loads((RESULTS / f"{args.name}.json").read_text())
        t0 = time.perf_counter()
        results["protein_from_rna"] = {**protein_from_rna(reference, query, members=args.protein_members,
                                                          epochs=args.protein_epochs),
                                       "seconds": time.perf_counter() - t0, "protein_only": True}
        print("protein", results["protein_from_rna"], flush=True)
        (RESULTS / f"{args.name}.json").write_text(json.dumps(results))
        write_report(results)
        return
    for seed in range(args.seeds):
        for config, (name, reference, query, y_ref, y_query) in splits.items():
            known = set(y_ref)
            run = {}
            for method in METHODS:
                # scanpy's neighbour graph (ingest) resets the process's OpenMP thread count, torch's included
                torch.set_num_threads(args.threads)
                t0 = time.perf_counter()
                extra = {}
                if method == "ours":
                    pred, conf, extra = run_ours(reference, query, epochs=args.epochs, adapt_epochs=args.adapt_epochs,
                                                 lr=args.lr, seed=seed, n_models=args.n_models)
                elif method == "knn":
                    pred, conf = run_knn(reference, query, ["rna"] if name == "multiome" or args.rna_only
                                         else list(reference.mod), y_ref, seed)
                elif method == "scanvi":
                    pred, conf = run_scanvi(reference, query, y_ref, args.scanvi_epochs, seed)
                elif method == "celltypist":
                    pred, conf = run_celltypist(reference, query, y_ref, seed)
                else:
                    pred, conf = run_ingest(reference, query, y_ref, seed)
                match = np.asarray(extra["match_score"]) if "match_score" in extra else None
                run[method] = {**metrics(y_query, pred, conf, known, match), "seconds": time.perf_counter() - t0,
                               "prediction": list(map(str, pred)), "confidence": conf.astype(float).tolist(),
                               **extra}
                print(seed, config, method, {k: round(v, 3) for k, v in run[method].items()
                                             if isinstance(v, float)}, flush=True)
            results["runs"][config]["seeds"][str(seed)] = run
        if seed == 0 and args.protein_members > 0:
            _, reference, query, _, _ = splits["cite s1d1->s1d2"]
            t0 = time.perf_counter()
            results["protein_from_rna"] = {**protein_from_rna(reference, query, members=args.protein_members,
                                                              epochs=args.protein_epochs),
                                           "seconds": time.perf_counter() - t0}
            print("protein", results["protein_from_rna"], flush=True)
        summarise(results)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{args.name}.json").write_text(json.dumps(results))
        write_report(results)


def summarise(results: dict) -> None:
    """Means over seeds and the paired bootstrap of ours minus the best peer, per configuration."""
    n_boot = results["args"]["bootstrap"]
    for r in results["runs"].values():
        seeds = r["seeds"]
        if not seeds:
            continue
        y = np.asarray(r["y_query"])
        summary = {}
        for method in METHODS:
            per = [s[method] for s in seeds.values()]
            summary[method] = {q: [p[q] for p in per] for q in ("accuracy", "macro_f1", "novel_auroc", "ece",
                                                                 "seconds")}
        r["summary"] = summary
        peers = [m for m in METHODS if m != "ours"]
        shared = sorted(set(r["reference_types"]) & set(y))

        def acc(yy, pp):
            return float(np.mean(yy == pp))

        def f1(yy, pp, shared=shared):
            return float(f1_score(yy, pp, labels=shared, average="macro", zero_division=0))

        boot = {}
        for q, fn in (("accuracy", acc), ("macro_f1", f1)):
            best = max(peers, key=lambda m: np.mean(summary[m][q]))
            ours = [np.asarray(s["ours"]["prediction"]) for s in seeds.values()]
            peer = [np.asarray(s[best]["prediction"]) for s in seeds.values()]
            boot[q] = {"best_peer": best, **bootstrap_difference(y, ours, peer, fn, n_boot, 0)}
        known_types = set(r["reference_types"])

        def auroc(yy, conf, known_types=known_types):
            novel = ~np.isin(yy, list(known_types))
            return float(roc_auc_score(novel, 1 - conf)) if 0 < novel.sum() < len(yy) else float("nan")

        if (~np.isin(y, list(known_types))).any() and "knn" in summary:
            ours = [np.asarray(s["ours"].get("match_score", s["ours"]["confidence"])) for s in seeds.values()]
            peer = [np.asarray(s["knn"]["confidence"]) for s in seeds.values()]
            boot["novel_auroc"] = {"best_peer": "knn", **bootstrap_difference(y, ours, peer, auroc, n_boot, 0)}
        known_cells = np.isin(y, list(known_types))
        if known_cells.any():
            def ece(yy, pair, known_types=known_types):  # pair: (predictions, confidences) of one seed
                pred, conf = pair
                keep = np.isin(yy, list(known_types))
                return expected_calibration_error(conf[keep], pred[keep] == yy[keep])

            lowest = min(peers, key=lambda m: np.mean(summary[m]["ece"]))
            ours = [(np.asarray(s["ours"]["prediction"]), np.asarray(s["ours"]["confidence"])) for s in seeds.values()]
            peer = [(np.asarray(s[lowest]["prediction"]), np.asarray(s[lowest]["confidence"]))
                    for s in seeds.values()]
            boot["ece"] = {"best_peer": lowest, **bootstrap_difference(y, ours, peer, ece, n_boot, 0)}
        r["bootstrap"] = boot


def fmt(values) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "n/a"
    return f"{np.mean(values):.3f}" + (f" ± {np.std(values):.3f}" if len(values) > 1 else "")


def write_report(results: dict) -> None:
    args = argparse.Namespace(**results["args"])
    rna_only = getattr(args, "rna_only", False)
    default_name = "transfer_rna_only" if rna_only else "transfer"
    n_seeds = max(len(r["seeds"]) for r in results["runs"].values())
    lines = ["# Annotation transfer on the BMMC starter data, both directions"
             + (": RNA-only queries" if rna_only else ""), "",
             f"Command: `python benchmarks/transfer.py --seeds {args.seeds} --epochs {args.epochs} --adapt-epochs "
             f"{args.adapt_epochs} --lr {args.lr:g} --scanvi-epochs {args.scanvi_epochs} --bootstrap {args.bootstrap} "
             f"--protein-members {args.protein_members} --protein-epochs {args.protein_epochs}"
             f"{' --reuse-protein' if getattr(args, 'reuse_protein', False) else ''}"
             f"{f' --n-models {args.n_models}' if getattr(args, 'n_models', 1) > 1 else ''}"
             f"{' --rna-only' if rna_only else ''}"
             f"{f' --name {args.name}' if args.name != default_name else ''}` "
             f"({args.threads} CPU thread; {n_seeds} seed(s) finished when this file was written).", "",
             "Mean ± sd over seeds (seeds 0, 1, ...; CellTypist and ingest are deterministic; the others, kNN's "
             "randomised PCA included, are seeded). Accuracy over all "
             "query cells; macro-F1 over the types present in reference and query; novel AUROC of 1 - the score "
             "each method flags unknown cells by (ours: its match score, the mean of the confidence and the share "
             "of the 15 nearest reference cells carrying the predicted type; peers: their confidence) for query "
             "cells of types absent from the reference vs the rest; ECE (10 bins) of the confidence on query "
             "cells of reference types. Ours: confidence calibrated by temperature scaling on held-out reference "
             "cells; peers: their own probabilities. Nothing is tuned on the query.", ""]
    if "earlier" in results:
        lines += [results["earlier"], ""]
    for config, r in results["runs"].items():
        if "summary" not in r:
            continue
        s = r["summary"]
        lines += [f"## {config}: {r['n_reference']} reference, {r['n_query']} query cells, "
                  f"{100 * r['novel_fraction']:.0f} % of query cells of types absent from the reference", "",
                  "| method | accuracy | macro-F1 (shared types) | novel AUROC | ECE (known types) | s |",
                  "|---|---|---|---|---|---|"]
        for m in METHODS:
            label = ("ours (transfer_labels on the RNA-only query)" if m == "ours" and rna_only else LABELS[m])
            label += f", n_models={args.n_models}" if m == "ours" and getattr(args, "n_models", 1) > 1 else ""
            lines.append(f"| {label} | {fmt(s[m]['accuracy'])} | {fmt(s[m]['macro_f1'])} | "
                         f"{fmt(s[m]['novel_auroc'])} | {fmt(s[m]['ece'])} | {np.mean(s[m]['seconds']):.0f} |")
        b = r["bootstrap"]
        lines += ["", "Ours minus the best peer, paired bootstrap over query cells (95 % interval; seed-averaged): "
                  + "; ".join(f"{q.replace('_', '-')} vs {LABELS[v['best_peer']]}: {v['difference']:+.3f} "
                              f"[{v['low']:+.3f}, {v['high']:+.3f}]" for q, v in b.items()) + "."]
        ours = [x["ours"] for x in r["seeds"].values()]
        y = np.asarray(r["y_query"])
        novel = ~np.isin(y, r["reference_types"])
        flagged_known = np.mean([np.mean(np.asarray(o["unknown"])[~novel]) for o in ours])
        flagged_novel = (np.mean([np.mean(np.asarray(o["unknown"])[novel]) for o in ours]) if novel.any()
                         else float("nan"))
        lines += ["", f"Ours, on the reference side (means over seeds): temperature "
                  f"{np.mean([o['temperature'] for o in ours]):.2f}, ECE on held-out reference cells "
                  f"{np.mean([o['reference_ece_before'] for o in ours]):.3f} before and "
                  f"{np.mean([o['reference_ece_after'] for o in ours]):.3f} after scaling, leave-one-type-out AUROC "
                  f"{np.mean([o['reference_loto_auroc'] for o in ours]):.3f}"
                  + (f" (of the confidence alone "
                     f"{np.mean([o['reference_loto_auroc_confidence'] for o in ours]):.3f})"
                     if "reference_loto_auroc_confidence" in ours[0] else "")
                  + ", unknown threshold "
                  f"{np.mean([o['unknown_threshold'] for o in ours]):.2f}"
                  + (f" (on the {ours[0]['unknown_score']})" if "unknown_score" in ours[0] else "")
                  + (f". Novel AUROC of ours' 1 - confidence on the query: "
                     f"{fmt([x['ours'].get('novel_auroc_confidence', float('nan')) for x in r['seeds'].values()])}"
                     if "match_score" in ours[0] else "")
                  + ". On the query: "
                  f"{100 * flagged_known:.0f} % of known-type cells and {100 * flagged_novel:.0f} % of novel-type "
                  "cells flagged unknown.", ""]
    if "protein_from_rna" in results:
        p = results["protein_from_rna"]
        lines += ["## Protein from RNA (CITE-seq, s1d1 -> s1d2 query cells)", "",
                  f"`mx.tl.predict_modality` with {p['members']} translation-mode UnitedNets "
                  f"(seeds 0-{p['members'] - 1}, {p['epochs']} epochs, latent 16, input dropout 0.7): mean "
                  f"per-protein Pearson **{p['ensemble']:.3f}** ({p['seconds']:.0f} s)"
                  + (f"; the first member alone {p['single']:.3f}; peers in the same run, fitted on the reference "
                     f"cells' RNA: ridge (standardised RNA, alpha {p['ridge_alpha']:g} by 5-fold CV) {p['ridge']:.3f}, "
                     f"kNN regression (k=15 in a 50-component RNA PCA) {p['knn']:.3f}" if "ridge" in p else "")
                  + "."
                  + (" Not rerun here (`--reuse-protein`): kept from the previous run's transfer.json; this part "
                     "does not use transfer_labels." if p.get("reused") else "")
                  + (f" Run on its own after the rest: `python benchmarks/transfer.py --protein-only --protein-members "
                     f"{p['members']} --protein-epochs {p['epochs']}`." if p.get("protein_only") else ""), ""]
    (RESULTS / f"{getattr(args, 'name', 'transfer')}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
