"""Layer-wise relevance propagation through the fusion of CrossAttOmics."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..nn import CrossAttOmicsNet, lrp_mode


def interaction_relevance(
    net: CrossAttOmicsNet, x: Mapping[str, torch.Tensor], target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """LRP relevance of every fusion part (interactions and unimodal branches) for one class per sample.

    The network is put in LRP mode (:func:`~multiomix.nn.lrp_mode`: attention weights, normalisation scales
    and bias shares held constant), which makes it positively homogeneous; the relevance of a part is then
    gradient x input summed over its tokens, and the parts' relevances sum to the class logit. With the
    network's linear path (``linear_skip``) the last part, ``"linear"``, gets input x weight, scaled like the
    deep part by the share of the head's output bias (exactly input x weight when that bias is zero).

    Parameters
    ----------
    net
        A trained network.
    x
        Inputs per modality (already standardised), each (N, features).
    target
        Class index per sample (N,).

    Returns
    -------
    ``(relevance, logit)``: (N, n_parts) relevance in the order of ``net.part_names`` and the (N,) logits of
    the target classes from the network's ordinary forward pass (not the LRP-mode one), so that
    ``relevance.sum(1) - logit`` measures conservation against what the network computes.

    Examples
    --------
    >>> rel, logit = interaction_relevance(net, x, torch.zeros(len(x["rna"]), dtype=torch.long))
    >>> torch.allclose(rel.sum(1), logit, atol=1e-4)
    True
    """
    with lrp_mode(net), torch.enable_grad():
        parts = {name: t.detach().requires_grad_() for name, t in net.parts(x).items()}
        logits = net.logits_from_parts(parts)
        chosen = logits.gather(1, target.view(-1, 1).long()).squeeze(1)
        names = net.part_names
        grads = torch.autograd.grad(chosen.sum(), [parts[n] for n in names])
        relevance = torch.stack([(parts[n] * g).flatten(1).sum(1) for n, g in zip(names, grads)], dim=1)
    with torch.no_grad():
        logit = net(x).gather(1, target.view(-1, 1).long()).squeeze(1)
    return relevance.detach(), logit
