"""Plots: documented return types, ``save=``, ``ax=``, relevance health warnings, embedding colours, the reader."""

from __future__ import annotations

import warnings

import anndata as ad
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import mudata as md
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

import multiomix as mx


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------------------------------------ stored results
def _frame(rng, features: list[str], modalities: list[str]) -> pd.DataFrame:
    mean_abs = rng.gamma(1.0, 1.0, len(features)).astype(np.float32)
    mean = (mean_abs * rng.choice([-1, 1], len(features))).astype(np.float32)
    rank = np.empty(len(features), dtype=np.int64)
    rank[np.argsort(-mean_abs)] = np.arange(1, len(features) + 1)
    return pd.DataFrame({"modality": pd.Categorical(modalities), "mean_abs": mean_abs, "mean": mean, "rank": rank},
                        index=pd.Index(features, name="feature"))


def relevance_mudata(n_groups: int = 4, cells: int = 30, seed: int = 0) -> md.MuData:
    """A MuData with group results in ``uns['relevance']`` and cross-modal ones in ``uns['relevance_rna_to_adt']``."""
    rng = np.random.default_rng(seed)
    groups = [f"type {i}" for i in range(n_groups - 1)] + ["B/plasma"]
    genes, proteins = [f"G{i}" for i in range(40)], [f"P{i}" for i in range(10)]
    obs = pd.DataFrame({"cell_type": pd.Categorical(np.repeat(groups, cells))},
                       index=[f"c{i}" for i in range(n_groups * cells)])
    mdata = md.MuData({"rna": ad.AnnData(rng.normal(size=(len(obs), 40)).astype(np.float32), obs=obs.copy(),
                                         var=pd.DataFrame(index=genes)),
                       "adt": ad.AnnData(rng.normal(size=(len(obs), 10)).astype(np.float32), obs=obs.copy(),
                                         var=pd.DataFrame(index=proteins))})
    mdata.obs["cell_type"] = obs["cell_type"]
    keys = [g.replace("/", "_") for g in groups]
    summary = pd.DataFrame({"n_cells": [cells] * n_groups}, index=pd.Index(keys, name="group"))
    params = {"groupby": "cell_type", "groups": groups, "group_keys": keys, "source": "", "target": ""}
    features, mods = genes + proteins, ["rna"] * 40 + ["adt"] * 10
    mdata.uns["relevance"] = {"params": {**params, "kind": "group"}, "summary": summary,
                              "groups": {k: _frame(rng, features, mods) for k in keys}}
    mdata.uns["relevance_rna_to_adt"] = {
        "params": {**params, "kind": "cross_modal", "source": "rna", "target": "adt"}, "summary": summary,
        "groups": {k: _frame(rng, genes, ["rna"] * 40) for k in keys},
        "matrices": {k: pd.DataFrame(rng.gamma(1.0, 1.0, (10, 40)).astype(np.float32),
                                     index=pd.Index(proteins, name="target"), columns=genes) for k in keys},
        "target_std": pd.DataFrame({"std": rng.uniform(0.5, 2.0, 10)}, index=pd.Index(proteins)),
    }
    return mdata


def _health(mdata, key="relevance", **health):
    base = {"additivity_error": 0.05, "n_cells": mdata.uns[key]["summary"]["n_cells"].copy(),
            "topk_stability": 0.9, "linear_path": False}
    mdata.uns[key]["health"] = {**base, **health}
    return mdata


RELEVANCE_PLOTS = {
    "dotplot": lambda m, **kw: mx.pl.relevance_dotplot(m, "relevance", **kw),
    "heatmap": lambda m, **kw: mx.pl.relevance_heatmap(m, "relevance", **kw),
    "matrix": lambda m, **kw: mx.pl.relevance_heatmap(m, "relevance_rna_to_adt", group="B/plasma", **kw),
    "network": lambda m, **kw: mx.pl.relevance_network(m, "relevance_rna_to_adt", "type 0", **kw),
    "group_network": lambda m, **kw: mx.pl.relevance_network(m, "relevance", **kw),
}


def benchmark_data(n: int = 25, cells: int = 8) -> md.MuData:
    rng = np.random.default_rng(0)
    labels = np.repeat([f"cell type {i}" for i in range(n)], cells)
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels)}, index=[f"c{i}" for i in range(len(labels))])
    mdata = md.MuData({"rna": ad.AnnData(rng.normal(size=(len(obs), 5)).astype(np.float32), obs=obs.copy())})
    mdata.obs["cell_type"] = obs["cell_type"]
    for key in ("X_a", "X_b"):
        mdata.obsm[f"{key}_umap"] = rng.normal(size=(len(obs), 2))
    mdata.uns["embedding_benchmark"] = pd.DataFrame({"nmi": [0.8, 0.6], "ari": [0.7, 0.5], "asw_label": [0.6, 0.55]},
                                                    index=["X_a", "X_b"])
    mdata.uns["model"] = {"history": pd.DataFrame({"train_loss": [1.0, 0.6, 0.4], "validation_loss": [1.1, 0.8, 0.7],
                                                   "validation_accuracy": [0.5, 0.7, 0.8]})}
    share = pd.DataFrame({"mrna->mirna": [0.5, 0.2], "mirna->mrna": [0.5, 0.8]}, index=["LumA", "Basal"])
    mdata.uns["crossattomics_interactions"] = {"share": share, "mean": share - 0.5}
    return mdata


def genomic_adata() -> ad.AnnData:
    rng = np.random.default_rng(0)
    n, tokens = 20, 8
    adata = ad.AnnData(rng.normal(size=(n, 1)).astype(np.float32), obs=pd.DataFrame(
        {"split": ["train"] * 10 + ["test"] * 10}, index=[f"r{i}" for i in range(n)]),
        var=pd.DataFrame(index=["signal"]))  # the observed track, named as the fit names its columns
    adata.obsm["genomic_interpreter_prediction"] = adata.X + rng.normal(0, 0.3, (n, 1)).astype(np.float32)
    attention = {name: rng.random((2, 2, tokens, tokens))
                 for name in ("stage0.block0", "stage0.block1", "transformer.layer0")}
    adata.uns["genomic_interpreter"] = {
        "params": {"tracks_key": "", "layer": "", "backbone": "swin1d"}, "track_names": np.array(["signal"]),
        "attention": attention, "attention_resolution": dict.fromkeys(attention, 16),
        "attention_regions": np.array(["r0", "r1"], dtype=object)}
    return adata


def tile_mudata() -> md.MuData:
    rng = np.random.default_rng(0)
    n, tiles, genes = 12, 9, 15
    obs = pd.DataFrame(index=[f"p{i}" for i in range(n)])
    wsi = ad.AnnData(np.zeros((n, 1), np.float32), obs=obs.copy())
    wsi.obsm["coords"] = np.stack([np.stack(np.meshgrid(range(3), range(3)), -1).reshape(-1, 2)] * n).astype(float)
    wsi.obsm["tile_mask"] = np.ones((n, tiles), bool)
    rna = ad.AnnData(rng.normal(size=(n, genes)).astype(np.float32), obs=obs.copy(),
                     var=pd.DataFrame(index=[f"g{i}" for i in range(genes)]))
    mdata = md.MuData({"wsi": wsi, "rna": rna})
    mdata.obs["medcrossvit_prediction"] = pd.Categorical(np.repeat(["tumour", "normal"], n // 2))
    mdata.obs["medcrossvit_confidence"] = rng.uniform(0.5, 1.0, n)
    mdata.uns["medcrossvit"] = {
        "params": {"tiles_modality": "wsi", "mask_key": "tile_mask"},
        "attention": {"tiles": rng.dirichlet(np.ones(tiles), n),
                      "genes": pd.DataFrame(rng.dirichlet(np.ones(genes), n), index=mdata.obs_names,
                                            columns=rna.var_names)}}
    return mdata


# ------------------------------------------------------------------------------------------------- conventions
def _axes_level_calls():
    rel, bench, gen = relevance_mudata(), benchmark_data(), genomic_adata()
    calls = {name: (lambda kw, call=call: call(rel, **kw)) for name, call in RELEVANCE_PLOTS.items()}
    calls["benchmark"] = lambda kw: mx.pl.benchmark(bench, **kw)
    calls["training_history"] = lambda kw: mx.pl.training_history(bench, "model", **kw)
    calls["track_prediction"] = lambda kw: mx.pl.track_prediction(gen, **kw)
    return calls


def _figure_level_calls():
    bench, gen, tiles = benchmark_data(), genomic_adata(), tile_mudata()
    return {
        "embedding": lambda kw: mx.pl.embedding(bench, keys=["X_a", "X_b"], color="cell_type", **kw),
        "interaction_importance": lambda kw: mx.pl.interaction_importance(bench, **kw),
        "interaction_bars": lambda kw: mx.pl.interaction_importance(bench, kind="bar", **kw),
        "attention_maps": lambda kw: mx.pl.attention_maps(gen, region=1, marks={"A": 40}, **kw),
        "tile_attention": lambda kw: mx.pl.tile_attention(tiles, n_top=5, **kw),
    }


@pytest.mark.parametrize("name", list(_axes_level_calls()))
def test_axes_level_returns_saves_and_honours_ax(name, tmp_path):
    call = _axes_level_calls()[name]
    ax = call({})
    assert isinstance(ax, Axes)
    plt.close("all")
    fig = call({"return_fig": True, "save": tmp_path / "plot.png"})
    assert isinstance(fig, Figure) and (tmp_path / "plot.png").stat().st_size > 5000
    assert not plt.get_fignums()  # saved: closed, as scanpy does (a loop of plots piles up no figures)
    fig.savefig(tmp_path / "again.png")  # the returned figure still saves
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # showing on a non-interactive backend is silent
        assert call({"show": True}) is None
    assert not plt.get_fignums()
    outer, given = plt.subplots(figsize=(8, 5))
    drawn = call({"ax": given})
    assert drawn.figure is outer
    assert outer.get_size_inches().tolist() == [8, 5]  # the caller's figure is not resized


@pytest.mark.parametrize("name", list(_figure_level_calls()))
def test_figure_level_returns_figure_and_saves(name, tmp_path):
    call = _figure_level_calls()[name]
    plt.close("all")
    fig = call({"save": tmp_path / "plot.png"})
    assert isinstance(fig, Figure) and len(fig.axes) >= 1
    assert (tmp_path / "plot.png").stat().st_size > 5000
    assert not plt.get_fignums()
    assert call({"show": True}) is None
    assert not plt.get_fignums()


def test_fonts_and_size_of_the_default_relevance_plots():
    mdata = relevance_mudata(n_groups=20)
    for name in ("dotplot", "heatmap"):
        fig = RELEVANCE_PLOTS[name](mdata, return_fig=True)
        fig.canvas.draw()
        sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text() and t.get_visible()]
        assert min(sizes) >= 9, name
        assert fig.get_size_inches()[0] <= mx.pl.LAPTOP_WIDTH + 0.5, name
        rows = fig.axes[0].get_yticklabels()
        assert len(rows) == 12  # at most 12 groups by default
        box = fig.get_tightbbox(fig.canvas.get_renderer())
        width, height = fig.get_size_inches()
        assert box.x0 >= -0.01 and box.y0 >= -0.01 and box.x1 <= width + 0.01 and box.y1 <= height + 0.01


def test_default_groups_are_the_largest():
    mdata = relevance_mudata(n_groups=15)
    mdata.uns["relevance"]["summary"]["n_cells"] = np.arange(15) + 1
    ax = mx.pl.relevance_dotplot(mdata, max_groups=3)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["type 12", "type 13", "B/plasma"]
    ax = mx.pl.relevance_dotplot(mdata, groups=["type 0", "B/plasma"])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["type 0", "B/plasma"]
    with pytest.raises(KeyError, match="Group 'nope'"):
        mx.pl.relevance_dotplot(mdata, groups=["nope"])


# ---------------------------------------------------------------------------------------------------- health
def _notes(result) -> list[str]:
    fig = result if isinstance(result, Figure) else result.figure
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if "Caution" in t.get_text()]


@pytest.mark.parametrize("name", list(RELEVANCE_PLOTS))
def test_health_warnings_fire_only_when_needed(name):
    call = RELEVANCE_PLOTS[name]
    mdata = relevance_mudata()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no health: no warning
        assert not _notes(call(mdata))
    key = "relevance" if name in ("dotplot", "heatmap", "group_network") else "relevance_rna_to_adt"
    _health(mdata, key)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # healthy: no warning
        assert not _notes(call(mdata))
    tiny = mdata.uns[key]["health"]["n_cells"].copy()
    tiny.iloc[:] = 5
    for health, text in [({"n_cells": tiny}, "fewer than 10 cells"),
                         ({"additivity_error": 0.35}, "additivity error is 0.35"),
                         ({"linear_path": True}, "linear")]:
        _health(mdata, key, **health)
        with pytest.warns(UserWarning, match=text):
            result = call(mdata)
        assert _notes(result), (name, health)


def test_tiny_group_warning_names_the_group():
    mdata = _health(relevance_mudata())
    counts = mdata.uns["relevance"]["health"]["n_cells"]
    counts.loc["B_plasma"] = 4
    with pytest.warns(UserWarning, match=r"B/plasma \(4\)"):
        mx.pl.relevance_dotplot(mdata)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the tiny group is not shown: no warning
        mx.pl.relevance_dotplot(mdata, groups=["type 0", "type 1"])
    mdata.uns["relevance"]["health"]["n_cells"] = counts.to_numpy()  # stored without names: in group order
    with pytest.warns(UserWarning, match=r"B/plasma \(4\)"):
        mx.pl.relevance_heatmap(mdata)


# -------------------------------------------------------------------------------------------- network, errors
def test_relevance_network_on_group_results_and_clear_errors():
    mdata = relevance_mudata()
    ax = mx.pl.relevance_network(mdata, "relevance", n_top=2, modality="adt")
    labels = {t.get_text() for t in ax.texts}
    assert {"type 0", "B/plasma"} <= labels and all(not t.startswith("G") for t in labels)
    with pytest.raises(ValueError, match="cross-modal"):
        mx.pl.relevance_network(mdata, "relevance", "type 0")
    with pytest.raises(ValueError, match="pass `group=`"):
        mx.pl.relevance_network(mdata, "relevance_rna_to_adt")
    with pytest.raises(KeyError, match="run mx.tl.feature_relevance"):
        mx.pl.relevance_dotplot(mdata, "absent")
    with pytest.raises(ValueError, match="group relevance"):
        mx.pl.relevance_heatmap(mdata, "relevance", group="type 0")


# ---------------------------------------------------------------------------------------------------- colours
def _point_colors(fig: Figure) -> list[str]:
    ax = fig.axes[0]
    return [to_hex(c.get_facecolor()[0]) for c in ax.collections if len(c.get_offsets())]


def test_embedding_colours_unique_and_stored_like_scanpy():
    mdata = benchmark_data(n=25)
    fig = mx.pl.embedding(mdata, keys=["X_a"], color="cell_type")
    colors = _point_colors(fig)
    assert len(colors) == 25 and len(set(colors)) == 25
    stored = list(mdata.uns["cell_type_colors"])
    assert stored == colors
    import scanpy as sc

    assert stored == [to_hex(c) for c in sc.pl.palettes.default_28[:25]]


def test_embedding_uses_stored_colours():
    mdata = benchmark_data(n=3)
    mine = ["#000000", "#ff0000", "#00ff00"]
    mdata.uns["cell_type_colors"] = np.array(mine)
    fig = mx.pl.embedding(mdata, keys=["X_a", "X_b"], color="cell_type")
    assert _point_colors(fig) == mine
    mdata.uns["cell_type_colors"] = ["#000000"]  # too few: replaced by scanpy's default, as scanpy does
    mx.pl.embedding(mdata, keys=["X_a"], color="cell_type")
    assert len(set(mdata.uns["cell_type_colors"])) == 3


# ------------------------------------------------------------------------------------------------------ reader
def test_get_result_reader():
    mdata = relevance_mudata()
    assert mx.tl.get_result(mdata, "relevance", kind="relevance") is mdata.uns["relevance"]
    part = mx.tl.get_result(mdata, "relevance_rna_to_adt", group="B/plasma")
    assert part["key"] == "B_plasma" and part["matrix"].shape == (10, 40) and "mean_abs" in part["features"]
    group = mx.tl.get_result(mdata, "relevance", group="B_plasma")
    assert group["key"] == "B_plasma"
    assert group["features"]["rank"].is_monotonic_increasing  # most relevant first (stored in feature order)
    assert not mdata.uns["relevance"]["groups"]["B_plasma"]["rank"].is_monotonic_increasing
    with pytest.raises(KeyError, match="run mx.tl.feature_relevance"):
        mx.tl.get_result(mdata, "relevance_rna_to_morph")
    with pytest.raises(KeyError, match="run mx.tl.benchmark_embeddings"):
        mx.tl.get_result(mdata, "embedding_benchmark", kind="embedding_benchmark")
    with pytest.raises(KeyError, match="Group 'Z'"):
        mx.tl.get_result(mdata, "relevance", group="Z")
    with pytest.raises(ValueError, match="Unknown result kind"):
        mx.tl.get_result(mdata, "relevance", kind="nonsense")


@pytest.mark.parametrize("vmin, vmax, note", [
    (1e-5, 2.4e-5, "x 1e-5"),  # one exponent under the bar, not '1e-05' labels that run together
    (2e5, 4.5e5, "x 1e5"),
    (0.1, 0.52, ""),
    (-0.3, 0.3, ""),
])
def test_colour_bar_ticks_stay_short(vmin, vmax, note):
    from multiomix.pl._relevance import colorbar_ticks

    fig, ax = plt.subplots(figsize=(1.5, 0.3))
    image = ax.imshow([[vmin, vmax]], vmin=vmin, vmax=vmax)
    bar = fig.colorbar(image, cax=ax, orientation="horizontal")
    colorbar_ticks(bar.ax.xaxis, vmin, vmax)
    fig.canvas.draw()
    shown = [t.get_text() for t in bar.ax.xaxis.get_ticklabels() if vmin <= t.get_position()[0] <= vmax]
    assert 2 <= len(shown) <= 3 and all(len(label) <= 4 for label in shown), shown
    assert bar.ax.xaxis.get_label_text() == note
    plt.close(fig)


def test_embedding_reads_any_2d_basis_and_colours_numbers_on_one_scale():
    rng = np.random.default_rng(0)
    adata = ad.AnnData(np.zeros((60, 1), dtype=np.float32),
                       obs=pd.DataFrame({"score": rng.random(60), "type": pd.Categorical(rng.choice(["a", "b"], 60))},
                                        index=[f"c{i}" for i in range(60)]))
    adata.obsm["X_umap"] = rng.normal(size=(60, 2))
    adata.obsm["X_wide"] = rng.normal(size=(60, 8))
    fig = mx.pl.embedding(adata, "X_umap", color="score", show=False)
    assert fig.axes[-1].get_ylabel() == "score"  # the colour bar
    assert not [k for k in adata.uns if k.endswith("_colors")]  # nothing written for a numeric column
    mx.pl.embedding(adata, "X_umap", color="type", show=False)
    with pytest.raises(KeyError, match=r"obsm\['X_wide'\] has 8 dimensions.*sc.tl.umap"):
        mx.pl.embedding(adata, "X_wide", color="type", show=False)
    plt.close("all")


def test_bad_plot_arguments_get_clear_errors():
    mdata = relevance_mudata()
    for plot in (mx.pl.relevance_dotplot, mx.pl.relevance_heatmap, mx.pl.relevance_network):
        with pytest.raises(ValueError, match="n_top must be a whole number >= 1"):
            plot(mdata, "relevance", n_top=0)
    with pytest.raises(KeyError, match=r"groups: \[.*'B/plasma'"):  # the names the user knows, not storage keys
        mx.pl.relevance_dotplot(mdata, "relevance", groups=["B plasma"])
    data = benchmark_data(n=3)
    with pytest.raises(KeyError, match=r"\['val_loss'\] not in the history.*'validation_loss'"):
        mx.pl.training_history(data, "model", metrics=["val_loss"])
    with pytest.raises(ValueError, match="2 titles for 1 embeddings"):
        mx.pl.embedding(data, "X_a", color="cell_type", titles=["one", "two"])
    adata = genomic_adata()
    with pytest.raises(ValueError, match=r"split='tset' matches no region.*'test'"):
        mx.pl.track_prediction(adata, split="tset")
    with pytest.raises(KeyError, match=r"Track 'nope' not found; tracks: \['signal'\]"):
        mx.pl.track_prediction(adata, track="nope")


def test_missing_values_are_drawn_and_said():
    data = benchmark_data(n=3)
    data.obs["score"] = np.linspace(0, 1, data.n_obs)
    data.obs.loc[data.obs_names[:5], "score"] = np.nan
    fig = mx.pl.embedding(data, "X_a", color="score")
    sizes = [len(c.get_offsets()) for c in fig.axes[0].collections]
    assert sizes == [5, data.n_obs - 5]  # NaN cells in grey underneath, not transparent
    assert fig.axes[-1].get_ylabel() == "score (5 NaN in grey)"
    data.obs["score"] = np.nan
    with pytest.raises(ValueError, match="no finite value"):
        mx.pl.embedding(data, "X_a", color="score")
    data.obs["kind"] = pd.Categorical([None] * 4 + ["a"] * (data.n_obs - 4), categories=["a", "b"])
    fig = mx.pl.embedding(data, "X_a", color="kind")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "NA"]  # unused 'b' left out, NA last
    data.uns["embedding_benchmark"].loc["X_b", "nmi"] = np.nan
    ax = mx.pl.benchmark(data, "embedding_benchmark")
    assert "n/a" in [t.get_text() for t in ax.texts]
    data.uns["embedding_benchmark"].loc[:, :] = np.nan
    with pytest.raises(ValueError, match="no finite value"):
        mx.pl.benchmark(data, "embedding_benchmark")


def test_training_history_marks_the_kept_epoch_and_refuses_an_empty_history():
    data = benchmark_data(n=3)
    data.uns["model"]["best_epoch"] = 1
    ax = mx.pl.training_history(data, "model")
    assert ax.get_title().endswith("(kept: epoch 1)") and any(list(line.get_xdata()) == [1, 1] for line in ax.lines)
    data.uns["model"]["best_epoch"] = -1
    assert mx.pl.training_history(data, "model").get_title().endswith("(kept: the weights before training)")
    legend = [t.get_text() for t in mx.pl.training_history(data, "model").get_legend().get_texts()]
    assert not any("linear path" in t for t in legend)
    data.uns["model"]["params"] = {"linear_path": "fitted"}  # CrossAttOmics: the validation rows fitted the linear path
    legend = [t.get_text() for t in mx.pl.training_history(data, "model").get_legend().get_texts()]
    assert mx.pl.training_history(data, "model").get_title().endswith("(kept: the fitted linear path alone)")
    assert [t for t in legend if t.startswith("validation")] and all(
        t.endswith("(rows the linear path saw)") for t in legend if t.startswith("validation"))
    # in an Axes of the user's grid the legend stays inside it (below it, the next row's panel covers it)
    fig, axes = plt.subplots(2, 2)
    mx.pl.training_history(data, "model", ax=axes[0, 0], show=False)
    legends = [a.get_legend() for a in fig.axes if a.get_legend() is not None]
    assert len(legends) == 1
    fig.canvas.draw()
    box = legends[0].get_window_extent().transformed(axes[0, 0].transAxes.inverted())
    assert box.y0 >= -0.01 and box.y1 <= 1.01
    plt.close(fig)
    data.uns["model"]["history"] = pd.DataFrame({"train_loss": []})
    with pytest.raises(ValueError, match="no epoch was trained"):
        mx.pl.training_history(data, "model")


def test_training_history_draws_each_metric_at_its_epochs_and_only_the_metrics_asked_for():
    history = {"train_loss": pd.DataFrame({"train_loss": [1.0, 0.8, 0.7, 0.6]}),
               "late_loss": pd.DataFrame({"late_loss": [0.5, 0.4]}, index=pd.Index([2, 3], name="epoch")),
               "validation_accuracy": pd.DataFrame({"validation_accuracy": [0.5, 0.6, 0.7, 0.8]})}
    data = benchmark_data(n=3)
    data.uns["model"]["history"] = mx._utils.history_frame(history)
    ax = mx.pl.training_history(data, "model")
    late = next(line for line in ax.lines if line.get_label() == "late_loss")
    x, y = np.asarray(late.get_xdata(), float), np.asarray(late.get_ydata(), float)
    assert x[np.isfinite(y)].tolist() == [2, 3]  # logged from epoch 2 on: drawn there
    assert late.get_marker() == "o"  # a metric logged at some epochs only is drawn with markers (none vanish)
    ax = mx.pl.training_history(data, "model", metrics=["train_loss"])
    drawn = [line.get_label() for a in ax.figure.axes for line in a.lines if not line.get_label().startswith("_")]
    assert drawn == ["train_loss"]
    ax = mx.pl.training_history(data, "model")  # an accuracy without its loss gets a colour no loss has
    twin = [other for other in ax.figure.axes if other is not ax][0]
    loss_colours = {line.get_color() for line in ax.lines if line.get_label().endswith("_loss")}
    assert twin.lines[0].get_color() not in loss_colours


def test_accuracy_axis_stays_within_0_and_1():
    data = benchmark_data(n=3)
    data.uns["model"]["history"]["validation_accuracy"] = 1.0  # flat at 1: autoscaling would reach 1.05
    ax = mx.pl.training_history(data, "model")
    twin = [other for other in ax.figure.axes if other is not ax][0]
    assert twin.get_ylim()[1] <= 1.02


def test_groups_alike_in_their_first_characters_keep_one_bracket_each():
    mdata = relevance_mudata(n_groups=3)
    long = ["CD4-positive, alpha-beta memory T cell", "CD4-positive, alpha-beta T cell", "B/plasma"]
    mdata.uns["relevance"]["params"]["groups"] = long
    for name in ("relevance_dotplot", "relevance_heatmap"):
        fig = getattr(mx.pl, name)(mdata, n_top=2, return_fig=True)
        texts = {t.get_text() for ax in fig.axes for t in ax.texts}
        assert {"CD4-positive,…y T cell", "CD4-positive,…a T cell", "B/plasma"} <= texts, (name, texts)
        plt.close(fig)


def test_one_embedding_with_many_categories_gets_its_legend_beside_it(tmp_path):
    rng = np.random.default_rng(0)
    data = ad.AnnData(np.zeros((300, 1)), obsm={"X_a": rng.normal(size=(300, 2))},
                      obs=pd.DataFrame({"kind": pd.Categorical([f"type {i % 27}" for i in range(300)])},
                                       index=[f"c{i}" for i in range(300)]))
    mx.pl.embedding(data, keys="X_a", color="kind", save=tmp_path / "one.png")
    width, height = plt.imread(tmp_path / "one.png").shape[1::-1]
    assert width > 1.5 * height  # not a narrow strip with the legend underneath
    plt.close("all")


def test_a_relevance_plot_in_the_users_axes_keeps_its_title_above_the_group_labels():
    mdata = relevance_mudata(n_groups=3)
    mdata.uns["relevance"]["params"]["groups"] = ["a long group name of 30 chars", "another long group name here", "B"]
    for name in ("relevance_dotplot", "relevance_heatmap"):
        fig, (_, theirs) = plt.subplots(1, 2, figsize=(12, 5))
        getattr(mx.pl, name)(mdata, n_top=2, ax=theirs, show=False)
        renderer = fig.canvas.get_renderer()
        labels = [t for a in fig.axes for t in a.texts if t.get_text().startswith(("a long", "another"))]
        titles = [t for a in fig.axes for t in a.get_children()
                  if isinstance(t, matplotlib.text.Text) and t.get_text().startswith("Top 2")]
        assert labels and len(titles) == 1
        title_bottom = titles[0].get_window_extent(renderer).y0
        assert title_bottom >= max(t.get_window_extent(renderer).y1 for t in labels) - 1, name
        plt.close(fig)


def test_stress_cases_many_embeddings_long_class_names_new_folders_and_wrong_keys(tmp_path):
    from matplotlib.colors import to_hex

    data = benchmark_data(n=3)
    names = [f"X_e{i}" for i in range(12)]
    data.uns["embedding_benchmark"] = pd.DataFrame({"nmi": np.linspace(0.3, 0.9, 12), "ari": np.linspace(0.2, 0.8, 12)},
                                                   index=names)
    ax = mx.pl.benchmark(data, show=False, save=tmp_path / "new" / "folder" / "bench.png")
    assert (tmp_path / "new" / "folder" / "bench.png").exists()  # the folder is created, as scanpy does
    colours = {to_hex(p.get_facecolor()) for p in ax.patches}
    assert len(colours) == 12  # one colour per embedding (tab10 repeated after 10)
    with pytest.raises(KeyError, match=r"stored under \['embedding_benchmark'\]"):
        mx.pl.benchmark(data, "nope", show=False)
    share = pd.DataFrame({"mrna->mirna": [0.5, 0.2], "mirna->mrna": [0.5, 0.8]},
                         index=["Luminal A, hormone receptor positive", "Basal-like, triple negative"])
    data.uns["crossattomics_interactions"] = {"share": share, "mean": share - 0.5}
    fig = mx.pl.interaction_importance(data, kind="bar", show=False)
    ticks = fig.axes[0].get_xticklabels()
    assert ticks[0].get_rotation() == 35 and fig.axes[0].get_xlabel() == "class"
    plt.close("all")


def test_relevance_plots_with_one_group_and_tiny_values():
    mdata = relevance_mudata()
    ax = mx.pl.relevance_heatmap(mdata, "relevance", groups=["type 1"], show=False)
    values = np.concatenate([np.asarray(c.get_array()).ravel() for c in ax.collections if c.get_array() is not None])
    assert not np.allclose(values, 1.0)  # "auto" does not scale a single row per column (it became all ones)
    for frame in mdata.uns["relevance_rna_to_adt"]["matrices"].values():
        frame *= 1e-5
    ax = mx.pl.relevance_network(mdata, "relevance_rna_to_adt", "type 0", scale=None, show=False)
    labels = [a.xaxis.get_label_text() for a in ax.figure.axes if a is not ax]
    assert any(label.startswith("mean |relevance|") and "1e-" in label for label in labels), labels
    with pytest.raises(KeyError, match=r"stored under \['relevance'"):
        mx.pl.relevance_dotplot(mdata, "absent")


def test_benchmark_metric_names_wrap_in_a_narrow_axes():
    data = benchmark_data(n=3)
    data.uns["embedding_benchmark"]["asw_batch"] = [0.8, 0.7]
    data.uns["embedding_benchmark"]["graph_connectivity"] = [0.9, 0.95]
    wide = [t.get_text() for t in mx.pl.benchmark(data, show=False).get_xticklabels()]
    assert "cell-type ASW" in wide
    fig, axes = plt.subplots(2, 3, figsize=(6, 4))
    narrow = [t.get_text() for t in mx.pl.benchmark(data, ax=axes[0, 0], show=False).get_xticklabels()]
    assert "cell-type\nASW" in narrow and "graph\nconn." in narrow


@pytest.mark.parametrize(("save", "error"), [(True, TypeError), (".png", ValueError), (3, TypeError)])
def test_save_takes_a_path_and_refuses_scanpys_shortcuts_clearly(save, error, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    data = ad.AnnData(np.zeros((20, 1)), obsm={"X_a": rng.normal(size=(20, 2))},
                      obs=pd.DataFrame({"kind": pd.Categorical(["a", "b"] * 10)}, index=[f"c{i}" for i in range(20)]))
    with pytest.raises(error, match="save="):
        mx.pl.embedding(data, keys="X_a", color="kind", save=save, show=False)
    assert not list(tmp_path.iterdir())  # no hidden '.png.png' written
    plt.close("all")


def test_save_takes_any_path_like_and_leaves_no_figure_open_when_refused(tmp_path):
    import os

    class Where(os.PathLike):
        def __fspath__(self):
            return str(tmp_path / "custom.png")

    rng = np.random.default_rng(0)
    data = ad.AnnData(np.zeros((20, 1)), obsm={"X_a": rng.normal(size=(20, 2))},
                      obs=pd.DataFrame({"kind": pd.Categorical(["a", "b"] * 10)}, index=[f"c{i}" for i in range(20)]))
    mx.pl.embedding(data, keys="X_a", color="kind", save=Where(), show=False)
    assert (tmp_path / "custom.png").exists()
    plt.close("all")
    with pytest.raises(TypeError, match="save="):
        mx.pl.embedding(data, keys="X_a", color="kind", save=True, show=False)
    assert not plt.get_fignums()


def test_titles_say_which_rows_and_which_patient_they_show():
    gen = genomic_adata()
    assert "(test, n=10)" in mx.pl.track_prediction(gen).get_title()
    del gen.obs["split"]  # no split column: every region is drawn, and the title says so, not "test"
    assert "(all regions, n=20)" in mx.pl.track_prediction(gen).get_title()
    # tile attention by the true class: the example slide is a patient predicted as that class
    tiles = tile_mudata()
    confidence = tiles.obs["medcrossvit_confidence"].to_numpy().copy()
    truth = np.repeat(["tumour", "normal"], tiles.n_obs // 2)
    truth[6] = "tumour"  # p6: a tumour predicted normal, made the most confident patient of all
    confidence[6] = 0.999
    tiles.obs["truth"], tiles.obs["medcrossvit_confidence"] = pd.Categorical(truth), confidence
    fig = mx.pl.tile_attention(tiles, groupby="truth", n_top=3)
    titles = [a.get_title() for a in fig.axes]
    assert not any(t.startswith("p6 ") for t in titles)
    tiles.obs["truth"] = pd.Categorical(np.where(np.arange(tiles.n_obs) == 6, "rare", truth))
    titles = [a.get_title() for a in mx.pl.tile_attention(tiles, groupby="truth", n_top=3).axes]
    assert "p6 (rare, predicted normal, 9 tiles)" in titles  # no patient of the class predicted as it: said


def test_relevance_heatmap_var_scale_runs_each_column_from_0_to_1():
    rel = relevance_mudata()
    ax = mx.pl.relevance_heatmap(rel, standard_scale="var", show=False)
    values = np.asarray(ax.collections[0].get_array(), float).reshape(len(ax.get_yticks()), -1)
    np.testing.assert_allclose(np.nanmin(values, 0), 0, atol=1e-9)
    np.testing.assert_allclose(np.nanmax(values, 0), 1, atol=1e-9)
