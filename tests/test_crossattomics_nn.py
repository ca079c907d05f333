"""CrossAttOmicsNet, batched implementation: equal to a per-group reference, gradients, LRP, linear path."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from multiomix.explain import interaction_relevance
from multiomix.nn import (
    AttentionBlock,
    AttOmicsEncoder,
    BatchedAttentionBlock,
    CrossAttOmicsNet,
    MLPHead,
    lrp_mode,
    random_groups,
)

IN_FEATURES = {"rna": 12, "methylation": 10, "mirna": 7, "cnv": 9}
GROUPS = {  # unequal groups, a feature in two groups (2), features in none (rna 4, 11; cnv 8)
    "rna": [[0, 1, 2], [2, 3], [5, 6, 7, 8], [9, 10]],
    "methylation": [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]],
    "mirna": [[0, 1], [2, 3, 4], [5, 6]],
    "cnv": [[0, 1, 2, 3], [4, 5, 6, 7]],
}
SIZES = {"rna": [8, 6], "methylation": [8, 6], "mirna": [8, 6], "cnv": [4]}  # cnv: other widths
GRAPH = {"rna": ["methylation", "mirna", "cnv"], "mirna": ["cnv"]}  # two targets, mixed source widths


def _net(**options) -> CrossAttOmicsNet:
    torch.manual_seed(0)
    net = CrossAttOmicsNet(
        in_features=IN_FEATURES,
        groups=GROUPS,
        group_sizes=SIZES,
        interaction_graph=GRAPH,
        hidden=[16],
        n_classes=3,
        heads=2,
        **options,
    )
    with torch.no_grad():  # non-trivial norms so that the reference has to read the right affine maps
        for name, p in net.named_parameters():
            if "norm_weight" in name or "norm_bias" in name:
                p.add_(0.3 * torch.randn_like(p))
            if name.startswith("linear."):
                p.normal_(0.0, 0.2)
    return net


def _inputs(n: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {m: torch.randn(n, k, generator=generator) for m, k in IN_FEATURES.items()}


# ----------------------------------------------------------------------------- a straightforward reference


def _attention(queries, keys, wq, wk, wv, wo, heads):
    q, k, v = queries @ wq, keys @ wk, keys @ wv
    width = q.shape[-1] // heads
    out = []
    for h in range(heads):
        part = slice(h * width, (h + 1) * width)
        weights = torch.softmax(q[..., part] @ k[..., part].transpose(1, 2) / math.sqrt(width), dim=-1)
        out.append(weights @ v[..., part])
    return torch.cat(out, dim=-1) @ wo


def _block(queries, keys, block: BatchedAttentionBlock, i: int, heads: int):
    """LayerNorm(attention + queries) of block ``i`` of a batched block, computed on its own."""
    d = block.dim
    if block.self_attention:
        w = block.to_qkv[i]
        wq, wk, wv = w[:, :d], w[:, d : 2 * d], w[:, 2 * d :]
    else:
        wq, wk, wv = block.to_q[i], block.to_kv[i][:, :d], block.to_kv[i][:, d:]
    message = _attention(queries, keys, wq, wk, wv, block.to_out[i], heads)
    return F.layer_norm(message + queries, (d,), block.norm_weight[i], block.norm_bias[i])


def _reference_logits(net: CrossAttOmicsNet, x: dict[str, torch.Tensor], heads: int = 2) -> torch.Tensor:
    """Loop over modalities, groups, edges and targets, one small product at a time."""
    tokens = {}
    for m in net.modalities:
        e, start = net._location[m]
        encoder = net.encoders[e]
        kind = encoder.modalities.index(m)
        h = None
        for layer, (projection, attention) in enumerate(zip(encoder.projections, encoder.interactions)):
            per_group = []
            for g, features in enumerate(GROUPS[m]):
                row = start + g
                if layer == 0:
                    value = x[m][:, features] @ projection.weight[row, : len(features)]
                else:
                    value = h[:, g] @ projection.weight[row]
                per_group.append(value + projection.bias[row])
            h = torch.stack(per_group, dim=1)
            h = _block(h, h, attention, kind, heads)
        tokens[m] = h
    flat = []
    for t, sources in net.graph.items():
        pieces = []
        for s in sources:
            j = next(j for j, edges in enumerate(net._cross_edges) if (s, t) in edges)
            pieces.append(_block(tokens[t], tokens[s], net.cross[j], net._cross_edges[j].index((s, t)), heads))
        if net.add_unimodal_to_multimodal:
            pieces.append(tokens[t])
        joined = torch.cat(pieces, dim=1)
        for block, targets in zip(net.target_attention, net._target_sets):
            if t in targets:
                joined = _block(joined, joined, block, targets.index(t), heads)
        flat.append(joined.flatten(1))
    flat += [tokens[m].flatten(1) for m in net.unimodal]
    logits = net.head(torch.cat(flat, dim=1))
    if net.linear is not None:
        logits = logits + torch.cat([x[m] for m in net.modalities], dim=1) @ net.linear.weight.T
    return logits


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"add_unimodal_to_multimodal": True},
        {"target_self_attention": False, "add_unimodal_branches": False},
        {"linear_skip": True},
    ],
)
def test_batched_network_equals_the_per_group_reference(options):
    net = _net(**options).eval()
    x = _inputs()
    assert len(net.encoders) == 2 and len(net.cross) == 2  # cnv has other widths: separate batched blocks
    torch.testing.assert_close(net(x), _reference_logits(net, x), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(net.fuse_parts(net.parts(x)), net.fuse(x))
    torch.testing.assert_close(net.logits_from_parts(net.parts(x)), net(x))


def test_same_seed_same_start_as_one_module_per_modality_and_edge():
    """Under one seed the batched network draws its weights as per-module blocks would."""
    features, widths = {"a": 20, "b": 12, "c": 8}, [8]
    groups = {m: random_groups(n, 2, generator=torch.Generator().manual_seed(2)) for m, n in features.items()}
    torch.manual_seed(3)
    encoders = {m: AttOmicsEncoder(in_features=n, groups=groups[m], group_sizes=widths) for m, n in features.items()}
    cross = {s: AttentionBlock(dim=8, source_dim=8) for s in ("b", "c")}
    target = AttentionBlock(dim=8)
    head = MLPHead(in_dim=2 * 2 * 8 + 2 * 2 * 8, hidden=[16], out_dim=3)
    after_modules = torch.rand(1)
    torch.manual_seed(3)
    net = CrossAttOmicsNet(
        in_features=features, groups=groups, group_sizes=dict.fromkeys(features, widths),
        interaction_graph={"a": ["b", "c"]}, hidden=[16], n_classes=3,
    ).eval()
    assert torch.equal(torch.rand(1), after_modules)  # the generator is left where per-module blocks leave it
    head.eval()
    x = {m: torch.randn(4, n) for m, n in features.items()}
    tokens = {m: encoders[m](x[m]) for m in features}
    joined = torch.cat([cross[s](tokens["a"], tokens[s]) for s in ("b", "c")], dim=1)
    flat = torch.cat([target(joined).flatten(1), tokens["b"].flatten(1), tokens["c"].flatten(1)], dim=1)
    torch.testing.assert_close(net(x), head(flat), atol=1e-5, rtol=1e-4)


def test_gradients_reach_every_parameter():
    net = _net(linear_skip=True).train()
    x = _inputs(8)
    loss = F.cross_entropy(net(x), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    first = net.encoders[0].projections[0]
    padded = (net.encoders[0].index == net.encoders[0].total_features).unsqueeze(-1).expand_as(first.weight)
    assert torch.all(first.weight[padded] == 0) and torch.all(first.weight.grad[padded] == 0)


def test_batched_attention_keeps_blocks_apart():
    torch.manual_seed(0)
    block = BatchedAttentionBlock(query_counts=[2, 3], key_counts=[4, 1], dim=4, context_dim=6, heads=2)
    block.keep_attention = True
    target = torch.randn(3, 5, 4, requires_grad=True)
    source = torch.randn(3, 5, 6, requires_grad=True)
    block(target, source)[:, :2].sum().backward()  # block 0's outputs
    assert torch.all(source.grad[:, 4:] == 0) and torch.all(target.grad[:, 2:] == 0)
    assert block.last_attention.shape == (3, 2, 5, 5)
    assert torch.all(block.last_attention[:, :, :2, 4:] == 0) and torch.all(block.last_attention[:, :, 2:, :4] == 0)


@pytest.mark.parametrize("linear_skip", [False, True])
def test_lrp_is_conservative_and_leaves_the_forward_unchanged(linear_skip):
    net = _net(linear_skip=linear_skip)
    x = _inputs(16)
    net.train()
    net(x)  # batch-norm statistics
    net.eval()
    reference = net(x)
    with lrp_mode(net):
        torch.testing.assert_close(net(x), reference)
    target = torch.arange(16) % 3
    relevance, logit, bias = interaction_relevance(net, x, target, return_bias=True)
    assert relevance.shape == (16, len(net.part_names)) and bias.shape == (16,)
    torch.testing.assert_close(logit, reference.gather(1, target.view(-1, 1)).squeeze(1))
    torch.testing.assert_close(relevance.sum(1) + bias, logit, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(bias, torch.zeros_like(bias))  # the biases are not spread over the parts
    if linear_skip:
        assert net.part_names[-1] == "linear"
        wide = torch.cat([x[m] for m in net.modalities], dim=1)
        exact = (wide * net.linear.weight[target]).sum(1)  # input x weight, nothing of the bias
        torch.testing.assert_close(relevance[:, -1], exact, atol=1e-4, rtol=1e-4)


def test_lrp_relevance_stays_on_the_scale_of_the_logit_where_a_unit_is_all_bias():
    """A hidden unit whose bias-free input is ~0 for a sample but whose BatchNorm shift is not: spreading the
    shift over the inputs in proportion divides by ~0 (relevances of opposite signs thousands of times the
    logit); as a constant input the shift keeps its own relevance."""
    net = _net()
    x = _inputs(8)
    net.eval()
    with torch.no_grad():
        fused = net.fuse(x)[0]
        row = torch.randn_like(fused)
        row -= (row @ fused) / (fused @ fused) * fused  # orthogonal to sample 0's fused vector: its input is ~0
        net.head.linears[0].weight[0] = row
        norm = net.head.norms[0]
        norm.running_mean.zero_()
        norm.running_var.fill_(1.0)
        norm.bias[0] = 2.0  # the unit is on for sample 0, through its shift alone
        net.head.out.weight[:, 0] = 3.0
    target = torch.zeros(8, dtype=torch.long)
    relevance, logit, bias = interaction_relevance(net, x, target, return_bias=True)
    torch.testing.assert_close(relevance.sum(1) + bias, logit, atol=1e-4, rtol=1e-4)
    scale = logit.abs() + bias.abs() + 1.0
    assert float((relevance.abs().sum(1) / scale).max()) < 20


def test_lrp_gives_the_intercept_of_a_logistic_regression_alone_to_the_bias():
    """A deep part at zero (the fitted logistic regression alone): input x weight on the linear path, the
    intercept on the biases, nothing on the other parts."""
    net = _net(linear_skip=True)
    x = _inputs(16)
    net.eval()
    with torch.no_grad():
        net.head.out.weight.zero_()
        net.head.out.bias.copy_(torch.tensor([0.7, 0.15, -0.85]))
        net.linear.weight.normal_()
    target = torch.arange(16) % 3
    relevance, logit, bias = interaction_relevance(net, x, target, return_bias=True)
    torch.testing.assert_close(logit, net(x).gather(1, target.view(-1, 1)).squeeze(1))
    torch.testing.assert_close(relevance.sum(1) + bias, logit, atol=1e-4, rtol=1e-4)
    wide = torch.cat([x[m] for m in net.modalities], dim=1)
    torch.testing.assert_close(relevance[:, -1], (wide * net.linear.weight[target]).sum(1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(bias, net.head.out.bias[target].detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(relevance[:, :-1], torch.zeros_like(relevance[:, :-1]))


def test_interaction_relevance_reads_the_logit_in_eval_mode_and_leaves_the_mode():
    net = _net()
    x = _inputs(16)
    net.train()  # a network left in training mode: its logit is still the eval-mode one
    statistics = net.head.norms[0].running_mean.clone()
    relevance, logit, bias = interaction_relevance(net, x, torch.zeros(16, dtype=torch.long), return_bias=True)
    assert net.training
    torch.testing.assert_close(net.head.norms[0].running_mean, statistics)  # no batch-norm update
    torch.testing.assert_close(relevance.sum(1) + bias, logit, atol=1e-4, rtol=1e-4)


def test_linear_path_is_off_by_default_and_starts_at_zero():
    plain, wide = _net(), CrossAttOmicsNet(
        in_features=IN_FEATURES, groups=GROUPS, group_sizes=SIZES, interaction_graph=GRAPH, hidden=[16],
        n_classes=3, heads=2, linear_skip=True,
    )
    assert plain.linear is None and "linear" not in plain.part_names
    assert wide.part_names[-1] == "linear" and torch.all(wide.linear.weight == 0)
    x = _inputs()
    wide.eval()
    torch.testing.assert_close(wide(x), wide.classify(wide.fuse(x), x))
    torch.testing.assert_close(wide(x), wide.head(wide.fuse(x)))  # zero at start: the deep logits
    with pytest.raises(ValueError, match="linear path"):
        wide.classify(wide.fuse(x))
