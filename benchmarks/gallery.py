"""Regenerate the plot gallery: every ``mx.pl`` function at its defaults on real data, and ``docs/gallery.md``.

Models are trained briefly (a gallery shows what the plots look like, not the best model), on one CPU thread:

* CITE-seq bone marrow (``mx.datasets.bmmc_cite``): UnitedNet, group relevance -> relevance dot plot,
  heatmap and network; MultimodalAE + concatenated PCA -> embedding benchmark and UMAPs;
* Patch-seq interneurons (``mx.datasets.patchseq``): UnitedNet, RNA -> morphology cross-modal relevance ->
  relevance network and matrix heatmap of one MET type;
* TCGA BRCA (``mx.datasets.tcga_brca``): CrossAttOmics -> interaction importance and training history;
* Oct4 / Mafk ChIP-seq peaks (``mx.datasets.oct4_mafk``): Genomic Interpreter -> track prediction and
  attention maps;
* synthetic tile bags (``mx.datasets.synthetic_tile_bags``; no public slide-tile data is small enough):
  Med-CrossViT -> tile attention.

Usage::

    python benchmarks/gallery.py                      # all sections, PNGs + docs/gallery.md
    python benchmarks/gallery.py --only relevance     # one section (the page is rewritten from all calls)
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch

import multiomix as mx

ROOT = Path(__file__).resolve().parents[1]
FIT = {"random_state": 0, "accelerator": "cpu", "progress_bar": False}

# (file name, call as shown in the gallery, what the figure shows); the call is run with save= added
CALLS: dict[str, list[tuple[str, str, str]]] = {
    "relevance": [
        ("relevance_dotplot.png", "mx.pl.relevance_dotplot(cite)",
         "Top 3 features of the 12 largest cell types (CITE-seq, UnitedNet group relevance): dot size is the "
         "mean absolute relevance scaled per column, colour the signed mean (red: the feature's values in the "
         "cell type raise the probability of that type)."),
        ("relevance_heatmap.png", "mx.pl.relevance_heatmap(cite)",
         "The same results as a heatmap of the top 5 features per cell type, each column scaled to its maximum."),
        ("relevance_network_groups.png", "mx.pl.relevance_network(cite)",
         "Group results as a network: each cell type linked to its top 3 features; features shared by several "
         "types collect several links."),
    ],
    "cross_modal": [
        ("relevance_network.png", "mx.pl.relevance_network(patch, 'relevance_rna_to_morph', group)",
         "Cross-modal relevance (Patch-seq, RNA -> morphology) of the largest MET type: the 20 strongest "
         "gene -> morphological feature links, in target standard deviations."),
        ("relevance_matrix.png", "mx.pl.relevance_heatmap(patch, 'relevance_rna_to_morph', group=group)",
         "The same group's target x source matrix: its 5 most explained morphological features and their 5 "
         "most relevant genes."),
    ],
    "embedding": [
        ("benchmark.png", "mx.pl.benchmark(cite)",
         "Joint-embedding metrics on CITE-seq: MultimodalAE against PCA of the concatenated modalities and of RNA "
         "alone."),
        ("embedding.png", "mx.pl.embedding(cite, keys=['X_mmae', 'X_pca_concat', 'X_pca_rna'], color='cell_type')",
         "UMAPs of the three embeddings. The 41 cell types get scanpy's `default_102` palette (every type its "
         "own colour), stored in `uns['cell_type_colors']` as scanpy does."),
    ],
    "crossattomics": [
        ("interaction_importance.png", "mx.pl.interaction_importance(tcga)",
         "CrossAttOmics on TCGA BRCA, fitted with `linear_path=None` (the original architecture): share of the "
         "absolute LRP relevance of each PAM50 subtype carried by each cross-attention interaction and unimodal "
         "branch. At the defaults the BRCA fit usually keeps its fitted logistic regression "
         "(`uns['crossattomics']['best_epoch'] == -1`), and the `linear` path then carries all of it."),
        ("interaction_importance_bars.png", "mx.pl.interaction_importance(tcga, kind='bar')",
         "The same shares as grouped bars."),
        ("training_history.png", "mx.pl.training_history(tcga, 'crossattomics')",
         "Training and validation loss per epoch, accuracy on the right axis (dashed)."),
    ],
    "genomic": [
        ("track_prediction.png", "mx.pl.track_prediction(oct4)",
         "Genomic Interpreter (Swin-1D backbone) on Oct4 vs Mafk ChIP-seq peaks: predicted Oct4 probability "
         "against the label on the held-out test peaks."),
        ("attention_maps.png", "mx.pl.attention_maps(oct4, region=0)",
         "Hierarchical attention maps of one held-out Oct4 peak: one row per layer (coarser tokens further down), one "
         "column per head and the head mean."),
    ],
    "transfer": [
        ("transfer.png", "mx.pl.transfer(query, 'cell_type_transferred')",
         "Annotation transfer on CITE-seq, donor s1d1 (reference) to s1d2 (query): reference and query cells on "
         "the transfer's joint latent (UMAP) by source and by label (query cells: transferred labels, grey where "
         "flagged unknown), and the share of each of the query's own labels (rows; never read by the transfer) "
         "assigned to each transferred label (columns). Query types absent from the reference are the rows "
         "below the diagonal block."),
        ("reliability.png", "mx.pl.reliability(query, 'cell_type_transferred')",
         "Reliability of the transfer's confidence on the held-out reference cells, before (grey) and after "
         "temperature scaling. The unknown flag thresholds the match score here (confidence and neighbour "
         "agreement), so no confidence threshold is drawn; with `unknown_score='confidence'` a dotted line marks it."),
    ],
    "tiles": [
        ("tile_attention.png", "mx.pl.tile_attention(tiles)",
         "Med-CrossViT on synthetic tile bags with planted signal (no public slide-tile embeddings are small "
         "enough to ship): top genes by CLS attention per class, and the tile attention of each class's most "
         "confident slide."),
    ],
}


def relevance_inputs(state: dict) -> None:
    cite = mx.datasets.bmmc_cite()
    model = mx.tl.fit_unitednet(cite, label_key="cell_type", max_epochs=40, **FIT)
    classes = [str(c) for c in model.classes]  # cell types too rare to reach the training rows are not classes
    mx.tl.feature_relevance(cite, model, groupby="cell_type", groups=classes, max_cells_per_group=40)
    state["cite"] = cite


def cross_modal_inputs(state: dict) -> None:
    patch = mx.datasets.patchseq()
    model = mx.tl.fit_unitednet(patch, label_key="cell_type_TEM", max_epochs=40, **FIT)
    group = str(patch.obs["cell_type_TEM"].value_counts().index[0])
    mx.tl.feature_relevance(patch, model, groupby="cell_type_TEM", kind="cross_modal", source="rna", target="morph",
                            groups=[group], max_cells_per_group=30)
    state.update(patch=patch, group=group)


def embedding_inputs(state: dict) -> None:
    cite = state["cite"] if "cite" in state else mx.datasets.bmmc_cite()
    mx.tl.pca_concat(cite, n_comps=20)
    mx.tl.pca_concat(cite, n_comps=20, modalities=["rna"], key_added="X_pca_rna")
    mx.tl.fit_multimodal_ae(cite, max_epochs=40, validation_size=0, **FIT)
    mx.tl.benchmark_embeddings(cite, keys=["X_mmae", "X_pca_concat", "X_pca_rna"], label_key="cell_type",
                               batch_key="batch", umap=True)
    state["cite"] = cite


def crossattomics_inputs(state: dict) -> None:
    tcga = mx.datasets.tcga_brca()
    # the original architecture: at the defaults the BRCA fit keeps its fitted logistic regression (best_epoch -1),
    # whose linear path then carries all the relevance and the plot shows no interaction
    model = mx.tl.fit_crossattomics(tcga, label_key="subtype", max_epochs=40, linear_path=None, **FIT)
    mx.tl.interaction_importance(tcga, model)
    state["tcga"] = tcga


def genomic_inputs(state: dict) -> None:
    oct4 = mx.datasets.oct4_mafk()
    rng = np.random.default_rng(0)
    train = np.flatnonzero(oct4.obs["split"] == "train")
    keep = np.sort(np.concatenate([rng.choice(train, 1500, replace=False),
                                   np.flatnonzero(oct4.obs["split"] != "train")]))
    oct4 = oct4[keep].copy()
    model = mx.tl.fit_genomic_interpreter(oct4, backbone="swin1d", max_epochs=4, batch_size=64, **FIT)
    test = oct4.obs_names[(oct4.obs["split"] == "test") & (oct4.obs["factor"] == "Oct4")][:2]
    mx.tl.attention_maps(oct4, model, regions=list(test))
    state["oct4"] = oct4


def tile_inputs(state: dict) -> None:
    tiles, _ = mx.datasets.synthetic_tile_bags(200, random_state=0)
    mx.tl.fit_med_crossvit(tiles, label_key="label", max_epochs=30, **FIT)
    state["tiles"] = tiles


def transfer_inputs(state: dict) -> None:
    cite = mx.datasets.bmmc_cite()
    reference = cite[cite.obs["batch"] == "s1d1"].copy()
    query = cite[cite.obs["batch"] == "s1d2"].copy()  # its own cell_type column is only drawn, never read
    mx.tl.transfer_labels(reference, query, label_key="cell_type", **FIT)
    state["query"] = query


INPUTS = {"relevance": relevance_inputs, "cross_modal": cross_modal_inputs, "embedding": embedding_inputs,
          "crossattomics": crossattomics_inputs, "genomic": genomic_inputs, "transfer": transfer_inputs,
          "tiles": tile_inputs}


def run_section(name: str, out: Path, state: dict) -> None:
    start = time.perf_counter()
    INPUTS[name](state)
    for file, call, _ in CALLS[name]:
        namespace = {"mx": mx, **state}
        eval(call[:-1] + ", save=__path__)", {**namespace, "__path__": out / file})
        plt.close("all")
        print(f"  {file}", flush=True)
    print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)


def markdown(image_dir: str) -> str:
    lines = [
        "# Plot gallery",
        "",
        "Every `mx.pl` function at its defaults on real data (models trained briefly: the gallery shows the plots, "
        "not the best models). The figures were written with `save=`; the script `benchmarks/gallery.py` "
        "regenerates them and this page.",
        "",
        "All plots follow one convention (scanpy's): `show=None` shows the figure in a notebook or window unless "
        "an `ax` was given, `save=` writes it, and the function returns the Axes (or the Figure with "
        "`return_fig=True`; plots of several panels return the Figure). Figures are at most "
        f"`mx.pl.LAPTOP_WIDTH` = {mx.pl.LAPTOP_WIDTH} inches wide for the default numbers of rows and columns, "
        f"saved at `mx.pl.SAVE_DPI` = {mx.pl.SAVE_DPI} dpi (about {int(mx.pl.LAPTOP_WIDTH * mx.pl.SAVE_DPI)} "
        "pixels: readable at 100 % zoom on a laptop screen), with fonts of at least 9 points.",
        "",
        "The relevance plots read the `health` that `mx.tl.feature_relevance` stores with its results. When a shown "
        "group has fewer than 10 cells, the relative additivity error exceeds 0.2, or the explained path is "
        "linear (its relevance is then not specific to a cell type), they raise a `UserWarning` that says so and "
        "print a red *Caution* line under the title.",
        "",
        "The inputs: `cite = mx.datasets.bmmc_cite()` (UnitedNet, `mx.tl.feature_relevance(cite, model, "
        "groupby='cell_type')`; MultimodalAE and `mx.tl.benchmark_embeddings(..., umap=True)`), "
        "`patch = mx.datasets.patchseq()` (UnitedNet, `kind='cross_modal'`, `source='rna'`, `target='morph'`, "
        "`group = patch.obs['cell_type_TEM'].value_counts().index[0]`, its largest MET type), "
        "`tcga = mx.datasets.tcga_brca()` (CrossAttOmics, `linear_path=None`), `oct4 = "
        "mx.datasets.oct4_mafk()` (Genomic Interpreter), `query` (the s1d2 cells of `cite` after "
        "`mx.tl.transfer_labels(reference, query, label_key='cell_type')` from the s1d1 cells, UnitedNet at its "
        "defaults) and `tiles, truth = mx.datasets.synthetic_tile_bags(200)` "
        "(Med-CrossViT, `label_key='label'`).",
        "",
    ]
    titles = {"relevance": "Feature relevance per cell type (CITE-seq)",
              "cross_modal": "Cross-modal relevance (Patch-seq)", "embedding": "Joint embeddings (CITE-seq)",
              "crossattomics": "CrossAttOmics (TCGA BRCA)", "genomic": "Genomic Interpreter (Oct4 / Mafk peaks)",
              "transfer": "Annotation transfer (CITE-seq, donor to donor)",
              "tiles": "Med-CrossViT (synthetic tile bags)"}
    for name, calls in CALLS.items():
        lines += [f"## {titles[name]}", ""]
        for file, call, text in calls:
            lines += ["```python", call, "```", "", text, "", f"![{file[:-4]}]({image_dir}/{file})", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(ROOT / "docs" / "_static" / "gallery"))
    parser.add_argument("--page", default=str(ROOT / "docs" / "gallery.md"))
    parser.add_argument("--only", nargs="*", choices=list(CALLS), default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    for logger in ("lightning", "lightning.pytorch", "lightning.fabric", "scvi"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    torch.set_num_threads(1)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    state: dict = {}
    for name in args.only or list(CALLS):
        run_section(name, out, state)
    Path(args.page).write_text(markdown("_static/gallery"))


if __name__ == "__main__":
    main()
