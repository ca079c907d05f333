from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import anndata as ad
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

import multiomix as mx
from multiomix.module._genomic_interpreter import DEFAULT_BACKBONE_KWARGS, build_backbone, infer_loss
from multiomix.nn.swin1d import Attention, Swin1D, SwinLayer, TokenMerge, TrackHead
from multiomix.train._genomic_interpreter import lr_factor

os.environ.setdefault("MULTIOMIX_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
torch.set_num_threads(1)

TINY_SWIN = {"dims": (16, 24), "depths": (1, 1), "window": 8, "heads": 2, "dim_head": 8, "transformer_depth": 1,
             "stem_kernel": 9, "stem_pool": 2, "drop_path": 0.0}
FIT = {"accelerator": "cpu", "enable_progress_bar": False}


# ---------------------------------------------------------------- io / pp


def test_read_fasta_and_one_hot(tmp_path):
    path = tmp_path / "x.fa"
    path.write_text(">r1 desc\nACGT\nNN\n>r2\nttgcaa\n")
    records = mx.io.read_fasta(path)
    assert records == {"r1": "ACGTNN", "r2": "TTGCAA"}
    onehot = mx.pp.one_hot_encode(records)
    assert onehot.shape == (2, 6, 4) and onehot.dtype == np.uint8
    np.testing.assert_array_equal(onehot[0, :4], np.eye(4))
    assert onehot[0, 4:].sum() == 0  # N -> all zeros
    np.testing.assert_array_equal(onehot[1].argmax(1), [3, 3, 2, 1, 0, 0])


def test_one_hot_errors_name_the_record(tmp_path):
    with pytest.raises(ValueError, match="'bad'.*'X'"):
        mx.pp.one_hot_encode({"ok": "ACGT", "bad": "ACXT"})
    with pytest.raises(ValueError, match="same length"):
        mx.pp.one_hot_encode({"a": "ACGT", "b": "ACG"})
    regions = ad.AnnData(np.zeros((3, 1), np.float32), obs=pd.DataFrame({"sequence": ["ACG", None, "TTA"]},
                                                                        index=["r1", "r2", "r3"]))
    with pytest.raises(ValueError, match="1 missing sequences \\(e.g. 'r2'\\)"):  # not encoded as N-A-N
        mx.pp.one_hot_sequences(regions, sequence_key="sequence")
    assert "dna_onehot" not in regions.obsm
    path = tmp_path / "dup.fa"
    path.write_text(">a\nAC\n>a\nGT\n")
    with pytest.raises(ValueError, match="duplicate"):
        mx.io.read_fasta(path)


def test_reverse_complement_numpy_and_torch():
    x = mx.pp.one_hot_encode(["AACGTN"])
    expected = mx.pp.one_hot_encode(["NACGTT"])
    np.testing.assert_array_equal(mx.pp.reverse_complement(x), expected)
    np.testing.assert_array_equal(mx.pp.reverse_complement(torch.as_tensor(x)).numpy(), expected)


def test_one_hot_sequences_from_fasta_intervals(tmp_path):
    path = tmp_path / "genome.fa"
    path.write_text(">chr1\nAAAACCCCGGGGTTTT\n>chr2\nACGTACGTNN\n")
    obs = pd.DataFrame({"chrom": ["chr1", "chr2"], "start": [4, 6], "end": [8, 10]}, index=["p1", "p2"])
    adata = ad.AnnData(obs=obs)
    mx.pp.one_hot_sequences(adata, fasta=path)
    np.testing.assert_array_equal(adata.obsm["dna_onehot"][0].argmax(1), [1, 1, 1, 1])
    assert adata.obsm["dna_onehot"][1, 2:].sum() == 0
    bad = ad.AnnData(obs=pd.DataFrame({"chrom": ["chr1"], "start": [10], "end": [20]}, index=["p9"]))
    with pytest.raises(ValueError, match="p9"):
        mx.pp.one_hot_sequences(bad, fasta=path)
    assert "dna_onehot" not in bad.obsm
    seqs = ad.AnnData(obs=pd.DataFrame({"sequence": ["ACGT", "ACGU"]}, index=["s1", "s2"]))
    with pytest.raises(ValueError, match="s2"):
        mx.pp.one_hot_sequences(seqs)
    assert "dna_onehot" not in seqs.obsm
    # the fit's sequence_key names the one-hot obsm entry: a text column of that name is pointed out
    text = ad.AnnData(np.zeros((20, 1), np.float32),
                      obs=pd.DataFrame({"sequence": ["ACGT"] * 20}, index=[f"r{i}" for i in range(20)]))
    with pytest.raises(KeyError, match="holds the sequences as text"):
        mx.tl.fit_genomic_interpreter(text, sequence_key="sequence")


# ---------------------------------------------------------------- nn


def test_window_attention_is_local_and_shift_connects_windows():
    torch.manual_seed(0)
    layer = SwinLayer(dim=8, window=4, heads=2, dim_head=4).eval()
    x = torch.randn(1, 32, 8)
    y = x.clone()
    y[0, 0] = torch.randn(8) * 3  # not a constant shift, which LayerNorm would hide
    with torch.no_grad():
        dx, dy = layer(x), layer(y)
        changed = (dx - dy).abs().sum(-1)[0] > 1e-4
        _, weights = layer(x, return_attention=True)
    # token 0 reaches its window [0, 4), then the shifted windows {30, 31, 0, 1} and {2..5}; the FFN's
    # depthwise convolutions add one token each way per pass
    assert not changed[8:28].any()
    assert changed[4]  # only reachable through the shifted pass
    regular, shifted = (w.dense()[0].mean(0) for w in weights)
    assert regular[0, 4] == 0 and regular[0, :4].sum() > 0.99
    assert shifted[3, 4] > 0 and shifted[3, 1] == 0  # shifted window {2, 3, 4, 5}
    np.testing.assert_allclose(regular.sum(-1).numpy(), 1.0, atol=1e-5)


def test_shifted_pass_equals_explicit_windows():
    # 14 tokens, window 4 -> padded to 16, shift 2: the shifted windows are [2, 6), [6, 10), [10, 14) and the
    # wrapped window {14, 15, 0, 1}, in which the pad tokens 14, 15 are masked and 0, 1 may not see across the seam
    torch.manual_seed(0)
    layer = SwinLayer(dim=8, window=4, heads=2, dim_head=4).eval()
    torch.nn.init.normal_(layer.blocks[1][1].position_bias)
    x = torch.nn.functional.pad(torch.randn(2, 14, 8), (0, 0, 0, 2))
    norm, attn, _ = layer.blocks[1]
    with torch.no_grad():
        out, weights = layer.window_pass(x, block=1, shift=2, n=14, return_attention=True)
        dense = weights.dense()
        for start, stop in ((0, 2), (2, 6), (6, 10), (10, 14)):
            explicit, w = attn(norm(x[:, start:stop]), return_attention=True)
            torch.testing.assert_close(out[:, start:stop], explicit, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(dense[:, :, start:stop, start:stop], w, atol=1e-6, rtol=1e-5)
            outside = torch.ones(14, dtype=torch.bool)
            outside[start:stop] = False
            assert dense[:, :, start:stop][..., outside].abs().max() == 0  # a token sees its window only
    torch.testing.assert_close(dense.sum(-1), torch.ones(2, 2, 14))


def test_the_shifted_pass_does_not_carry_the_start_to_the_end_through_pad_tokens():
    """10 tokens, window 4: padded to 12, the last shifted window wraps pads 10-11 around to tokens 0-1; pad queries
    (every key masked) attend uniformly, and the feed-forward's convolution used to pass that to token 9."""
    torch.manual_seed(0)
    layer = SwinLayer(dim=8, window=4, heads=2, dim_head=4).eval()
    x = torch.randn(1, 10, 8, requires_grad=True)
    out = layer(x)
    (grad,) = torch.autograd.grad(out[0, 9].sum(), x)
    assert grad[0, :2].abs().max() == 0  # tokens 0-1 share no window (regular or shifted) and no conv with 9
    assert grad[0, 9].abs().max() > 0


def test_odd_token_merge_keeps_the_last_token_and_even_kernels_are_refused():
    torch.manual_seed(0)
    merge = TokenMerge(dim=4, dim_out=4).eval()
    x = -torch.rand(1, 3, 4)  # all negative: pairing the last token with a zero token clamped it to 0
    out = merge(x)
    torch.testing.assert_close(out[0, -1], merge.proj(merge.norm(x[0, -1])))
    with pytest.raises(ValueError, match="stem_kernel must be an odd width"):
        Swin1D(dims=(8,), depths=(1,), window=4, heads=2, dim_head=4, stem_kernel=16)
    with pytest.raises(ValueError, match="kernels must be an odd width"):
        build_backbone("cnn_maxpool", dims=(8,), kernels=4)


def test_padding_is_masked():
    torch.manual_seed(0)
    layer = SwinLayer(dim=8, window=8, heads=2, dim_head=4).eval()
    with torch.no_grad():
        _, weights = layer(torch.randn(2, 13, 8), return_attention=True)
    raw = weights[0].weights  # (b, windows, heads, w, w); last window has 3 pad keys
    assert raw.shape[1] == 2
    assert raw[:, 1, :, :, 5:].abs().max() < 1e-6


def test_relative_positions_break_permutation_symmetry():
    torch.manual_seed(0)
    attn = Attention(dim=8, heads=2, dim_head=4, max_distance=16)
    torch.nn.init.normal_(attn.position_bias)
    x = torch.randn(1, 6, 8)
    perm = torch.tensor([5, 4, 3, 2, 1, 0])
    out, out_perm = attn(x), attn(x[:, perm])
    assert not torch.allclose(out[:, perm], out_perm, atol=1e-4)


def test_swin_shapes_merge_and_attention_layers():
    net = Swin1D(**TINY_SWIN)
    tokens, weights = net(torch.randn(3, 50, 4), return_attention=True)
    assert tokens.shape == (3, 13, 24) and net.reduction == 4
    assert set(weights) == {"stage0.layer0.regular", "stage0.layer0.shifted", "stage1.layer0.regular",
                            "stage1.layer0.shifted", "transformer.layer0"}
    assert weights["stage1.layer0.regular"].dense().shape == (3, 2, 13, 13)
    assert TokenMerge(dim=4, dim_out=6)(torch.randn(1, 5, 4)).shape == (1, 3, 6)
    full = Swin1D(**{**TINY_SWIN, "window": None})
    _, w_full = full(torch.randn(1, 50, 4), return_attention=True)
    assert (w_full["stage0.layer0.regular"].dense()[0] > 0).all()  # one window = full attention


def test_stochastic_depth_grows_over_layers_and_only_acts_in_training():
    net = Swin1D(**{**TINY_SWIN, "drop_path": 0.3})
    rates = [layer.drop_path.p for _, layers in net.stages for layer in layers]
    rates += [d.p for d in net.transformer.drop_paths]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3) and rates == sorted(rates)
    x = torch.randn(8, 50, 4)
    plain = Swin1D(**TINY_SWIN)
    plain.load_state_dict(net.state_dict())  # drop path adds no parameters
    net.eval(), plain.eval()
    torch.testing.assert_close(net(x), plain(x))  # evaluation: identical to the network without it
    net.train()
    torch.manual_seed(0)
    first = net(x)
    torch.manual_seed(1)
    assert not torch.allclose(first, net(x))  # training: branches dropped at random
    with pytest.raises(ValueError, match="drop path"):
        Swin1D(**{**TINY_SWIN, "drop_path": 1.0})


def test_full_attention_default_is_the_swin_network_with_one_window():
    # the cost comparison relies on both defaults being the same network apart from the window
    swin, full = DEFAULT_BACKBONE_KWARGS["swin1d"], DEFAULT_BACKBONE_KWARGS["full_attention"]
    assert {**swin, "window": None} == full and swin["window"] is not None
    nets = [build_backbone(name) for name in ("swin1d", "full_attention")]
    assert [p.shape for p in nets[0].parameters()] == [p.shape for p in nets[1].parameters()]
    nets[1].load_state_dict(nets[0].state_dict())  # same weights (the position basis spans the window)
    x = torch.randn(1, 200, 4)
    assert nets[0](x).shape == nets[1](x).shape == (1, 13, swin["dims"][-1])


def test_attention_pooling_starts_as_the_mean_and_can_select_a_position():
    torch.manual_seed(0)
    meanmax, attention = TrackHead(dim=8, n_tracks=2), TrackHead(dim=8, n_tracks=2, pool="attention")
    attention.net.load_state_dict(meanmax.net.state_dict())
    tokens = torch.randn(3, 10, 8)
    torch.testing.assert_close(attention(tokens), meanmax(tokens))
    with torch.no_grad():  # large self-weights: each feature's softmax picks the position where it is largest
        attention.pool_logits.weight.copy_(1000 * torch.eye(8))
    peak = tokens.amax(dim=1)
    torch.testing.assert_close(attention(tokens), attention.net(torch.cat([peak, peak], dim=-1)), atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="pool"):
        TrackHead(dim=8, n_tracks=2, pool="sum")


@pytest.mark.parametrize("name", ["cnn_maxpool", "cnn_attpool", "cnn_dilated", "enformer_like"])
def test_baseline_backbones(name):
    net = build_backbone(name)
    tokens = net(torch.randn(2, 200, 4))
    assert tokens.shape[0] == 2 and tokens.shape[2] == net.out_dim
    assert tokens.shape[1] == -(-200 // net.reduction)
    assert TrackHead(dim=net.out_dim, n_tracks=3)(tokens).shape == (2, 3)
    assert TrackHead(dim=net.out_dim, n_tracks=3, n_bins=5)(tokens).shape == (2, 5, 3)


# ---------------------------------------------------------------- datasets


def test_oct4_mafk_loader():
    adata = mx.datasets.oct4_mafk()
    assert adata.shape == (7997, 1)
    assert adata.obsm["dna_onehot"].shape == (7997, 200, 4)
    assert adata.obsm["dna_onehot"].sum(-1).max() == 1
    counts = adata.obs.groupby(["split", "factor"], observed=True).size()
    assert counts[("test", "Oct4")] == 100 and counts[("test", "Mafk")] == 100
    assert counts[("validation", "Oct4")] == 390
    assert adata.X[adata.obs["factor"] == "Oct4"].min() == 1
    assert {"chrom", "start", "end"} <= set(adata.obs.columns)
    assert (adata.obs["end"] - adata.obs["start"]).eq(200).all()


def test_planted_motifs_truth():
    adata = mx.datasets.planted_motif_pairs(200, length=128, distance=24, n_bins=8, random_state=1)
    pairs = adata.obs["kind"] == "pair"
    assert (adata.obs.loc[pairs, "motif_b_pos"] - adata.obs.loc[pairs, "motif_a_pos"]).eq(24).all()
    seq = adata.obsm["dna_onehot"][np.flatnonzero(pairs)[0]].argmax(1)
    start = int(adata.obs.loc[pairs, "motif_a_pos"].iloc[0])
    assert "".join("ACGT"[i] for i in seq[start : start + 8]) == "TGACGTCA"
    assert adata.X[pairs.to_numpy()].mean() > 3 * adata.X[~pairs.to_numpy()].mean()
    assert adata.obsm["tracks"].shape == (200, 8, 1)


# ---------------------------------------------------------------- model


@pytest.fixture(scope="module")
def motif_data():
    # homopolymer motifs with strong single effects, so that a tiny model learns within a few epochs on CPU
    return mx.datasets.planted_motif_pairs(500, length=128, distance=24, motif_a="GGGGGGGGGG", motif_b="AAAAAAAAAA",
                                           single_effect=8.0, pair_effect=8.0, random_state=0)


@pytest.fixture(scope="module")
def fitted(motif_data):
    adata = motif_data.copy()
    model = mx.tl.fit_genomic_interpreter(adata, backbone="swin1d", backbone_kwargs=TINY_SWIN, max_epochs=6,
                                          batch_size=32, lr=3e-3, **FIT)
    return adata, model


def test_learns_planted_signal(fitted):
    adata, model = fitted
    metrics = adata.uns["genomic_interpreter"]["metrics"]
    assert model.loss_ == "poisson"
    # the rate takes values 2 / 10 / 26 by motif content; the untrained model is ~uncorrelated
    assert metrics["test"].loc["signal", "pearson"] > 0.6
    pred = adata.obsm["genomic_interpreter_prediction"]
    assert pred.shape == (adata.n_obs, 1) and (pred > 0).all()
    history = adata.uns["genomic_interpreter"]["history"]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert "validation_pearson" in history.columns
    pd.testing.assert_frame_equal(adata.uns["genomic_interpreter"]["test_metrics"], metrics["test"])
    # what the fit writes is what model.predict gives by default (both strand-averaged)
    np.testing.assert_array_equal(pred, model.predict())
    assert not np.allclose(pred, model.predict(reverse_complement_average=False))


def test_predict_on_new_regions(fitted):
    adata, model = fitted
    pred = adata.obsm["genomic_interpreter_prediction"]
    rows = np.arange(30)[::-1]
    # sequences only (no targets), rows in another order: identical predictions; the object is not registered
    new = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names[rows]))
    new.obsm["dna_onehot"] = adata.obsm["dna_onehot"][rows]
    np.testing.assert_allclose(model.predict(new), pred[rows], rtol=1e-6)  # other minibatches: float rounding
    assert not any(k.startswith("_scvi") for k in new.uns) and list(new.obsm) == ["dna_onehot"]
    with pytest.raises(ValueError, match="no targets"):
        model.evaluate(new)
    # with the track among other columns: evaluated against it
    extra = ad.AnnData(np.c_[np.zeros((30, 1)), adata.X[rows]].astype(np.float32),
                       obs=new.obs.copy(), var=pd.DataFrame(index=["other", "signal"]))
    extra.obsm["dna_onehot"] = new.obsm["dna_onehot"]
    assert model.evaluate(extra).loc["signal", "pearson"] > 0.5
    wrong = ad.AnnData(obs=new.obs.copy())
    wrong.obsm["dna_onehot"] = new.obsm["dna_onehot"][:, :100]
    with pytest.raises(ValueError, match="128 bp"):
        model.predict(wrong)
    wrong.obsm["dna_onehot"] = 2 * new.obsm["dna_onehot"]
    with pytest.raises(ValueError, match="one-hot"):
        model.predict(wrong)
    partial = ad.AnnData(np.zeros((30, 1), dtype=np.float32), obs=new.obs.copy(), var=pd.DataFrame(index=["other"]))
    partial.obsm["dna_onehot"] = new.obsm["dna_onehot"]
    np.testing.assert_allclose(model.predict(partial), pred[rows], rtol=1e-6)  # no track column: sequences only
    with pytest.raises(NotImplementedError, match="binary"):
        model.relevance_adapter()


def test_swin_learns_non_homopolymer_motifs():
    # the default motifs (TGACGTCA / GGAATTCC) on random DNA: the earlier swin1d (conv + ReLU stem without
    # normalisation, concatenating token merge, no warm-up) reached a test Pearson of 0.25 here, the current 0.53
    adata = mx.datasets.planted_motif_pairs(500, length=128, distance=24, single_effect=8.0, pair_effect=8.0,
                                            random_state=0)
    mx.tl.fit_genomic_interpreter(adata, backbone="swin1d", backbone_kwargs=TINY_SWIN, max_epochs=8, batch_size=32,
                                  lr=3e-3, random_state=0, **FIT)
    assert adata.uns["genomic_interpreter"]["metrics"]["test"].loc["signal", "pearson"] > 0.45


def test_untrained_model_does_not_pass(motif_data):
    adata = motif_data.copy()
    mx.models.GenomicInterpreter.setup_anndata(adata)
    model = mx.models.GenomicInterpreter(adata, backbone_kwargs=TINY_SWIN)
    test = np.flatnonzero(adata.obs["split"] == "test")
    for score in (model.predict, model.evaluate, model.get_attention):  # as every model class: train first
        with pytest.raises(RuntimeError, match="untrained"):
            score()
    model.is_trained_ = True  # the weights at initialisation, scored on purpose
    assert abs(model.evaluate(indices=test).loc["signal", "pearson"]) < 0.4
    nan = adata.copy()
    nan.obsm["dna_onehot"] = nan.obsm["dna_onehot"].astype(np.float32)
    nan.obsm["dna_onehot"][0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.predict(nan)
    with pytest.raises(ValueError, match="NaN"):
        mx.models.GenomicInterpreter.setup_anndata(nan)


def test_save_load_and_h5ad_round_trip(fitted, tmp_path):
    adata, model = fitted
    model.save(tmp_path / "gi", overwrite=True)
    loaded = mx.models.GenomicInterpreter.load(tmp_path / "gi", adata=adata)
    np.testing.assert_array_equal(loaded.predict(), adata.obsm["genomic_interpreter_prediction"])
    model.save(tmp_path / "prefixed", prefix="run1_")
    prefixed = mx.models.GenomicInterpreter.load(tmp_path / "prefixed", adata=adata, prefix="run1_")
    np.testing.assert_array_equal(prefixed.predict(), adata.obsm["genomic_interpreter_prediction"])
    assert not any(k.startswith("_scvi") for k in adata.uns)  # the user's object is not registered
    sequences = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names[:20]))
    sequences.obsm["dna_onehot"] = adata.obsm["dna_onehot"][:20]
    scvi_logger, records = logging.getLogger("scvi"), []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    level = scvi_logger.level
    scvi_logger.setLevel(logging.INFO)
    scvi_logger.addHandler(handler)
    try:  # loading says nothing about scvi-tools' temporary files (their paths would land in notebooks)
        again = mx.models.GenomicInterpreter.load(tmp_path / "gi", adata=sequences)
    finally:
        scvi_logger.removeHandler(handler)
        scvi_logger.setLevel(level)
    assert [r.getMessage() for r in records] == []
    np.testing.assert_array_equal(again.predict(), model.predict(indices=np.arange(20)))
    pairs = np.flatnonzero(adata.obs["kind"] == "pair")[:3]
    mx.tl.attention_maps(adata, model, regions=list(adata.obs_names[pairs]))
    attn = adata.uns["genomic_interpreter"]["attention"]
    assert attn["stage0.layer0.regular"].shape == (3, 2, 64, 64)
    assert adata.uns["genomic_interpreter"]["attention_resolution"]["stage1.layer0.shifted"] == 4
    hits = mx.tl.attention_pair_hit_rate(adata)
    assert set(hits.index) == {"stage0.layer0", "stage1.layer0", "transformer.layer0"}
    assert hits["chance"].between(0, 1).all()
    subset = adata[~adata.obs_names.isin(adata.obs_names[pairs[:1]])].copy()  # uns comes along, a region does not
    with pytest.raises(KeyError, match="1 of the 3 regions whose attention is stored"):
        mx.tl.attention_pair_hit_rate(subset)
    path = tmp_path / "regions.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_allclose(back.uns["genomic_interpreter"]["attention"]["transformer.layer0"],
                               attn["transformer.layer0"])
    pd.testing.assert_frame_equal(back.uns["genomic_interpreter"]["metrics"]["test"],
                                  adata.uns["genomic_interpreter"]["metrics"]["test"], check_index_type=False)


def test_plots(fitted, tmp_path):
    adata, model = fitted
    mx.tl.attention_maps(adata, model, regions=[0, 1])
    fig = mx.pl.attention_maps(adata, region=1, marks={"A": 10})
    assert len(fig.axes) == 3 * 3 + 3  # 3 layers x (2 heads + mean), and one colour bar per layer
    panels = [ax for ax in fig.axes if ax.images]
    for row in range(3):  # the panels of a layer share one colour scale
        assert len({ax.images[0].get_clim() for ax in panels[3 * row: 3 * row + 3]}) == 1
    length = adata.uns["genomic_interpreter"]["attention_length_bp"]
    assert length == adata.obsm["dna_onehot"].shape[1]
    for ax in panels:  # axes span the region, not the padding of a coarse layer's last token
        assert ax.get_xlim() == (0, length)
        assert ax.get_ylim() == (length, 0)
    ax = mx.pl.track_prediction(adata, split="test", save=str(tmp_path / "scatter.png"))
    assert "Pearson" in ax.get_title()
    assert (tmp_path / "scatter.png").stat().st_size > 0


def test_deterministic(motif_data):
    sub = motif_data[:120].copy()
    preds = []
    for _ in range(2):
        adata = sub.copy()
        mx.tl.fit_genomic_interpreter(adata, backbone="cnn_maxpool", backbone_kwargs={"dims": (8, 8)},
                                      max_epochs=1, random_state=3, **FIT)
        preds.append(adata.obsm["genomic_interpreter_prediction"])
    np.testing.assert_array_equal(preds[0], preds[1])


def test_views_partial_tracks_and_empty_data(fitted, motif_data):
    """A view is scored as its copy; predict ignores targets, even some of the tracks; no regions: a clear error."""
    adata, model = fitted
    pred = adata.obsm["genomic_interpreter_prediction"]
    np.testing.assert_allclose(model.predict(adata[:10]), pred[:10], rtol=1e-6)
    assert model.evaluate(adata[:40]).loc["signal", "pearson"] > 0.3
    two = motif_data[:120].copy()
    two = ad.AnnData(np.c_[two.X, two.X].astype(np.float32), obs=two.obs, var=pd.DataFrame(index=["a", "b"]),
                     obsm={"dna_onehot": two.obsm["dna_onehot"]})
    model2 = mx.tl.fit_genomic_interpreter(two, backbone="cnn_maxpool", backbone_kwargs={"dims": (8, 8)},
                                           max_epochs=1, **FIT)
    np.testing.assert_allclose(model2.predict(two[:20, ["a"]].copy()), model2.predict(two[:20]), rtol=1e-6)
    with pytest.raises(KeyError, match=r"lacks the tracks \['b'\]"):
        model2.evaluate(two[:20, ["a"]].copy())
    empty = motif_data[:0].copy()
    del empty.obs["split"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the error comes before any model is built (no 'Mean of empty slice')
        with pytest.raises(ValueError, match="No training rows: the AnnData has 0 regions"):
            mx.tl.fit_genomic_interpreter(empty, backbone="cnn_maxpool", **FIT)


def test_warmup_then_cosine_decay(motif_data):
    cosine = [lr_factor(step, warmup=3, total=13, decay="cosine") for step in range(13)]
    np.testing.assert_allclose(cosine[:4], [1 / 3, 2 / 3, 1.0, 1.0])
    assert all(a > b for a, b in zip(cosine[3:], cosine[4:])) and cosine[-1] < 0.05
    assert [lr_factor(step, warmup=3, total=13) for step in range(3, 13)] == [1.0] * 10
    with pytest.raises(ValueError, match="decay"):
        lr_factor(0, warmup=3, total=13, decay="linear")
    final = {}
    for decay in ("constant", "cosine"):
        model = mx.tl.fit_genomic_interpreter(motif_data[:100].copy(), backbone="cnn_maxpool",
                                              backbone_kwargs={"dims": (8, 8)}, max_epochs=2, lr=1e-3,
                                              plan_kwargs={"lr_decay": decay}, **FIT)
        final[decay] = model.trainer.optimizers[0].param_groups[0]["lr"]
    assert final["constant"] == pytest.approx(1e-3) and final["cosine"] < 1e-4
    with pytest.raises(ValueError, match="lr_decay"):
        mx.tl.fit_genomic_interpreter(motif_data[:100].copy(), backbone="cnn_maxpool", max_epochs=1,
                                      plan_kwargs={"lr_decay": "linear"}, **FIT)


def test_profile_targets_and_binary_loss(caplog):
    adata = mx.datasets.planted_motif_pairs(120, length=128, distance=24, n_bins=8, random_state=0)
    model = mx.tl.fit_genomic_interpreter(adata, backbone="enformer_like", tracks_key="tracks", max_epochs=1,
                                          backbone_kwargs={"dims": (8, 16), "transformer_depth": 1, "heads": 2,
                                                           "dim_head": 4}, **FIT)
    assert adata.obsm["genomic_interpreter_prediction"].shape == (120, 8, 1)
    ax = mx.pl.track_prediction(adata, region=0)
    assert len(ax.lines) == 2
    with pytest.raises(ValueError, match="swin1d"):
        model.get_attention(indices=[0])
    binary = mx.datasets.planted_motif_pairs(100, length=128, distance=24, random_state=0)
    binary.X = (binary.X > 5).astype(np.float32)
    assert infer_loss(binary.X) == "bce"
    binary_model = mx.tl.fit_genomic_interpreter(binary, backbone="cnn_dilated",
                                                 backbone_kwargs={"dim": 8, "n_dilated": 2}, max_epochs=1, **FIT)
    one_class = binary[binary.X[:, 0] == 1].copy()
    with caplog.at_level("WARNING", logger="multiomix"):
        table = binary_model.evaluate(one_class)
    assert table[["auroc", "auprc"]].isna().all().all()
    assert f"one class only among these {one_class.n_obs} regions" in caplog.text
    entry = binary.uns["genomic_interpreter"]
    assert {"auroc", "auprc"} <= set(entry["test_metrics"].columns)
    assert entry["baseline"]["name"] == "logistic_regression_kmer"
    assert {"auroc", "auprc"} <= set(entry["baseline"]["test_metrics"].columns)


def test_no_split_column_holds_out_test_rows_and_binary_adapter():
    adata = mx.datasets.planted_motif_pairs(100, length=128, distance=24, random_state=0)
    adata.X = (adata.X > 5).astype(np.float32)
    del adata.obs["split"]
    before = adata.obs.copy()
    model = mx.tl.fit_genomic_interpreter(adata, backbone="cnn_maxpool", backbone_kwargs={"dims": (8, 8)},
                                          max_epochs=1, key_added="gi", **FIT)
    entry = adata.uns["gi"]
    assert (entry["n_train"], entry["n_validation"], entry["n_test"]) == (68, 12, 20)
    assert (adata.obs["split"] == "test").sum() == 20 and "auroc" in entry["test_metrics"]
    pd.testing.assert_frame_equal(adata.obs.drop(columns="split"), before)
    assert {"gi_prediction"} == set(adata.obsm) - {"dna_onehot", "tracks"}
    # one binary track: its two classes, explained on the flattened one-hot DNA
    adapter = model.relevance_adapter(class_names=("low", "high"))
    x = torch.as_tensor(adata.obsm["dna_onehot"][:5].reshape(5, -1), dtype=torch.float32)
    assert adapter.feature_names["dna"][:5].tolist() == ["0_A", "0_C", "0_G", "0_T", "1_A"]
    with torch.no_grad():
        proba = adapter.get_classifier()(x).numpy()
    np.testing.assert_allclose(proba[:, 1], model.predict(indices=np.arange(5))[:, 0], rtol=1e-5)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)


def test_clear_errors_leave_object_untouched():
    adata = mx.datasets.planted_motif_pairs(60, length=128, distance=24, random_state=0)
    before = (set(adata.uns), set(adata.obsm), adata.obs.copy())
    with pytest.raises(ValueError, match="Unknown backbone"):
        mx.tl.fit_genomic_interpreter(adata, backbone="resnet", max_epochs=1, **FIT)
    with pytest.raises(KeyError, match="dna_missing"):
        mx.tl.fit_genomic_interpreter(adata, sequence_key="dna_missing", max_epochs=1, **FIT)
    negative = adata.copy()
    negative.X = negative.X - 5
    with pytest.raises(ValueError, match="negative"):
        mx.tl.fit_genomic_interpreter(negative, loss="poisson", max_epochs=1, **FIT)
    wrong = adata.copy()
    wrong.obsm["dna_onehot"] = wrong.obsm["dna_onehot"][..., :3]
    with pytest.raises(ValueError, match="length, 4"):
        mx.tl.fit_genomic_interpreter(wrong, max_epochs=1, **FIT)
    duplicated = adata.copy()
    duplicated.obs_names = ["r"] * duplicated.n_obs
    with pytest.raises(ValueError, match="duplicates"):
        mx.tl.fit_genomic_interpreter(duplicated, max_epochs=1, **FIT)
    with pytest.raises(ValueError, match="too few"):
        mx.tl.fit_genomic_interpreter(adata[:2].copy(), split_key="none", max_epochs=1, **FIT)
    assert (set(adata.uns), set(adata.obsm)) == before[:2]
    pd.testing.assert_frame_equal(adata.obs, before[2])


def test_training_rows_of_one_class_and_no_targets():
    """A binary track with one class among the training rows: the baseline is its constant training rate (AUROC
    0.5), not a crash after training; an AnnData without targets gets the clear 'No targets' error."""
    adata = mx.datasets.planted_motif_pairs(100, length=128, distance=24, random_state=0)
    adata.X = (adata.X > 5).astype(np.float32)
    positive = adata.X[:, 0] > 0
    order = np.r_[np.flatnonzero(~positive)[:60], np.flatnonzero(positive)[:10], np.flatnonzero(~positive)[60:78]]
    one_class = adata[order].copy()
    one_class.obs["split"] = pd.Categorical(["train"] * 50 + ["validation"] * 10 + ["test"] * 28)
    assert one_class.X[one_class.obs["split"] == "train", 0].max() == 0
    mx.tl.fit_genomic_interpreter(one_class, backbone="cnn_maxpool", backbone_kwargs={"dims": (8, 8)},
                                  max_epochs=1, key_added="gi", **FIT)
    baseline = one_class.uns["gi"]["baseline"]["test_metrics"]
    assert baseline["auroc"].iloc[0] == 0.5 and np.isfinite(one_class.uns["gi"]["test_metrics"]["auroc"].iloc[0])
    targetless = ad.AnnData(obs=adata.obs, obsm={"dna_onehot": adata.obsm["dna_onehot"]})
    with pytest.raises(ValueError, match="No targets"):
        mx.tl.fit_genomic_interpreter(targetless, max_epochs=1, **FIT)


def test_split_plots_and_scored_regions_follow_the_fit(fitted, motif_data, tmp_path):
    """The written split names the validation rows; track_prediction reads the fit's split column, plots what
    mx.tl.predict scored when the regions have targets, and says when they have none; wrong heads and motif
    lengths are named."""
    adata, model = fitted
    counts = adata.obs["split"].value_counts()
    info = adata.uns["genomic_interpreter"]
    assert (counts["train"], counts["validation"], counts["test"]) == (info["n_train"], info["n_validation"],
                                                                     info["n_test"])
    ax = mx.pl.track_prediction(adata, split="validation")
    assert f"n={info['n_validation']}" in ax.get_title()
    with pytest.raises(ValueError, match="one value per region"):
        mx.pl.track_prediction(adata, region=0)
    other = motif_data[:150].copy()
    other.obs["fold"] = np.where(np.arange(other.n_obs) < 30, "test", "train")
    other.obs["split"] = "train"  # an unrelated column of the same name as the default
    mx.tl.fit_genomic_interpreter(other, backbone="cnn_maxpool", backbone_kwargs={"dims": (8, 8)}, max_epochs=1,
                                  split_key="fold", **FIT)
    assert "n=30" in mx.pl.track_prediction(other).get_title()
    new = motif_data[150:210].copy()
    mx.tl.predict(new, model)
    assert "n=60" in mx.pl.track_prediction(new, split=None).get_title()
    bare = ad.AnnData(obs=new.obs[[]].copy(), obsm={"dna_onehot": new.obsm["dna_onehot"]})
    mx.tl.predict(bare, model)
    with pytest.raises(KeyError, match="no observed tracks"):
        mx.pl.track_prediction(bare, split=None)
    renamed = new.copy()
    renamed.var_names = ["not_a_track"]
    with pytest.raises(ValueError, match=r"no targets the model can read \(expected: columns of \.X / the layer"):
        model.evaluate(renamed)
    mx.tl.predict(renamed, model)  # columns of other names are not taken by position (they could be other assays)
    with pytest.raises(KeyError, match=r"no observed tracks .* matched by name.*\['not_a_track'\]"):
        mx.pl.track_prediction(renamed, split=None)
    mx.tl.attention_maps(adata, model, regions=[0])
    with pytest.raises(IndexError, match="heads \\[9\\] are not heads"):
        mx.pl.attention_maps(adata, region=0, heads=[9])
    with pytest.raises(ValueError, match="motif_length"):
        mx.tl.attention_pair_hit_rate(adata, motif_length=0)


def test_profile_input_is_padded_symmetrically_so_both_strands_share_one_token_grid():
    from multiomix.module._genomic_interpreter import GenomicInterpreterModule

    module = GenomicInterpreterModule(backbone="swin1d", backbone_kwargs={}, n_tracks=1, n_bins=10, loss="mse")
    reduction = module.backbone.reduction
    x = torch.zeros(2, 1000, 4)
    x[:, torch.arange(1000), torch.randint(0, 4, (1000,))] = 1
    padded = module.pad_to_tokens(x)
    extra = padded.shape[1] - 1000
    assert padded.shape[1] % reduction == 0 and 0 < extra < reduction
    torch.testing.assert_close(padded[:, extra // 2: extra // 2 + 1000], x)
    assert padded[:, : extra // 2].abs().sum() == 0 and padded[:, extra // 2 + 1000:].abs().sum() == 0
    reverse = x.flip(-2).flip(-1)  # the reverse complement, padded, is the padded input reverse-complemented
    torch.testing.assert_close(module.pad_to_tokens(reverse), padded.flip(-2).flip(-1))
    assert module.inference(x)["output"].shape == (2, 10, 1)
    scalar = GenomicInterpreterModule(backbone="swin1d", backbone_kwargs={}, n_tracks=1, n_bins=None, loss="mse")
    assert scalar.pad_to_tokens(x) is x  # one value per region: left as it is


def test_far_motif_pairs_keep_both_motifs_when_b_is_longer_than_the_distance():
    adata = mx.datasets.planted_motif_pairs(500, length=128, distance=4, motif_a="TG",
                                            motif_b="GGAATTCCGGAATTCCAAGG", random_state=0)
    onehot = adata.obsm[next(k for k in adata.obsm if "onehot" in k or "dna" in k)]
    letters = np.array(list("ACGT"))[onehot.argmax(-1)]
    for i in np.flatnonzero(adata.obs["motif_a_pos"].to_numpy() >= 0):
        pa = int(adata.obs["motif_a_pos"].iloc[i])
        assert "".join(letters[i, pa:pa + 2]) == "TG", i


def test_stranded_tracks_swap_on_the_reverse_strand(tmp_path):
    from multiomix.module._genomic_interpreter import DNA_KEY, TARGET_KEY, GenomicInterpreterModule
    from multiomix.train._genomic_interpreter import GenomicInterpreterTrainingPlan

    # the module: predictions averaged over strands read the reverse strand's tracks in swapped order
    module = GenomicInterpreterModule(backbone="cnn_maxpool", backbone_kwargs={"dims": (8,)}, n_tracks=3,
                                      n_bins=None, loss="mse", strand_permutation=[1, 0, 2]).eval()
    x = torch.zeros(4, 40, 4)
    x[:, torch.arange(40), torch.randint(0, 4, (40,))] = 1
    with torch.no_grad():
        forward = module.inference(x)["output"]
        reverse = module.inference(x.flip(-2).flip(-1))["output"]
        torch.testing.assert_close(module.predict_mean(x), 0.5 * (forward + reverse[:, [1, 0, 2]]))
    # the augmentation: a flipped region's plus and minus targets swap, an unstranded one stays
    plan = GenomicInterpreterTrainingPlan(module)
    torch.manual_seed(0)
    y = torch.tensor([[1.0, 2.0, 3.0]]).repeat(64, 1)
    batch = plan._augment({DNA_KEY: x[:1].repeat(64, 1, 1), TARGET_KEY: y})
    flipped = ~torch.isclose(batch[DNA_KEY], x[:1].repeat(64, 1, 1)).flatten(1).all(1)
    assert 0 < flipped.sum() < 64
    assert (batch[TARGET_KEY][flipped] == torch.tensor([2.0, 1.0, 3.0])).all()
    assert (batch[TARGET_KEY][~flipped] == y[0]).all()
    # the model and the fit: pairs by track name, checked, kept through save/load
    adata = mx.datasets.planted_motif_pairs(80, length=64, distance=12, random_state=0)
    adata = ad.AnnData(np.hstack([adata.X, adata.X[:, :1] * 2]), obs=adata.obs, obsm=dict(adata.obsm),
                       var=pd.DataFrame(index=["plus", "minus"]))
    with pytest.raises(KeyError, match="strand_pairs names tracks \\['other'\\]"):
        mx.tl.fit_genomic_interpreter(adata, backbone="cnn_maxpool", backbone_kwargs={"dims": (8,)}, max_epochs=1,
                                      strand_pairs=[("plus", "other")], **FIT)
    model = mx.tl.fit_genomic_interpreter(adata, backbone="cnn_maxpool", backbone_kwargs={"dims": (8,)},
                                          max_epochs=1, strand_pairs=[("plus", "minus")], **FIT)
    assert model.module.strand_permutation.tolist() == [1, 0]
    adata.write_h5ad(tmp_path / "gi.h5ad")
    model.save(tmp_path / "gi")
    loaded = mx.models.GenomicInterpreter.load(tmp_path / "gi", adata=adata)
    np.testing.assert_allclose(loaded.predict(), model.predict(), rtol=1e-5, atol=1e-6)
