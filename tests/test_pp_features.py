from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import multiomix as mx
from multiomix.pp._features import variability_score


class NoDenseCSR(sparse.csr_matrix):
    """A CSR matrix that refuses to be densified as a whole."""

    def toarray(self, *args, **kwargs):
        raise AssertionError("the whole sparse matrix was densified")

    def todense(self, *args, **kwargs):
        raise AssertionError("the whole sparse matrix was densified")

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole sparse matrix was densified")


def _mdata(rng: np.random.Generator, n_obs: int = 60) -> md.MuData:
    obs_names = [f"c{i}" for i in range(n_obs)]
    rna = ad.AnnData(
        X=sparse.csr_matrix(rng.poisson(rng.gamma(0.5, 2.0, size=40), size=(n_obs, 40)).astype(np.float32)),
    )
    rna.obs_names = obs_names
    rna.var_names = [f"g{i}" for i in range(40)]
    rna.layers["counts"] = rna.X.copy()
    p_open = np.linspace(0.02, 0.98, 30)
    atac = ad.AnnData(X=sparse.csr_matrix((rng.random((n_obs, 30)) < p_open).astype(np.float32)))
    atac.obs_names = obs_names
    atac.var_names = [f"p{i}" for i in range(30)]
    atac.layers["counts"] = atac.X.copy()
    return md.MuData({"rna": rna, "atac": atac})


def test_variability_score_matches_formula_on_hand_made_matrix():
    x = np.array(
        [
            [1, 0, 1, 0, 2],
            [1, 0, 1, 0, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 1, 0, 0],
        ],
        dtype=np.float32,
    )
    # fraction of cells with the feature: 0.5, 0, 1, 0.25, 0.25
    expected = 1 - np.abs(np.array([0.5, 0.0, 1.0, 0.25, 0.25]) - 0.5)
    np.testing.assert_allclose(variability_score(x), expected)
    np.testing.assert_allclose(variability_score(sparse.csr_matrix(x)), expected)
    np.testing.assert_allclose(variability_score(sparse.csc_matrix(x)), expected)
    # explicitly stored zeros do not count as open
    explicit = sparse.csr_matrix(x)
    explicit.data[explicit.data == 2] = 0.0
    assert variability_score(explicit)[4] == pytest.approx(1 - abs(0.0 - 0.5))


def test_select_features_picks_exactly_n_by_the_score():
    rng = np.random.default_rng(0)
    mdata = _mdata(rng)
    mx.pp.select_features(mdata, n_top={"rna": 10, "atac": 7})
    atac = mdata["atac"]
    assert atac.var["highly_variable"].sum() == 7
    assert mdata["rna"].var["highly_variable"].sum() == 10
    frac = np.asarray((atac.layers["counts"] > 0).mean(0)).ravel()
    score = 1 - np.abs(frac - 0.5)
    np.testing.assert_allclose(atac.var["variability_score"], score)
    chosen = atac.var["highly_variable"].to_numpy()
    # every selected peak scores at least as high as every rejected one
    assert score[chosen].min() >= score[~chosen].max()


def test_select_features_exact_n_with_ties_and_subset():
    x = np.zeros((4, 6), dtype=np.float32)
    x[:2, :4] = 1  # four peaks tied at the top score (open in half the cells)
    atac = ad.AnnData(X=sparse.csr_matrix(x))
    atac.var_names = [f"p{i}" for i in range(6)]
    rna = ad.AnnData(X=sparse.csr_matrix(np.ones((4, 3), dtype=np.float32)))
    mdata = md.MuData({"atac": atac, "rna": rna})
    mx.pp.select_features(mdata, n_top={"atac": 3}, layer=None, subset=True)
    assert mdata["atac"].n_vars == 3
    assert list(mdata["atac"].var_names) == ["p0", "p1", "p2"]
    assert mdata["rna"].n_vars == 3  # untouched modality


def test_select_features_never_densifies_sparse_input():
    rng = np.random.default_rng(1)
    x = NoDenseCSR((rng.random((50, 200)) < 0.1).astype(np.float32))
    score = variability_score(x)
    assert score.shape == (200,)
    atac = ad.AnnData(X=sparse.csr_matrix(x))
    atac.X = x
    mdata = md.MuData({"atac": atac})
    mx.pp.select_features(mdata, n_top={"atac": 20}, layer=None)
    assert mdata["atac"].var["highly_variable"].sum() == 20


def test_select_features_errors_leave_object_untouched():
    rng = np.random.default_rng(2)
    mdata = _mdata(rng)
    with pytest.raises(KeyError, match="prot"):
        mx.pp.select_features(mdata, n_top={"prot": 5})
    with pytest.raises(KeyError, match="spliced"):
        mx.pp.select_features(mdata, n_top={"rna": 5, "atac": 5}, layer="spliced")
    with pytest.raises(ValueError, match="positive integer"):
        mx.pp.select_features(mdata, n_top={"atac": 0})
    with pytest.raises(ValueError, match="flavor"):
        mx.pp.select_features(mdata, n_top={"atac": 3, "rna": 3}, flavor={"rna": "cell_ranger_v9"})
    assert "highly_variable" not in mdata["atac"].var.columns
    assert "highly_variable" not in mdata["rna"].var.columns


def test_select_features_with_duplicated_names_picks_exactly_n_by_position():
    """Before var_names_make_unique, names repeat: the mask is positional, the same as with unique names."""
    rng = np.random.default_rng(4)
    unique, duplicated = _mdata(rng), _mdata(np.random.default_rng(4))
    duplicated["rna"].var_names = ["dup"] * 20 + [f"g{i}" for i in range(20, 40)]
    for mdata in (unique, duplicated):
        mx.pp.select_features(mdata, n_top={"rna": 10})
    assert duplicated["rna"].var["highly_variable"].sum() == 10
    np.testing.assert_array_equal(duplicated["rna"].var["highly_variable"], unique["rna"].var["highly_variable"])
    # and the subset keeps exactly those features, under the user's (repeated) names
    names = np.asarray(duplicated["rna"].var_names)
    mx.pp.select_features(duplicated, n_top={"rna": 10}, subset=True)
    np.testing.assert_array_equal(duplicated["rna"].var_names, names[unique["rna"].var["highly_variable"].to_numpy()])
    assert list(duplicated["atac"].var_names) == [f"p{i}" for i in range(30)]
    assert list(duplicated.var_names) == [*duplicated["rna"].var_names, *duplicated["atac"].var_names]


def test_select_features_refuses_nan_and_negative_input_for_every_flavor():
    rng = np.random.default_rng(5)
    mdata = _mdata(rng)
    mdata["atac"].layers["counts"].data[:3] = np.nan
    with pytest.raises(ValueError, match=r"Modality 'atac' \(counts\) contains 3 NaN"):
        mx.pp.select_features(mdata, n_top={"rna": 5, "atac": 5})
    mdata = _mdata(rng)
    mdata["atac"].layers["counts"] = -mdata["atac"].layers["counts"]
    with pytest.raises(ValueError, match="variability score counts the cells"):
        mx.pp.select_features(mdata, n_top={"atac": 5})
    with pytest.raises(ValueError, match="rank the features by variance"):
        mx.pp.select_features(mdata, n_top={"atac": 5}, flavor={"atac": "seurat_v3"})
    assert "highly_variable" not in mdata["atac"].var.columns


def test_transforms_name_wrong_inputs_and_take_boolean_peaks(tmp_path):
    rng = np.random.default_rng(6)
    mdata = _mdata(rng)
    for transform in (mx.pp.tfidf, mx.pp.binarize, mx.pp.normalize):
        with pytest.raises(TypeError, match=r"Expected an AnnData \(one modality, e.g. mdata\['atac'\]\)"):
            transform(mdata)
    with pytest.raises(ValueError, match="tfidf|TF-IDF needs counts"):
        mx.pp.tfidf(ad.AnnData(-mdata["atac"].X))
    peaks = mdata["atac"].copy()
    peaks.write_h5ad(tmp_path / "peaks.h5ad")
    backed = ad.read_h5ad(tmp_path / "peaks.h5ad", backed="r")
    with pytest.raises(ValueError, match="backed"):
        mx.pp.tfidf(backed)
    np.testing.assert_array_equal(variability_score(backed.X), variability_score(peaks.X))
    boolean = ad.AnnData(sparse.csr_matrix(peaks.X.toarray() > 0))
    mx.pp.tfidf(boolean)
    mx.pp.tfidf(peaks)
    np.testing.assert_allclose(boolean.X.toarray(), peaks.X.toarray(), rtol=1e-6)


def test_select_features_default_takes_the_rna_and_atac_it_finds():
    rng = np.random.default_rng(8)
    base = _mdata(rng)
    cite = md.MuData({"rna": base["rna"].copy(), "adt": ad.AnnData(base["rna"].X[:, :5].copy(), obs=base["rna"].obs)})
    mx.pp.select_features(cite, layer=None)  # no 'atac': RNA only (40 genes < 2500: all kept)
    assert cite["rna"].var["highly_variable"].all() and "highly_variable" not in cite["adt"].var.columns
    named = md.MuData({"GEX": base["rna"].copy(), "ATAC": base["atac"].copy(), "ephys": base["rna"].copy()})
    mx.pp.select_features(named, layer=None)  # recognised by name, as pca_concat recognises them
    assert "highly_variable" in named["GEX"].var and "highly_variable" in named["ATAC"].var
    assert "highly_variable" not in named["ephys"].var
    other = md.MuData({"ephys": base["rna"].copy()})
    with pytest.raises(ValueError, match=r"names no modality of this MuData \(\['ephys'\]\); pass one, e.g. n_top="):
        mx.pp.select_features(other)


def test_select_features_takes_one_number_for_every_modality_and_copy():
    mdata = _mdata(np.random.default_rng(9))
    out = mx.pp.select_features(mdata, n_top=10, subset=True, copy=True)
    assert out["rna"].n_vars == 10 and out["atac"].n_vars == 10
    assert mdata["rna"].n_vars == 40 and "highly_variable" not in mdata["rna"].var.columns  # the input is as it was
    with pytest.raises(TypeError, match="n_top must be a number or a dict"):
        mx.pp.select_features(mdata, n_top=["rna"])


def test_select_features_subset_is_quiet():
    import warnings

    mdata = _mdata(np.random.default_rng(7))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mx.pp.select_features(mdata, n_top={"rna": 10, "atac": 10}, subset=True)
    assert mdata["rna"].n_vars == 10 and mdata["atac"].n_vars == 10


def test_tfidf_binarize_normalize_match_definitions():
    rng = np.random.default_rng(3)
    counts = rng.poisson(1.0, size=(30, 12)).astype(np.float32)
    counts[:, 0] += 1  # no empty cell
    a = ad.AnnData(X=sparse.csr_matrix(counts))
    out = mx.pp.tfidf(a, copy=True)
    tf = counts / counts.sum(1, keepdims=True)
    idf = np.log1p(counts.shape[0] / counts.sum(0))  # muon's definition: total counts of the peak
    np.testing.assert_allclose(out.X.toarray(), np.log1p(tf * 1e4) * idf, rtol=1e-5)
    assert sparse.issparse(out.X)
    binary = (counts > 0).astype(np.float32)  # on binarised peaks, the total is the number of cells with the peak
    out = mx.pp.tfidf(ad.AnnData(X=binary), copy=True)
    idf = np.log1p(counts.shape[0] / (counts > 0).sum(0))
    np.testing.assert_allclose(out.X, np.log1p(binary / binary.sum(1, keepdims=True) * 1e4) * idf, rtol=1e-5)
    assert isinstance(out.X, np.ndarray)  # dense in, dense out

    b = ad.AnnData(X=sparse.csr_matrix(counts))
    mx.pp.binarize(b, key_added="bin")
    np.testing.assert_array_equal(b.layers["bin"].toarray(), (counts > 0).astype(np.float32))
    np.testing.assert_array_equal(b.X.toarray(), counts)  # X untouched when key_added is given

    c = ad.AnnData(X=counts.copy())
    mx.pp.normalize(c, method="log1p", target_sum=100)
    np.testing.assert_allclose(c.X, np.log1p(counts / counts.sum(1, keepdims=True) * 100), rtol=1e-5)

    d = ad.AnnData(X=sparse.csr_matrix(counts))
    mx.pp.normalize(d, method="clr")
    geo = np.exp(np.log1p(counts).mean(0))
    np.testing.assert_allclose(d.X.toarray(), np.log1p(counts / geo), rtol=1e-5)

    with pytest.raises(ValueError, match="negative"):
        mx.pp.normalize(ad.AnnData(X=-counts), method="log1p")
    with pytest.raises(ValueError, match="method"):
        mx.pp.normalize(c, method="sctransform")


def test_variability_score_reproduces_episcanpy_on_a_hand_made_case():
    # episcanpy.pp.cal_var: n_cells = column sum of the binary matrix, prop = n_cells / n_obs,
    # variability_score = 1 - |prop - 0.5|. Four cells, five peaks (counts; a 3 is one open cell):
    counts = np.array(
        [
            [1, 0, 1, 0, 3],
            [0, 0, 1, 0, 1],
            [2, 0, 1, 1, 1],
            [0, 0, 1, 0, 0],
        ],
        dtype=np.float32,
    )
    # open in 2, 0, 4, 1 and 3 of the 4 cells: prop 0.5, 0, 1, 0.25, 0.75
    # score 1 - 0 = 1, 1 - 0.5 = 0.5, 1 - 0.5 = 0.5, 1 - 0.25 = 0.75, 1 - 0.25 = 0.75
    expected = np.array([1.0, 0.5, 0.5, 0.75, 0.75])
    np.testing.assert_allclose(variability_score(counts), expected)
    np.testing.assert_allclose(variability_score(sparse.csr_matrix(counts)), expected)
    # episcanpy.pp.select_var_feature(nb_features=2) keeps score >= the 3rd best (0.75): p0, p3 and p4;
    # we keep exactly 2, ties broken by feature order: p0 and p3.
    atac = ad.AnnData(X=sparse.csr_matrix(counts))
    atac.var_names = [f"p{i}" for i in range(5)]
    mdata = md.MuData({"atac": atac})
    mx.pp.select_features(mdata, n_top={"atac": 2}, layer=None)
    assert list(mdata["atac"].var_names[mdata["atac"].var["highly_variable"]]) == ["p0", "p3"]


def test_select_features_subsets_modalities_that_share_feature_names():
    """A gene and its protein under one name (e.g. CD69), kept in one modality and dropped from the other: mudata's
    default update after the subset fails on the shared names unless they are made unique for it."""
    rng = np.random.default_rng(0)
    rna = ad.AnnData(X=rng.poisson(3.0, (30, 8)).astype(np.float32))
    rna.var_names = ["g0", "CD69", "g1", "CD36", "g2", "g3", "g4", "g5"]
    adt = ad.AnnData(X=rng.poisson(5.0, (30, 5)).astype(np.float32))
    adt.var_names = ["CD4", "CD36", "CD8", "CD69", "CD19"]
    mdata = md.MuData({"rna": rna, "adt": adt})
    assert not mdata.var_names.is_unique
    masks = {"rna": np.array([1, 0, 1, 0, 0, 0, 1, 1], bool), "adt": np.array([1, 0, 1, 1, 1], bool)}
    picked = iter([masks["rna"], masks["adt"]])
    from multiomix.pp import _features

    original = _features._top_n
    _features._top_n = lambda scores, n: next(picked)  # CD69 dropped from rna, kept in adt
    try:
        mx.pp.select_features(mdata, n_top={"rna": 4, "adt": 4}, layer=None, subset=True,
                              flavor={"rna": "variability", "adt": "variability"})
    finally:
        _features._top_n = original
    assert list(mdata["rna"].var_names) == ["g0", "g1", "g4", "g5"]
    assert list(mdata["adt"].var_names) == ["CD4", "CD8", "CD69", "CD19"] and mdata.n_vars == 8
    np.testing.assert_array_equal(mdata["adt"].X, adt[:, ["CD4", "CD8", "CD69", "CD19"]].X)


def test_split_says_why_it_cannot_stratify():
    obs = pd.DataFrame({"type": np.repeat([f"t{i}" for i in range(12)], 3)}, index=[f"c{i}" for i in range(36)])
    adata = ad.AnnData(np.zeros((36, 2), np.float32), obs=obs)
    with pytest.raises(ValueError, match="12 classes of .obs\\['type'\\] need at least 12 held-out"):
        mx.pp.split(adata, label_key="type")  # 8 held-out rows for 12 classes
    assert "split" not in adata.obs
    single = adata.copy()
    single.obs.loc["c0", "type"] = "alone"
    mx.pp.split(single, label_key="type", test_size=0.5)  # as the fits' own hold-out: a single row stays in train
    assert single.obs.loc["c0", "split"] == "train"
    held = single.obs.loc[single.obs["type"] != "alone"]
    assert (pd.crosstab(held["type"], held["split"]) >= 1).all().all()  # the others on both sides
    lonely = adata.copy()
    lonely.obs["type"] = [f"u{i}" for i in range(36)]
    with pytest.raises(ValueError, match="Every class of .obs\\['type'\\] has a single row"):
        mx.pp.split(lonely, label_key="type")
    # every class has 3 rows: the held-out rows are stratified, their validation/test division where it can be
    mx.pp.split(adata, label_key="type", test_size=0.4, validation_size=0.2)
    counts = adata.obs["split"].value_counts()
    assert counts["train"] == 14 and counts["validation"] + counts["test"] == 22
    assert (pd.crosstab(adata.obs["type"], adata.obs["split"])["train"] >= 1).all()


def test_split_leaves_unlabelled_rows_out_and_stratifies_the_rest():
    """As the fits do: rows without a label get no split; the labelled rows are split, stratified."""
    types = np.repeat(["a", "b", "c"], 20).astype(object)
    types[[0, 25, 50]] = None
    obs = pd.DataFrame({"type": types}, index=[f"c{i}" for i in range(60)])
    adata = ad.AnnData(np.zeros((60, 2), np.float32), obs=obs)
    mx.pp.split(adata, label_key="type", test_size=0.25, validation_size=0.1)
    split = adata.obs["split"]
    assert split.isna().to_numpy()[[0, 25, 50]].all() and split.notna().sum() == 57
    counts = pd.crosstab(adata.obs["type"], split)
    assert counts["train"].sum() == 37 and counts["test"].sum() == 15 and counts["validation"].sum() == 5
    assert (counts["train"] >= 12).all() and (counts["test"] >= 4).all()
    with pytest.raises(ValueError, match="1 labelled rows"):
        mx.pp.split(adata[:2].copy(), label_key="type")


def test_select_features_says_it_replaces_an_earlier_selection(caplog):
    import logging

    mdata = _mdata(np.random.default_rng(11))
    mdata["rna"].var["highly_variable"] = np.arange(40) < 5  # e.g. scanpy's, with its rank column
    mdata["rna"].var["highly_variable_rank"] = np.where(np.arange(40) < 5, np.arange(40), np.nan)
    with caplog.at_level(logging.INFO, logger="multiomix"):
        mx.pp.select_features(mdata, n_top={"rna": 10})
    messages = [r.getMessage() for r in caplog.records]
    assert ("replaced .mod['rna'].var['highly_variable'] (5 features before, 10 of 40 now); "
            "['highly_variable_rank'] describe the earlier selection") in messages


def test_transforms_on_a_view_leave_its_parent_alone_and_record_log1p(caplog):
    """As in scanpy, a view becomes its own object; the parent's .X is never written through."""
    import logging

    rna = _mdata(np.random.default_rng(12))["rna"].copy()
    before = rna.X.toarray().copy()
    for transform, kwargs in ((mx.pp.normalize, {}), (mx.pp.normalize, {"method": "clr"}), (mx.pp.tfidf, {}),
                              (mx.pp.binarize, {})):
        view = rna[:20]
        transform(view, **kwargs)
        assert not view.is_view
        np.testing.assert_array_equal(rna.X.toarray(), before)
    mx.pp.normalize(rna, layer="counts")
    assert rna.uns["log1p"] == {"base": None}  # scanpy's record: later scanpy steps read it
    with caplog.at_level(logging.WARNING, logger="multiomix"):
        mx.pp.normalize(rna)  # .X holds log values now
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "non-whole values" in messages and "log-transformed already" in messages


def test_transforms_refuse_to_overwrite_their_input_layer_and_say_what_they_replace(caplog):
    import logging

    rna = _mdata(np.random.default_rng(13))["rna"].copy()
    counts = rna.layers["counts"].toarray().copy()
    for transform in (mx.pp.normalize, mx.pp.tfidf, mx.pp.binarize):
        with pytest.raises(ValueError, match="is the input layer"):
            transform(rna, layer="counts", key_added="counts")
    np.testing.assert_array_equal(rna.layers["counts"].toarray(), counts)
    mx.pp.normalize(rna, layer="counts", key_added="lognorm")
    with caplog.at_level(logging.INFO, logger="multiomix"):
        mx.pp.normalize(rna, layer="counts", key_added="lognorm")
    assert "replaced .layers['lognorm']" in [r.getMessage() for r in caplog.records]
    with pytest.raises(ValueError, match=r"\.X of this AnnData is empty"):
        mx.pp.normalize(ad.AnnData(obs=pd.DataFrame(index=["a", "b"])))
    with pytest.raises(ValueError, match="NaN|finite"):
        variability_score(np.array([[np.nan, 0.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="negative"):
        variability_score(np.array([[-1.0, 0.0], [1.0, 1.0]]))


def test_select_features_refuses_a_subset_it_cannot_make_before_writing(tmp_path):
    mdata = _mdata(np.random.default_rng(14))
    view = mdata[:30]
    with pytest.raises(ValueError, match="view of a MuData"):
        mx.pp.select_features(view, n_top=10, subset=True)
    assert view.shape == (30, 70) and "highly_variable" not in view["rna"].var
    assert mx.pp.select_features(view, n_top=10, subset=True, copy=True).shape == (30, 20)
    mdata.write_h5mu(tmp_path / "m.h5mu")
    backed = md.read_h5mu(tmp_path / "m.h5mu", backed=True)
    with pytest.raises(ValueError, match="backed MuData"):
        mx.pp.select_features(backed, n_top=10, subset=True)
    assert "highly_variable" not in backed["rna"].var
    with pytest.raises(ValueError, match=r"without an entry for \['atac'\]"):
        mx.pp.select_features(mdata, n_top=10, layer={"rna": "counts"})
    with pytest.raises(ValueError, match=r"flavor names \['atac'\]"):
        mx.pp.select_features(mdata, n_top={"rna": 10}, flavor={"atac": "variability"})
    assert "highly_variable" not in mdata["rna"].var


def test_sequence_helpers_name_wrong_inputs():
    from multiomix.pp import one_hot_encode, reverse_complement

    with pytest.raises(ValueError, match="names has 1 entries for 2 sequences"):
        one_hot_encode(["ACG", "ACGT"], names=["x"])
    with pytest.raises(TypeError, match="decode bytes first"):
        one_hot_encode([b"ACGT"])
    with pytest.raises(ValueError, match="0 bp"):
        one_hot_encode(["", ""])
    with pytest.raises(ValueError, match=r"\(\.\.\., length, 4\)"):
        reverse_complement(np.zeros((2, 4, 10)))
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        reverse_complement([[0, 0, 0, 1]])
    with pytest.raises(ValueError, match="non-whole coordinates"):
        mx.pp.one_hot_sequences(ad.AnnData(obs=pd.DataFrame({"chrom": ["chr1"], "start": [2.5], "end": [8.5]},
                                                            index=["r0"])), fasta={"chr1": "ACGTACGTACGTACGTACGT"})


def test_split_holds_out_whole_rows_without_float_noise():
    obs = pd.DataFrame({"y": np.arange(100) % 2}, index=[str(i) for i in range(100)])
    adata = ad.AnnData(np.zeros((100, 2)), obs=obs)
    for label_key in (None, "y"):  # 0.2 + 0.1 is 0.30000000000000004: 31 held-out rows, the extra one in test
        mx.pp.split(adata, label_key=label_key, test_size=0.2, validation_size=0.1)
        assert adata.obs["split"].value_counts().to_dict() == {"train": 70, "test": 20, "validation": 10}


def test_variability_counts_a_repeated_sparse_entry_once_and_a_replaced_layer_is_warned(caplog):
    # a peak open in 2 of 4 cells, one of them stored twice (COO built from fragments; a non-canonical CSR)
    coo = sparse.coo_matrix((np.ones(3, np.float32), ([0, 0, 1], [0, 0, 0])), shape=(4, 1))
    assert variability_score(coo)[0] == pytest.approx(1.0)
    csr = sparse.csr_matrix((np.ones(3, np.float32), np.zeros(3, int), np.array([0, 2, 3, 3, 3])), shape=(4, 1))
    assert not csr.has_canonical_format and variability_score(csr)[0] == pytest.approx(1.0)
    adata = ad.AnnData(np.ones((3, 2), np.float32))
    adata.layers["counts"] = np.full((3, 2), 7.0, np.float32)
    mx.pp.normalize(adata, key_added="counts")
    assert "layers['counts'] existed and is replaced" in caplog.text
