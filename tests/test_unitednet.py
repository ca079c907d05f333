"""UnitedNet: learning on planted data, cross-modal prediction, transfer, round trips and errors."""

from __future__ import annotations

import logging
import warnings

import mudata
import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData
from mudata import MuData
from sklearn.metrics import adjusted_rand_score

import multiomix as mx
from multiomix.models import UnitedNet
from multiomix.nn.unitednet import (
    CosinePrototypeHeads,
    UnitedNetwork,
    contrastive_loss,
    ddc_loss,
    reconstruction_translation_loss,
    refine_prototypes,
    self_entropy_loss,
)

warnings.filterwarnings("ignore")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
logging.getLogger("lightning").setLevel(logging.ERROR)

QUIET = {"enable_progress_bar": False}


def planted(n: int = 240, k: int = 4, seed: int = 0, shift: float = 0.0) -> MuData:
    """Three paired modalities driven by one latent with ``k`` planted groups; ``atac`` is binary."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    centers = np.random.default_rng(100).normal(0, 2.0, (k, 6))
    z = centers[labels] + rng.normal(0, 0.5, (n, 6))
    wr, wa, wt = (np.random.default_rng(101 + i).normal(0, 1, (6, d)) for i, d in enumerate((60, 20, 40)))
    rna = z @ wr + rng.normal(0, 1.0, (n, 60)) + shift
    adt = np.tanh(z @ wa / 3) * 3 + rng.normal(0, 0.3, (n, 20))
    atac = ((z @ wt) / 2 + rng.logistic(0, 1, (n, 40)) > 0).astype(np.float32)
    obs = pd.DataFrame(index=[f"c{seed}_{i}" for i in range(n)])
    mods = {
        "rna": AnnData(rna.astype(np.float32), obs=obs.copy(), var=pd.DataFrame(index=[f"g{i}" for i in range(60)])),
        "adt": AnnData(adt.astype(np.float32), obs=obs.copy(), var=pd.DataFrame(index=[f"p{i}" for i in range(20)])),
        "atac": AnnData(atac, obs=obs.copy(), var=pd.DataFrame(index=[f"peak{i}" for i in range(40)])),
    }
    mdata = MuData(mods)
    mdata.obs["group"] = pd.Categorical([f"type{c}" for c in labels])
    return mdata


def r2(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(1 - ((truth - pred) ** 2).sum() / ((truth - truth.mean(0)) ** 2).sum())


@pytest.fixture(scope="module")
def supervised():
    mdata = planted()
    rng = np.random.default_rng(0)
    mdata.obs["split"] = rng.choice(["train", "validation", "test"], p=[0.6, 0.15, 0.25], size=mdata.n_obs)
    model = mx.tl.fit_unitednet(mdata, label_key="group", max_epochs=25, latent_dim=16, hidden=(64,),
                                n_heads=3, projection_dim=32, accelerator="cpu", progress_bar=False)
    return mdata, model


# nn ----------------------------------------------------------------------------------------------------------------


def test_nn_shapes_and_fusion_mask():
    net = UnitedNetwork(in_features={"a": 10, "b": 7}, latent_dim=8, hidden=(16,), n_classes=3, n_heads=2,
                        projection_dim=12, fuser="feature")
    x = {"a": torch.randn(5, 10), "b": torch.randn(5, 7)}
    z = net.encode(x)
    dec = net.decode(z)
    assert dec["a"].shape == (2, 5, 10) and dec["b"].shape == (2, 5, 7)
    out = net.classify(z)
    assert out["logits"].shape == (2, 5, 3) and out["fused"].shape == (2, 5, 8)
    # with only modality a present, the fused latent is a's latent (weights renormalised over present ones)
    only_a = net.classify({"a": z["a"]})
    torch.testing.assert_close(only_a["fused"][0], z["a"])
    heads = CosinePrototypeHeads(n_modalities=2, latent_dim=4, projection_dim=6, n_classes=3, n_heads=2)
    torch.testing.assert_close(heads.fusion_weights(), torch.full((2, 2), 0.5))


def test_diverse_fusion_init_favours_one_modality_per_head():
    heads = CosinePrototypeHeads(n_modalities=3, latent_dim=4, projection_dim=6, n_classes=3, n_heads=5,
                                 fusion_init="diverse")
    w = heads.fusion_weights()
    assert [int(i) for i in w[:3].argmax(1)] == [0, 1, 2] and float(w[0, 0]) > 0.75
    torch.testing.assert_close(w[3:], torch.full((2, 3), 1 / 3))
    # with fewer heads than modalities, one head stays uniform
    few = CosinePrototypeHeads(n_modalities=3, latent_dim=4, projection_dim=6, n_classes=3, n_heads=2,
                               fusion_init="diverse", fuser="feature").fusion_weights()
    assert float(few[0, 0].min()) > 0.75
    torch.testing.assert_close(few[1], torch.full((3, 4), 1 / 3))
    with pytest.raises(ValueError, match="fusion_init"):
        CosinePrototypeHeads(n_modalities=2, latent_dim=4, projection_dim=6, n_classes=3, fusion_init="random")


def test_refine_prototypes_moves_prototypes_to_their_cells():
    gen = torch.Generator().manual_seed(0)
    truth = torch.eye(3, 8) * 3  # three planted directions in an 8-d projection
    labels = torch.arange(3).repeat_interleave(40)
    hidden = (truth[labels] + 0.5 * torch.randn(120, 8, generator=gen))[None]  # one head
    # prototypes start between the clusters, plus one that no cell prefers
    start = torch.stack([truth[0] + truth[1], truth[1] + truth[2], truth[2] + 0.8 * truth[0], -truth.sum(0)])
    refined = refine_prototypes(hidden, start[None])[0]
    unit = torch.nn.functional.normalize
    assert bool(((unit(truth, dim=-1) @ unit(refined[:3], dim=-1).T).amax(1) > 0.95).all())
    assign = (hidden[0] @ unit(refined, dim=-1).T).argmax(-1)
    before = (hidden[0] @ unit(start, dim=-1).T).argmax(-1)
    assert adjusted_rand_score(labels, before) < 0.6 < 0.95 < adjusted_rand_score(labels, assign)
    torch.testing.assert_close(refined[3], start[3])  # no cells: unchanged
    with pytest.raises(ValueError, match="same heads and dim"):
        refine_prototypes(hidden, start[None, :, :4])


def test_losses_prefer_the_right_answer():
    torch.manual_seed(0)
    h = torch.cat([torch.randn(10, 4) - 4, torch.randn(10, 4) + 4])
    good = torch.cat([torch.tensor([[0.95, 0.05]] * 10), torch.tensor([[0.05, 0.95]] * 10)])
    assert ddc_loss(h, good) < ddc_loss(h, torch.full_like(good, 0.5))
    assert ddc_loss(h, good) < ddc_loss(h, good[torch.randperm(20)])
    assert self_entropy_loss(good) < self_entropy_loss(torch.tensor([[0.95, 0.05]] * 20))
    z = torch.randn(1, 16, 8)
    aligned = torch.cat([z, z + 0.01 * torch.randn_like(z)])
    assert contrastive_loss(aligned) < contrastive_loss(torch.cat([z, torch.randn_like(z)]))
    # masking same-group negatives removes them from the denominator
    groups = torch.zeros(16, dtype=torch.long)
    assert contrastive_loss(aligned, groups=groups) < 1e-4


def test_binary_targets_are_decoded_at_each_cells_depth():
    # two cells, one with 4 open peaks and one with 1: the offsets are log(4 / 2) and log(1 / 2) around the
    # minibatch's geometric mean depth (2); continuous targets get none
    x = {"atac": torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]]), "rna": torch.randn(2, 3)}
    decoded = {"atac": torch.zeros(1, 2, 4), "rna": torch.zeros(1, 2, 3)}
    binary = {"atac": True, "rna": False}
    rec, _, pairs = reconstruction_translation_loss(x, decoded, ["atac"], binary)
    offset = torch.log(torch.tensor([[2.0], [0.5]]))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(offset.expand(2, 4), x["atac"])
    torch.testing.assert_close(pairs["atac->atac"], expected)
    torch.testing.assert_close(pairs["atac->rna"], (x["rna"] ** 2).mean())
    # here the offsets move each cell's logits towards its own open rate, so the loss falls
    plain = torch.nn.functional.binary_cross_entropy_with_logits(torch.zeros(2, 4), x["atac"])
    assert pairs["atac->atac"] < plain


# model ---------------------------------------------------------------------------------------------------------------


def test_supervised_learns_and_writes(supervised):
    mdata, model = supervised
    test = (mdata.obs["split"] == "test").to_numpy()
    acc = (mdata.obs["unitednet_prediction"].astype(str) == mdata.obs["group"].astype(str))[test].mean()
    assert acc > 0.9
    assert mdata.obsm["X_unitednet"].shape == (mdata.n_obs, 16)
    assert mdata.obsm["unitednet_proba"].shape == (mdata.n_obs, 4)
    assert list(mdata.obs["unitednet_prediction"].cat.categories) == ["type0", "type1", "type2", "type3"]
    assert 0 <= mdata.obs["unitednet_confidence"].min() <= mdata.obs["unitednet_confidence"].max() <= 1
    info = mdata.uns["unitednet"]
    assert info["test_metrics"]["accuracy"] == pytest.approx(acc)
    assert "baseline" in info and info["best_head"] == model.best_head
    assert info["n_test"] == test.sum()
    assert model.module.binary == {"rna": False, "adt": False, "atac": True}
    # linear skip maps only towards continuous targets (none, and no memory, for the binary atac)
    net = model.module.net
    assert net.skip_targets == ["rna", "adt"]
    assert "skip_weight_0_1" in net.state_dict() and "skip_weight_0_2" not in net.state_dict()
    assert torch.equal(net.skip_blend("rna", "atac"), torch.ones(mdata.mod["atac"].n_vars))
    blend = net.skip_blend("rna", "adt")  # one decoder weight per target feature, on the grid 0, 0.1, ..., 1
    assert blend.shape == (mdata.mod["adt"].n_vars,) and bool(((blend >= 0) & (blend <= 1)).all())
    assert torch.allclose(blend * 10, (blend * 10).round())
    # the search over validation rows in small chunks (as on large data) chooses the same blends
    validation = np.flatnonzero(mdata.obs["split"] == "validation")
    model._choose_skip_blend(validation)  # all rows in one chunk (on the maps as refitted after the fit's choice)
    chosen = {(s, t): net.skip_blend(s, t).clone() for s in model.modalities for t in net.skip_targets}
    model._blend_chunk_elements = 11 * max(len(v) for v in model.feature_names_.values()) * 3  # 3 rows a chunk
    model._choose_skip_blend(validation)
    for (s, t), before in chosen.items():
        assert torch.equal(net.skip_blend(s, t), before), (s, t)
    hist = info["history"]
    assert hist["train_translation"].iloc[-1] < hist["train_translation"].iloc[0]
    assert hist["train_classification_loss"].iloc[-1] < hist["train_classification_loss"].iloc[0]
    # standardisation used training rows only
    train = (mdata.obs["split"] == "train").to_numpy()
    np.testing.assert_allclose(model.module.standardizer.mean0.numpy(), mdata.mod["rna"].X[train].mean(0),
                               rtol=1e-4, atol=1e-4)


def test_validation_group_loss_is_the_class_weighted_mean_over_all_validation_rows():
    """Over several validation batches the logged group loss (which chooses the head and the epoch) is the
    class-weighted cross-entropy of all validation rows, whatever the batch size."""
    from scvi import REGISTRY_KEYS

    mdata = planted(n=200, k=3)
    rare = np.flatnonzero(mdata.obs["group"] != "type0")[40:]  # imbalanced: class weights differ
    mdata = mdata[np.setdiff1d(np.arange(mdata.n_obs), rare)].copy()
    UnitedNet.setup_mudata(mdata, label_key="group")
    model = UnitedNet(mdata, mode="supervised", latent_dim=8, hidden=(16,), n_heads=3, projection_dim=8)
    rows = np.random.default_rng(0).permutation(mdata.n_obs)
    validation, train = np.sort(rows[:40]), np.sort(rows[40:])
    model.train(1, train_indices=train, validation_indices=validation, batch_size=16, accelerator="cpu",
                progress_bar=False)
    module = model.module.eval()
    assert float(module.class_weight.max() / module.class_weight.min()) > 2
    xs = module.standardize({m: torch.as_tensor(np.asarray(model._matrix(m)), dtype=torch.float32)[validation]
                             for m in model.modalities})
    labels = torch.as_tensor(model.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY)).long()[validation]
    with torch.no_grad():
        per_head = module.head_losses(xs, labels)  # one batch of all validation rows
    logged = float(model.history["validation_group_loss"].iloc[-1, 0])
    assert logged == pytest.approx(float(per_head.min()), rel=1e-5)
    assert model.best_head == int(per_head.argmin())
    # one validation row of the most frequent class: its class weight (below 1) is the whole denominator
    common = int(module.class_weight.argmin())
    row = validation[labels.numpy().ravel() == common][:1]
    assert float(module.class_weight[common]) < 1
    one = UnitedNet(mdata, mode="supervised", latent_dim=8, hidden=(16,), n_heads=3, projection_dim=8)
    one.train(1, train_indices=train, validation_indices=row, accelerator="cpu", progress_bar=False)
    one.module.eval()
    all_labels = torch.as_tensor(one.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY)).long()
    xs_one = one.module.standardize({m: torch.as_tensor(np.asarray(one._matrix(m)), dtype=torch.float32)[row]
                                     for m in one.modalities})
    with torch.no_grad():
        expected = float(one.module.head_losses(xs_one, all_labels[row]).min())
    assert float(one.history["validation_group_loss"].iloc[-1, 0]) == pytest.approx(expected, rel=1e-5)


def test_translation_from_source_only(supervised):
    mdata, model = supervised
    test = (mdata.obs["split"] == "test").to_numpy()
    query = MuData({"rna": mdata.mod["rna"][test].copy()})
    pred = model.translate(query, source="rna", target="adt")
    truth = mdata.mod["adt"].X[test]
    assert pred.shape == truth.shape
    assert r2(truth, pred) > 0.5
    atac = model.translate(query, source="rna", target="atac")
    assert atac.min() >= 0 and atac.max() <= 1  # probabilities for the binary modality
    # features are matched by name: a shuffled source gives the same prediction
    shuffled = query.mod["rna"][:, np.random.default_rng(1).permutation(60)].copy()
    np.testing.assert_allclose(model.translate(shuffled, source="rna", target="adt"), pred, rtol=1e-5, atol=1e-5)
    mx.tl.predict_modality(query, model, source="rna", target="adt")
    assert "adt_from_rna" in query.mod
    assert list(query.mod["adt_from_rna"].var_names) == list(mdata.mod["adt"].var_names)
    np.testing.assert_allclose(query.mod["adt_from_rna"].X, pred, rtol=1e-6)
    # target feature names that already exist in the MuData (e.g. CD4 gene and CD4 protein)
    overlap = MuData({"rna": query.mod["rna"].copy(),
                      "other": AnnData(np.zeros((query.n_obs, 2), np.float32), obs=query.mod["rna"].obs[[]],
                                       var=pd.DataFrame(index=["p0", "p1"]))})
    with warnings.catch_warnings(record=True) as caught:  # mudata's update notices stay inside
        warnings.simplefilter("always")
        mx.tl.predict_modality(overlap, model, source="rna", target="adt")
        mx.tl.predict_modality(overlap, model, source="rna", target="adt")  # again: replaced
    assert not [str(w.message) for w in caught if "mudata" in w.filename or "update" in str(w.message)]
    assert list(overlap.mod["adt_from_rna"].var_names) == list(mdata.mod["adt"].var_names)
    np.testing.assert_allclose(overlap.mod["adt_from_rna"].X, pred, rtol=1e-6)
    with pytest.raises(KeyError, match="lacks 1 of the 60"):
        model.translate(query.mod["rna"][:, 1:].copy(), source="rna", target="adt")
    with pytest.raises(KeyError, match="not found in the MuData"):
        model.translate(query, source="adt", target="rna")


def test_a_predicted_modality_is_left_out_of_later_fits_unless_named(supervised, tmp_path, caplog):
    """predict_modality records what it wrote; a later fit with ``modalities=None`` reads only the measured
    modalities (logged), the record survives ``write_h5mu``, and naming the prediction still uses it."""
    mdata, model = supervised
    query = MuData({"rna": mdata.mod["rna"][:80].copy()})
    mx.tl.predict_modality(query, model, source="rna", target="adt")
    assert query.mod["adt_from_rna"].uns["predict_modality"] == {"source": "rna", "target": "adt", "n_models": 1}
    query.write_h5mu(tmp_path / "query.h5mu")
    query = mudata.read_h5mu(tmp_path / "query.h5mu")
    pca = {"n_comps": 5, "layer": None, "kinds": {"rna": "scaled", "adt_from_rna": "scaled"}}
    with caplog.at_level(logging.INFO, logger="multiomix"):
        mx.tl.pca_concat(query, **pca)
    assert list(query.uns["pca_concat"]["kinds"]) == ["rna"]
    assert "leaving out ['adt_from_rna'], written by predict_modality" in caplog.text
    mx.tl.pca_concat(query, modalities=["rna", "adt_from_rna"], key_added="X_both", **pca)
    assert list(query.uns["both"]["kinds"]) == ["rna", "adt_from_rna"]
    assert list(query.uns["pca_concat"]["kinds"]) == ["rna"]  # the first embedding's record is kept


def test_predict_modality_averages_an_ensemble(supervised):
    mdata, model = supervised
    test = (mdata.obs["split"] == "test").to_numpy()
    fit = {"mode": "translation", "modalities": ["rna", "adt"], "max_epochs": 5, "latent_dim": 8, "hidden": (32,),
           "accelerator": "cpu", "progress_bar": False}
    # no linear skip: on this planted linear map both models would otherwise choose the same pure ridge blend
    copy = mdata.copy()
    other = mx.tl.fit_unitednet(copy, random_state=1, linear_skip=False, **fit)
    # translation fits store per-feature Pearson / R^2 on the test rows
    metrics = copy.uns["unitednet"]["test_metrics"]
    assert set(metrics) == {"rna->adt", "adt->rna"}
    assert metrics["rna->adt"]["per_feature"].shape == (20, 2)
    test_rows = (copy.obs["split"] == "test").to_numpy()
    pred = other.translate(copy.mod["rna"][test_rows], source="rna", target="adt")
    truth = copy.mod["adt"].X[test_rows]
    expected = [np.corrcoef(pred[:, j], truth[:, j])[0, 1] for j in range(20)]
    np.testing.assert_allclose(metrics["rna->adt"]["per_feature"]["pearson"], expected, rtol=1e-4, atol=1e-6)
    assert metrics["rna->adt"]["mean_pearson"] == pytest.approx(np.mean(expected), rel=1e-4)
    query = MuData({"rna": mdata.mod["rna"][test].copy()})
    members = [m.translate(query, source="rna", target="adt") for m in (model, other)]
    assert np.abs(members[0] - members[1]).max() > 1e-3  # two different members
    mx.tl.predict_modality(query, [model, other], source="rna", target="adt")
    np.testing.assert_allclose(query.mod["adt_from_rna"].X, (members[0] + members[1]) / 2, rtol=1e-5, atol=1e-6)
    fewer = mdata.copy()
    fewer.mod["adt"] = fewer.mod["adt"][:, :10].copy()
    fewer.update()
    mismatched = mx.tl.fit_unitednet(fewer, **fit)
    with pytest.raises(ValueError, match="Model 1 predicts other 'adt' features"):
        mx.tl.predict_modality(query, [model, mismatched], source="rna", target="adt", key_added="bad")
    assert "bad" not in query.mod
    with pytest.raises(ValueError, match="empty sequence"):
        mx.tl.predict_modality(query, [], source="rna", target="adt")
    with pytest.raises(TypeError, match="got str"):
        mx.tl.predict_modality(query, "model.pt", source="rna", target="adt")


def test_unsupervised_recovers_clusters():
    mdata = planted(n=200, seed=3)
    model = mx.tl.fit_unitednet(mdata, mode="unsupervised", n_clusters=4, label_key="group", max_epochs=30,
                                latent_dim=16, hidden=(64,), n_heads=3, projection_dim=32, accelerator="cpu",
                                progress_bar=False)
    ari = adjusted_rand_score(mdata.obs["group"], mdata.obs["unitednet_prediction"])
    assert ari > 0.7
    assert model.classes == ["0", "1", "2", "3"]
    assert mdata.uns["unitednet"]["metrics"]["train"]["ari"] > 0.7
    # the prototypes were refined on the training rows at the end of training: refining again is a fixed point
    heads = model.module.net.heads
    refined = heads.prototypes.detach().clone()
    model._refine_prototypes(np.asarray(model.train_indices))
    torch.testing.assert_close(heads.prototypes.detach(), refined)
    # the head is chosen by the silhouette of its clusters in the joint latent: a head whose projection is
    # scrambled loses the choice even when it was the best head before
    scores = model.head_silhouettes_
    assert len(scores) == 3 and model.best_head == int(np.argmax(scores))
    heads = model.module.net.heads
    with torch.no_grad():
        heads.proj_weight[model.best_head] = torch.randn_like(heads.proj_weight[model.best_head])
        heads.prototypes[model.best_head] = torch.randn_like(heads.prototypes[model.best_head])
    scrambled = model.best_head
    model._choose_cluster_head(np.arange(mdata.n_obs))
    assert model.best_head != scrambled
    assert model.head_silhouettes_[scrambled] < max(model.head_silhouettes_)


def test_continued_training_keeps_prototypes_and_blend_and_an_early_stop_waits_for_the_clusters(monkeypatch):
    """Training again keeps what the first fit chose out of sample: the cluster prototypes (no second k-means)
    and the linear skip blend (the maps were refitted on the validation rows); an early stop in unsupervised mode
    cannot end training before the first clustering epoch; bad phase options are refused."""
    from multiomix.train import UnitedNetTrainingPlan

    kmeans_epochs, blend_rows = [], []
    kmeans, choose = UnitedNetTrainingPlan._kmeans_prototypes, UnitedNet._choose_skip_blend
    monkeypatch.setattr(UnitedNetTrainingPlan, "_kmeans_prototypes",
                        lambda self: kmeans_epochs.append(self.current_epoch) or kmeans(self))
    monkeypatch.setattr(UnitedNet, "_choose_skip_blend",
                        lambda self, rows, **kw: blend_rows.append(len(rows)) or choose(self, rows, **kw))
    mdata = planted(n=150, k=3)
    UnitedNet.setup_mudata(mdata, modalities=["rna", "adt"])
    model = UnitedNet(mdata, mode="unsupervised", n_clusters=3, latent_dim=8, hidden=(16,), n_heads=2,
                      projection_dim=8)
    rows = {"train_indices": np.arange(110), "validation_indices": np.arange(110, 150), "accelerator": "cpu",
            "progress_bar": False}
    model.train(4, **rows)
    assert kmeans_epochs == [3] and blend_rows == [40]
    prototypes = model.module.net.heads.prototypes.detach().clone()
    blend = model.module.net.skip_blend("rna", "adt").clone()
    model.train(2, **rows)
    assert kmeans_epochs == [3] and blend_rows == [40]  # no second k-means, no blend chosen in sample
    torch.testing.assert_close(model.module.net.skip_blend("rna", "adt"), blend)
    assert not torch.equal(model.module.net.heads.prototypes.detach(), prototypes)  # trained on, not reset
    fresh = UnitedNet(mdata, mode="unsupervised", n_clusters=3, latent_dim=8, hidden=(16,), n_heads=2,
                      projection_dim=8)
    fresh.train(20, early_stopping=True, early_stopping_patience=1, lr=0.5, **rows)
    assert len(fresh.history["validation_loss"]) >= 16 and fresh.best_epoch_ is not None and fresh.best_epoch_ >= 15
    with pytest.raises(ValueError, match=r"lr has entries for \['translaton'\]"):
        fresh.train(1, lr={"translaton": 0.1}, **rows)
    with pytest.raises(ValueError, match="classification_repeats must be a whole number >= 1"):
        fresh.train(1, classification_repeats=0, **rows)
    fresh.train(1, classification_repeats=np.int64(2), **rows)  # any integer type
    # a first fit without validation rows leaves the blend to the first fit that has them
    blend_rows.clear()
    later = UnitedNet(mdata, mode="translation", latent_dim=8, hidden=(16,))
    later.train(2, train_indices=np.arange(110), validation_size=0, accelerator="cpu", progress_bar=False)
    assert blend_rows == [] and not getattr(later, "skip_blend_chosen_", False)
    later.train(2, **rows)
    later.train(1, **rows)
    assert blend_rows == [40] and later.skip_blend_chosen_


def test_translation_mode_error_falls_and_deterministic():
    mdata = planted(n=160, seed=4)
    fits = []
    for _ in range(2):
        m = mdata.copy()
        model = mx.tl.fit_unitednet(m, mode="translation", modalities=["rna", "adt"], max_epochs=15, latent_dim=8,
                                    hidden=(32,), test_size=0, validation_size=0.1, accelerator="cpu",
                                    progress_bar=False)
        fits.append((m, model))
    (m1, model1), (m2, _) = fits
    hist = m1.uns["unitednet"]["history"]
    assert hist["validation_translation"].min() < 0.6 * hist["validation_translation"].iloc[0]
    assert "unitednet_prediction" not in m1.obs
    np.testing.assert_array_equal(m1.obsm["X_unitednet"], m2.obsm["X_unitednet"])
    with pytest.raises(ValueError, match="does not predict classes"):
        model1.predict()
    assert "test_metrics_missing" in m1.uns["unitednet"]  # test_size=0: no test rows


def test_linear_skip_reaches_ridge_on_a_planted_linear_map():
    """With few cells and many features, a planted linear map is translated about as well as ridge finds it."""
    from sklearn.linear_model import RidgeCV

    rng = np.random.default_rng(7)
    n, p, q = 200, 150, 12
    x = rng.normal(0, 1, (n, p))
    y = x[:, :30] @ rng.normal(0, 0.3, (30, q)) + rng.normal(0, 1.0, (n, q))
    obs = pd.DataFrame(index=[f"c{i}" for i in range(n)])
    mdata = MuData({"a": AnnData(x.astype(np.float32), obs=obs.copy()),
                    "b": AnnData(y.astype(np.float32), obs=obs.copy())})
    mdata.mod["b"].var_names = [f"b{i}" for i in range(q)]
    train, val, test = np.arange(120), np.arange(120, 150), np.arange(150, n)
    ridge = RidgeCV(alphas=np.logspace(-1, 5, 13)).fit(x[train], y[train])
    r2_ridge = r2(y[test], ridge.predict(x[test]))
    scores = {}
    for skip in (True, False):
        UnitedNet.setup_mudata(mdata)
        model = UnitedNet(mdata, mode="translation", latent_dim=8, hidden=(32,), linear_skip=skip)
        model.train(8, train_indices=train, validation_indices=val, accelerator="cpu", **QUIET)
        scores[skip] = r2(y[test], model.translate(mdata[test], source="a", target="b"))
    assert scores[True] > r2_ridge - 0.03
    assert scores[True] > scores[False] + 0.05


@pytest.mark.parametrize("n, p, q, gram_above", [
    (60, 8, 3, 2000),  # LAPACK SVD, residuals from the fitted values
    (40, 80, 3, 2000),  # more features than cells
    (60, 5, 30, 2000),  # more targets than the rank: residual norms through the Gram matrix of u.T @ y
    (60, 25, 3, 10),  # SVD from the eigendecomposition of x.T @ x
    (30, 70, 40, 10),  # ... and of x @ x.T, with the residual norms through the Gram matrix
])
def test_ridge_fit_matches_ridge_cv_on_every_path(monkeypatch, n, p, q, gram_above):
    """The closed-form leave-one-out ridge picks scikit-learn's penalty and weights, whatever route it takes."""
    import functools

    from sklearn.linear_model import RidgeCV

    import multiomix.nn.unitednet as unitednet_nn

    monkeypatch.setattr(unitednet_nn, "_thin_svd", functools.partial(unitednet_nn._thin_svd, gram_above=gram_above))
    rng = np.random.default_rng(n + p + q)
    x = rng.normal(0, 1, (n, p)) * np.logspace(0, -1.5, p)  # a decaying spectrum
    y = x[:, :4] @ rng.normal(0, 1, (4, q)) + rng.normal(0, 1.5, (n, q)) + 3.0
    alphas = [10.0 ** (k / 4) for k in range(-8, 25)]
    weight, bias, alpha = unitednet_nn.ridge_fit(torch.as_tensor(x), torch.as_tensor(y), alphas)
    ridge = RidgeCV(alphas=alphas).fit(x, y)
    assert alpha == pytest.approx(ridge.alpha_)
    np.testing.assert_allclose(weight.numpy(), ridge.coef_.T, atol=1e-8)
    np.testing.assert_allclose(bias.numpy(), ridge.intercept_, atol=1e-8)


@pytest.mark.parametrize("max_cells, fits", [(500, 2), (100, 1)])
def test_linear_maps_are_refitted_on_validation_rows_only_below_the_cell_cap(monkeypatch, max_cells, fits):
    """The maps are fitted on the training rows, then refitted on training + validation rows once the blend is
    chosen, unless the training rows already fill ``linear_skip_max_cells`` (the refit would see no more rows)."""
    mdata = planted(n=200)
    calls = []
    original = UnitedNet._fit_linear_skip
    monkeypatch.setattr(UnitedNet, "_fit_linear_skip", lambda self, rows, **kw: calls.append(len(rows))
                        or original(self, rows, **kw))
    UnitedNet.setup_mudata(mdata)
    model = UnitedNet(mdata, mode="translation", latent_dim=4, hidden=(16,), linear_skip_max_cells=max_cells)
    model.train(2, train_indices=np.arange(150), validation_indices=np.arange(150, 200), accelerator="cpu", **QUIET)
    assert calls == [150, 200][:fits]


def test_save_load_and_h5mu_round_trip(supervised, tmp_path):
    mdata, model = supervised
    model.save(tmp_path / "model", overwrite=True)
    loaded = UnitedNet.load(tmp_path / "model", adata=mdata)
    assert loaded.best_head == model.best_head
    pd.testing.assert_frame_equal(loaded.predict_proba(), model.predict_proba())
    # load on new data without the label column and with features in another order: identical predictions
    new = reordered_unlabelled(mdata)
    again = UnitedNet.load(tmp_path / "model", adata=new)
    pd.testing.assert_frame_equal(again.predict_proba(), model.predict_proba())
    np.testing.assert_allclose(again.get_latent_representation(), model.get_latent_representation(), rtol=1e-6)
    np.testing.assert_allclose(loaded.translate(mdata, source="adt", target="rna"),
                               model.translate(mdata, source="adt", target="rna"), rtol=1e-6)
    rna_only = MuData({"rna": mdata.mod["rna"][:20].copy()})
    with pytest.raises(KeyError, match=r"`adata` lacks \['adt', 'atac'\].*then score the other object"):
        UnitedNet.load(tmp_path / "model", adata=rna_only)
    out = mdata.copy()
    for key in [k for k in out.obs.columns if k.startswith("_scvi")]:
        del out.obs[key]
    path = tmp_path / "out.h5mu"
    out.write_h5mu(path)
    back = mx_read(path)
    np.testing.assert_allclose(back.obsm["X_unitednet"], mdata.obsm["X_unitednet"])
    assert list(back.obs["unitednet_prediction"]) == list(mdata.obs["unitednet_prediction"])
    assert back.uns["unitednet"]["params"]["mode"] == "supervised"
    assert "train_loss" in back.uns["unitednet"]["history"].columns


def reordered_unlabelled(mdata: MuData) -> MuData:
    """The same cells as a new MuData without obs columns, every modality's features shuffled."""
    mods = {}
    for i, (name, mod) in enumerate(mdata.mod.items()):
        order = np.random.default_rng(i).permutation(mod.n_vars)
        mods[name] = AnnData(mod.X[:, order].copy(), obs=pd.DataFrame(index=mod.obs_names),
                             var=pd.DataFrame(index=mod.var_names[order]))
    return MuData(mods)


def test_new_unlabelled_data_with_reordered_features(supervised):
    mdata, model = supervised
    new = reordered_unlabelled(mdata)
    proba = model.predict_proba(new)
    pd.testing.assert_frame_equal(proba, model.predict_proba())
    np.testing.assert_allclose(proba.to_numpy(), mdata.obsm["unitednet_proba"], rtol=1e-6, atol=1e-7)
    assert list(model.predict(new)) == list(mdata.obs["unitednet_prediction"])
    np.testing.assert_allclose(model.get_latent_representation(new), mdata.obsm["X_unitednet"], rtol=1e-5, atol=1e-6)
    assert list(new.obs.columns) == [] and list(new.mod["rna"].var_names) != list(mdata.mod["rna"].var_names)


def mx_read(path):
    import mudata

    return mudata.read_h5mu(path)


def test_transfer_labels_shuffled_query_features():
    reference = planted(n=200, seed=5)
    query = planted(n=120, seed=6, shift=0.5)
    truth = query.obs["group"].astype(str).to_numpy()
    del query.obs["group"]
    order = np.random.default_rng(0).permutation(60)
    shuffled = MuData({
        "rna": query.mod["rna"][:, order].copy(), "adt": query.mod["adt"].copy(), "atac": query.mod["atac"].copy()
    })
    kwargs = {"label_key": "group", "max_epochs": 15, "adapt_epochs": 5, "latent_dim": 16, "hidden": (64,),
              "n_heads": 2, "projection_dim": 32, "accelerator": "cpu", "progress_bar": False}
    model = mx.tl.transfer_labels(reference, query, **kwargs)
    mx.tl.transfer_labels(reference, shuffled, **kwargs)
    pred = query.obs["group_transferred"].astype(str).to_numpy()
    assert (pred == truth).mean() > 0.9
    np.testing.assert_array_equal(pred, shuffled.obs["group_transferred"].astype(str).to_numpy())
    assert query.obs["group_transferred_confidence"].between(0, 1).all()
    assert query.obsm["X_group_transferred"].shape == (120, 16)
    assert query.obsm["group_transferred_proba"].shape == (120, 4)
    assert list(query.uns["group_transferred"]["classes"]) == model.classes == ["type0", "type1", "type2", "type3"]
    assert list(reference.obs.columns) == ["group"] and "X_group_transferred" not in reference.obsm  # untouched
    # reuse a trained model without adaptation, under a custom key: every output is written under it only
    before = ({k: set(getattr(query, k).keys()) for k in ("obsm", "uns")}, set(query.obs.columns))
    mx.tl.transfer_labels(reference, query, model=model, adapt_epochs=0, key_added="again")  # label_key inferred
    assert set(query.obs.columns) - before[1] == {"again", "again_confidence", "again_match_score", "again_unknown"}
    assert set(query.obsm.keys()) - before[0]["obsm"] == {"X_again", "again_proba"}
    assert set(query.uns.keys()) - before[0]["uns"] == {"again"}
    assert (query.obs["again"].astype(str).to_numpy() == truth).mean() > 0.9


def test_clear_errors(supervised):
    mdata, model = supervised
    reference = planted(n=60, seed=7)
    query = planted(n=30, seed=8)
    bad = MuData({"rna": query.mod["rna"][:, 5:].copy(), "adt": query.mod["adt"].copy(),
                  "atac": query.mod["atac"].copy()})
    with pytest.raises(KeyError, match="lacks 5 of the 60"):
        mx.tl.transfer_labels(reference, bad, label_key="group", model=model, adapt_epochs=0)
    unknown = reference.copy()
    unknown.obs["group"] = pd.Categorical(["alien"] * 30 + ["other alien"] * 30)  # no type the model knows
    with pytest.raises(ValueError, match="not trained on"):
        mx.tl.transfer_labels(unknown, query, label_key="group", model=model, adapt_epochs=0)
    unknown.obs["group"] = pd.Categorical(["type0"] * 30 + ["alien"] * 30)  # some: those cells are left out
    mx.tl.transfer_labels(unknown, query, label_key="group", model=model, adapt_epochs=0, key_added="known")
    assert list(query.uns["known"]["classes"]) == list(model.classes) and unknown.n_obs == 60
    UnitedNet.setup_mudata(reference, label_key="group")
    with pytest.raises(ValueError, match="cluster_head_choice"):
        UnitedNet(reference, mode="unsupervised", cluster_head_choice="best")
    with pytest.raises(ValueError, match="head_fusion_init"):
        UnitedNet(reference, mode="unsupervised", head_fusion_init="random")
    single = MuData({"rna": reference.mod["rna"].copy()})
    single.obs["group"] = reference.obs["group"].values
    with pytest.raises(ValueError, match="at least two modalities"):
        mx.tl.fit_unitednet(single, label_key="group")
    with pytest.raises(KeyError, match="nope"):
        mx.tl.fit_unitednet(reference, label_key="nope")
    nolabel = planted(n=60, seed=7)
    del nolabel.obs["group"]
    with pytest.raises(ValueError, match="label_key"):
        mx.tl.fit_unitednet(nolabel, mode="supervised")
    broken = planted(n=60, seed=7)
    broken.mod["rna"].X[0, 0] = np.nan
    before = set(broken.obs.columns), set(broken.uns.keys()), set(broken.obsm.keys())
    with pytest.raises(ValueError, match="rna"):
        mx.tl.fit_unitednet(broken, label_key="group", max_epochs=1)
    assert (set(broken.obs.columns), set(broken.uns.keys()), set(broken.obsm.keys())) == before  # untouched
    with pytest.raises(ValueError, match="mode"):
        mx.tl.fit_unitednet(reference, label_key="group", mode="nonsense", max_epochs=1)
    with pytest.raises(KeyError, match="Source modality"):
        mx.tl.predict_modality(MuData({"adt": query.mod["adt"].copy()}), model, source="rna", target="adt")


def test_sparse_input_matches_dense():
    from scipy import sparse

    dense = planted(n=120, seed=9)
    sp = dense.copy()
    sp.mod["rna"].X = sparse.csr_matrix(sp.mod["rna"].X)
    sp.mod["atac"].X = sparse.csc_matrix(sp.mod["atac"].X)
    outs = []
    for m in (dense, sp):
        model = mx.tl.fit_unitednet(m, label_key="group", max_epochs=3, latent_dim=8, hidden=(16,), n_heads=2,
                                    projection_dim=8, accelerator="cpu", progress_bar=False)
        outs.append((m.obsm["X_unitednet"], model.translate(m, source="rna", target="atac")))
    assert model.module.binary["atac"]
    np.testing.assert_allclose(outs[0][0], outs[1][0], atol=1e-3)
    np.testing.assert_allclose(outs[0][1], outs[1][1], atol=1e-3)


def test_set_linear_skip_rejects_a_pair_without_a_map():
    import torch

    from multiomix.nn.unitednet import UnitedNetwork

    net = UnitedNetwork(in_features={"a": 3, "b": 2, "c": 4}, latent_dim=4, hidden=(8,), linear_skip=["b"])
    net.set_linear_skip("a", "b", torch.ones(3, 2), torch.zeros(2))
    assert torch.allclose(net.linear_translate(torch.ones(1, 3), "a", "b"), torch.full((1, 2), 3.0))
    with pytest.raises(ValueError, match="no linear map a -> c"):
        net.set_linear_skip("a", "c", torch.ones(3, 4), torch.zeros(4))
    with pytest.raises(ValueError, match="no linear map a -> c"):
        net.set_skip_blend("a", "c", 0.5)


def test_linear_skip_pairs_and_bad_entries():
    net = UnitedNetwork(in_features={"a": 3, "b": 2, "c": 4}, latent_dim=4, hidden=(8,),
                        linear_skip=["b", ("c", "a")])
    assert net.skip_pairs == [("a", "b"), ("c", "a"), ("c", "b")]
    assert net.skip_targets == ["a", "b"]
    assert not net.has_linear_map("b", "a") and not hasattr(net, "skip_weight_1_0")
    assert torch.equal(net.skip_blend("b", "a"), torch.ones(3))  # no map: decoder only
    with pytest.raises(KeyError, match="'d'"):
        UnitedNetwork(in_features={"a": 3, "b": 2}, latent_dim=4, hidden=(8,), linear_skip=[("a", "d")])
    with pytest.raises(ValueError, match="`n_heads` must be at least 1, got 0"):
        UnitedNetwork(in_features={"a": 3, "b": 2}, latent_dim=4, hidden=(8,), n_classes=3, n_heads=0)


def test_linear_skip_leaves_out_pairs_too_wide_for_the_closed_form(monkeypatch, caplog):
    """A pair with more weights than ``linear_skip_max_weights`` gets no map (no buffer, decoder only, logged);
    the narrow pairs keep theirs and translation still runs."""
    mdata = planted(n=80, seed=3)
    monkeypatch.setattr(UnitedNet, "linear_skip_max_weights", 60 * 20)  # all but atac (40) x rna (60) fit
    UnitedNet.setup_mudata(mdata)
    with caplog.at_level(logging.INFO, logger="multiomix"):
        model = UnitedNet(mdata, mode="translation", latent_dim=4, hidden=(16,))
    net = model.module.net
    assert net.skip_pairs == [("rna", "adt"), ("adt", "rna"), ("atac", "adt")]  # atac is binary: never a target
    assert "atac -> rna (40 x 60)" in caplog.text and "atac -> adt" not in caplog.text
    sizes = {k: tuple(v.shape) for k, v in net.state_dict().items() if k.startswith("skip_weight")}
    assert sizes == {"skip_weight_0_1": (60, 20), "skip_weight_1_0": (20, 60), "skip_weight_2_1": (40, 20)}
    model.train(2, accelerator="cpu", **QUIET)
    assert set(model.linear_skip_alphas_) == {"rna->adt", "adt->rna", "atac->adt"}
    assert torch.equal(net.skip_blend("atac", "rna"), torch.ones(60))
    assert model.translate(mdata, source="atac", target="rna").shape == (80, 60)


def test_skip_blend_is_per_target_feature_and_old_weights_load():
    net = UnitedNetwork(in_features={"a": 3, "b": 2}, latent_dim=4, hidden=(8,), linear_skip=True).eval()
    net.set_linear_skip("a", "b", torch.ones(3, 2), torch.zeros(2))
    net.set_skip_blend("a", "b", torch.tensor([0.0, 1.0]))  # feature 0 linear only, feature 1 decoder only
    x = torch.randn(5, 3)
    out = net.translate(x, "a", "b")
    deep = net.decoders["b"](net.encoders["a"](x))
    assert torch.allclose(out[:, 0], x.sum(1)) and torch.allclose(out[:, 1], deep[:, 1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        net.set_skip_blend("a", "b", 1.5)
    # weights saved with one blend per pair (a modalities x modalities matrix) still load
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("skip_blend_")}
    state["skip_blend"] = torch.tensor([[1.0, 0.3], [0.6, 1.0]])
    other = UnitedNetwork(in_features={"a": 3, "b": 2}, latent_dim=4, hidden=(8,), linear_skip=True)
    other.load_state_dict(state)
    assert torch.allclose(other.skip_blend("a", "b"), torch.full((2,), 0.3))
    assert torch.allclose(other.skip_blend("b", "a"), torch.full((3,), 0.6))


def test_binary_detection_for_the_loss():
    """0/1 data (dense or sparse) counts as binary, so BCE; continuous or empty data does not."""
    from scipy import sparse

    from multiomix._utils import is_binary

    peaks = np.array([[0, 1, 1], [1, 0, 0]], dtype=np.float32)
    assert is_binary(peaks) and is_binary(sparse.csr_matrix(peaks))
    assert not is_binary(peaks * 0.5)
    assert not is_binary(sparse.csr_matrix((4, 3)))  # no stored values: nothing says the data are binary
    assert not is_binary(np.zeros((0, 3)))


def test_semi_supervised_batches_without_labelled_cells_train():
    """A minibatch of unlabelled cells only (common when a query is adapted beside a small reference) is skipped
    by the classifier step instead of failing on a loss without a gradient."""
    mdata = planted(n=120, seed=7)
    labels = mdata.obs["group"].astype(str).to_numpy().astype(object)
    labels[12:] = "unlabelled"  # 12 labelled cells first, then 108 unlabelled ones
    mdata.obs["group"] = pd.Categorical(labels)
    UnitedNet.setup_mudata(mdata, label_key="group", unlabeled_category="unlabelled")
    model = UnitedNet(mdata, mode="supervised", latent_dim=8, hidden=(32,), n_heads=2, projection_dim=16)
    # batches of 4 from 114 shuffled cells (6 labelled): all-unlabelled batches occur in every epoch
    model.train(3, batch_size=4, train_indices=np.arange(6, 120), validation_indices=np.arange(6), accelerator="cpu",
                progress_bar=False)
    assert model.history["train_loss"].shape[0] == 3
    assert model.classes == ["type0", "type1", "type2", "type3"]


def test_unsupervised_default_clusters_count_the_classes_present():
    mdata = planted(n=80)
    mdata.obs["group"] = mdata.obs["group"].cat.add_categories(["left over after subsetting"])
    mx.tl.fit_unitednet(mdata, mode="unsupervised", label_key="group", max_epochs=2, latent_dim=4, hidden=(16,),
                        n_heads=2, progress_bar=False)
    assert mdata.uns["unitednet"]["params"]["n_clusters"] == 4


def test_predict_modality_on_a_view_asks_for_a_copy(supervised):
    mdata, model = supervised
    query = MuData({"rna": mdata.mod["rna"][:30].copy()})
    view = query[:10]
    with pytest.raises(ValueError, match=r"is a view .* pass a copy"):
        mx.tl.predict_modality(view, model, source="rna", target="adt")
    assert list(query.mod) == ["rna"]
    copy = view.copy()
    mx.tl.predict_modality(copy, model, source="rna", target="adt")
    np.testing.assert_allclose(copy.mod["adt_from_rna"].X, model.translate(copy, source="rna", target="adt"),
                               rtol=1e-6)


def test_translation_metrics_by_column_blocks_match_the_whole():
    """Per-feature metrics computed a few columns at a time (sparse truth never densified whole) are exact."""
    from scipy import sparse

    from multiomix._metrics import pearson_per_column, r2_per_column
    from multiomix.tl._unitednet import _per_column_metrics

    rng = np.random.default_rng(0)
    truth = sparse.random(30, 8, density=0.5, random_state=0, format="csr") * 3
    columns = rng.permutation(8)
    pred = truth.toarray()[:, columns] + rng.normal(0, 0.5, (30, 8))
    for matrix in (truth, truth.toarray()):
        pearson, r2_ = _per_column_metrics(pred, matrix, columns, block=3)
        np.testing.assert_allclose(pearson, pearson_per_column(pred, truth.toarray()[:, columns]))
        np.testing.assert_allclose(r2_, r2_per_column(pred, truth.toarray()[:, columns]))


class _RankState:
    """Lightning callback writing a checksum of each process's final weights and head to ``folder``."""

    def __new__(cls, folder):
        from lightning.pytorch.callbacks import Callback

        class RankState(Callback):
            def on_train_end(self, trainer, pl_module):
                state = pl_module.module.state_dict()
                total = sum(float(v.double().abs().sum()) for v in state.values())
                (folder / f"rank{trainer.global_rank}.txt").write_text(f"{total:.6f} {int(pl_module.module.best_head)}")

        return RankState()


@pytest.mark.parametrize("mode", ["supervised", "unsupervised"])
def test_ddp_on_two_cpu_processes_ends_with_the_same_model_everywhere(mode, tmp_path):
    """strategy="ddp_notebook" trains (switched to find unused parameters: each phase steps part of the network),
    and the processes agree on the head, the best epoch and so the weights (validation sums are reduced, k-means
    prototypes broadcast)."""
    mdata = planted(n=160, seed=1)
    UnitedNet.setup_mudata(mdata, label_key="group")
    model = UnitedNet(mdata, mode=mode, latent_dim=8, hidden=(16,), n_heads=2, projection_dim=8)
    initial = model.module.net.encoders["rna"][0].weight.detach().clone()
    model.train(4, accelerator="cpu", devices=2, strategy="ddp_notebook", batch_size=32,
                callbacks=[_RankState(tmp_path)], datasplitter_kwargs={"drop_dataset_tail": True}, **QUIET)
    assert model.is_trained and not torch.equal(model.module.net.encoders["rna"][0].weight, initial)
    ranks = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert ranks[0] == ranks[1]
    assert int(ranks[0].split()[1]) == model.best_head
    assert model.predict().shape == (160,)


def test_translation_fit_stores_a_ridge_baseline_on_the_same_rows(monkeypatch, caplog):
    """Translation mode stores, per continuous pair, ridge regression fitted on the same standardised rows with the
    penalty by leave-one-out error (scikit-learn's RidgeCV gives the same test Pearson), and logs the comparison."""
    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import StandardScaler

    from multiomix._metrics import pearson_per_column

    mdata = planted(n=200, seed=5)
    monkeypatch.setattr(UnitedNet, "linear_skip_max_weights", 60 * 20)  # atac (40) -> rna (60) is too wide
    with caplog.at_level(logging.INFO, logger="multiomix"):
        mx.tl.fit_unitednet(mdata, mode="translation", max_epochs=3, latent_dim=8, hidden=(16,),
                            accelerator="cpu", progress_bar=False)
    info = mdata.uns["unitednet"]
    base = info["baseline"]
    assert base["name"] == "ridge"
    assert set(base["test_metrics"]) == {"adt->rna", "rna->adt", "atac->adt"}  # binary atac is never a target
    assert "atac->rna" in base["skipped"]
    split = mdata.obs["split"].astype(str).to_numpy()
    train, test = np.flatnonzero(split != "test"), np.flatnonzero(split == "test")
    assert base["n_train"] == len(train)
    x, y = mdata.mod["rna"].X, mdata.mod["adt"].X
    scaler_x, scaler_y = StandardScaler().fit(x[np.flatnonzero(split == "train")]), StandardScaler().fit(
        y[np.flatnonzero(split == "train")])  # the model's standardisation: training rows
    alphas = [10.0 ** (k / 4) for k in range(-8, 25)]
    ridge = RidgeCV(alphas=alphas).fit(scaler_x.transform(x[train]), scaler_y.transform(y[train]))
    expected = np.nanmean(pearson_per_column(ridge.predict(scaler_x.transform(x[test])), y[test]))
    assert base["test_metrics"]["rna->adt"]["mean_pearson"] == pytest.approx(expected, abs=2e-3)
    assert base["test_metrics"]["rna->adt"]["alpha"] == pytest.approx(ridge.alpha_)
    assert "unitednet rna->adt vs baseline (ridge" in caplog.text


def test_rerun_in_another_mode_leaves_no_stale_outputs_and_cluster_metrics_follow_obs_split(caplog):
    """Clusters, then translation under the same key: the cluster columns go (logged). Cluster metrics are per
    split of obs['split'] as written (train, validation, test), so a user can recompute them."""
    mdata = planted(n=160)
    fast = {"max_epochs": 2, "latent_dim": 4, "hidden": (16,), "accelerator": "cpu", "progress_bar": False}
    mx.tl.fit_unitednet(mdata, mode="unsupervised", label_key="group", **fast)
    metrics = mdata.uns["unitednet"]["metrics"]
    assert set(metrics) == {"train", "validation", "test"}
    train = (mdata.obs["split"] == "train").to_numpy()
    assert metrics["train"]["n"] == train.sum()
    assert metrics["validation"]["n"] == (mdata.obs["split"] == "validation").sum() > 0
    expected = adjusted_rand_score(mdata.obs["group"][train], mdata.obs["unitednet_prediction"][train])
    assert metrics["train"]["ari"] == pytest.approx(expected)
    with caplog.at_level(logging.INFO, logger="multiomix"):
        mx.tl.fit_unitednet(mdata, mode="translation", label_key="group", n_clusters=3, **fast)
    assert "label_key and n_clusters are not used" in caplog.text
    assert "unitednet_prediction" not in mdata.obs and "unitednet_proba" not in mdata.obsm
    assert "removed .obs['unitednet_prediction']" in caplog.text
    assert mdata.uns["unitednet"]["params"]["mode"] == "translation"


def test_predict_modality_never_replaces_a_measured_modality(supervised, monkeypatch):
    mdata, model = supervised
    query = mdata.copy()
    adt = query.mod["adt"].X.copy()
    with pytest.raises(ValueError, match="'adt' is the user's own"):
        mx.tl.predict_modality(query, model, source="rna", target="adt", key_added="adt")
    np.testing.assert_array_equal(query.mod["adt"].X, adt)
    modalities = list(query.mod)
    assert not query.mod["adt"].uns
    mx.tl.predict_modality(query, model, source="rna", target="adt")
    mx.tl.predict_modality(query, model, source="rna", target="adt")  # an earlier prediction is replaced
    assert list(query.mod) == [*modalities, "adt_from_rna"]
    # a failure inside mudata's update leaves the MuData as it was
    from multiomix.tl import _predict_modality

    def broken(mdata, key, new):
        mdata.mod[key] = new
        raise RuntimeError("update failed")

    monkeypatch.setattr(_predict_modality, "_add_modality", broken)
    before = query.mod["adt_from_rna"]
    with pytest.raises(RuntimeError, match="update failed"):
        mx.tl.predict_modality(query, model, source="rna", target="adt")
    assert query.mod["adt_from_rna"] is before and query.n_vars == sum(a.n_vars for a in query.mod.values())
    with pytest.raises(RuntimeError, match="update failed"):
        mx.tl.predict_modality(query, model, source="rna", target="adt", key_added="fresh")
    assert "fresh" not in query.mod


def test_predict_says_once_which_features_it_ignores(supervised, caplog):
    import logging

    import anndata as ad

    mdata, model = supervised
    rna = mdata.mod["rna"]
    extra = ad.concat([rna, ad.AnnData(np.zeros((rna.n_obs, 2), np.float32), obs=rna.obs[[]],
                                       var=pd.DataFrame(index=["x1", "x2"]))], axis=1)
    query = MuData({**{m: a.copy() for m, a in mdata.mod.items() if m != "rna"}, "rna": extra})
    with caplog.at_level(logging.INFO, logger="multiomix"):
        mx.tl.predict(query, model)
    assert sum("2 features the model does not use are ignored" in r.getMessage() for r in caplog.records) == 1


def test_an_unlabelled_category_must_come_last_and_a_misspelt_loss_weight_is_refused():
    mdata = planted(n=80)
    text = mdata.obs["group"].astype(str).map({"type0": "A", "type1": "B", "type2": "Z", "type3": "Unknown"})
    mdata.obs["text"] = text.to_numpy().astype(object)  # a text column: its categories would be sorted
    with pytest.raises(ValueError, match="'Unknown' must be the last category"):
        mx.models.UnitedNet.setup_mudata(mdata, label_key="text", unlabeled_category="Unknown")
    mdata.obs["numbers"] = mdata.obs["group"].cat.codes.to_numpy() - 1  # -1 unlabelled: sorted first, refused
    with pytest.raises(ValueError, match="'-1' must be the last category|-1 must be the last category"):
        mx.models.UnitedNet.setup_mudata(mdata, label_key="numbers", unlabeled_category=-1)
    mdata.obs["numbers"] = pd.Categorical(mdata.obs["numbers"], categories=[0, 1, 2, -1])
    mx.models.UnitedNet.setup_mudata(mdata, label_key="numbers", unlabeled_category=-1)
    assert mx.models.UnitedNet(mdata, latent_dim=8, hidden=(16,), n_heads=2).classes == ["0", "1", "2"]
    mdata.obs["ordered"] = pd.Categorical(text, categories=["A", "B", "Z", "Unknown"])
    mx.models.UnitedNet.setup_mudata(mdata, label_key="ordered", unlabeled_category="Unknown")
    assert mx.models.UnitedNet(mdata, latent_dim=8, hidden=(16,), n_heads=2).classes == ["A", "B", "Z"]
    with pytest.raises(ValueError, match=r"unknown terms \['contrastiv'\]"):
        mx.models.UnitedNet(mdata, latent_dim=8, hidden=(16,), loss_weights={"contrastiv": 0.0})


def test_without_validation_rows_the_head_is_chosen_on_the_training_rows(caplog):
    mdata = planted(n=160)
    with caplog.at_level(logging.INFO, logger="multiomix"):
        model = mx.tl.fit_unitednet(mdata, label_key="group", validation_size=0, max_epochs=6, latent_dim=16,
                                    hidden=(64,), n_heads=3, projection_dim=32, accelerator="cpu",
                                    progress_bar=False)
    train = np.flatnonzero(mdata.obs["split"] == "train")
    model.module.eval()
    with torch.no_grad():
        labels = torch.as_tensor(mdata.obs["group"].cat.codes.to_numpy()[train])
        losses = model.module.head_losses(model._standardised(train), labels).numpy()
    assert int(np.argmin(losses)) != 0, "the check needs a best head other than the first"
    assert model.best_head == int(np.argmin(losses)) and "chosen by its loss on the training rows" in caplog.text



def test_the_head_chosen_on_training_rows_is_the_class_weighted_best_on_rows_stored_by_type():
    import torch.nn.functional as F

    mdata = planted(n=4800, k=4)
    codes = mdata.obs["group"].cat.codes.to_numpy()
    keep = np.flatnonzero((codes == 0) | (np.arange(mdata.n_obs) % 7 == 1))  # class 0 dominant, others rare
    mdata = mdata[keep].copy()
    mdata = mdata[np.argsort(mdata.obs["group"].cat.codes.to_numpy(), kind="stable")].copy()  # stored by type
    mx.models.UnitedNet.setup_mudata(mdata, modalities=["rna", "adt"], label_key="group")
    model = mx.models.UnitedNet(mdata, latent_dim=8, hidden=(16,), n_heads=4, projection_dim=8, random_state=0)
    model.train(2, validation_size=0, accelerator="cpu", progress_bar=False, batch_size=256)
    labels = torch.as_tensor(mdata.obs["group"].cat.codes.to_numpy(), dtype=torch.long)
    module = model.module.eval()
    with torch.no_grad():
        logits = module.net.classify(module.net.encode(model._standardised(np.arange(mdata.n_obs))))["logits"]
        w = module.class_weight[labels]
        exact = [float((F.cross_entropy(h, labels, reduction="none") * w).sum() / w.sum()) for h in logits]
    assert model.best_head == int(np.argmin(exact))
