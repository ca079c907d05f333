"""Layer-wise relevance propagation through the fusion of CrossAttOmics."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..nn import CrossAttOmicsNet, lrp_mode
from ..nn._lrp import collect_biases


def interaction_relevance(
    net: CrossAttOmicsNet, x: Mapping[str, torch.Tensor], target: torch.Tensor, *, return_bias: bool = False
) -> tuple[torch.Tensor, ...]:
    """LRP relevance of every fusion part (interactions and unimodal branches) for one class per sample.

    The network is put in LRP mode (:func:`~multiomix.nn.lrp_mode`: attention weights and normalisation scales
    held constant, every bias a constant input), which makes it, with each sample's ReLU gates fixed, an affine
    function of the parts. The relevance of a part is gradient x input summed over its tokens; the biases
    downstream of the parts (LayerNorm and BatchNorm shifts, the head's output bias, where a fitted logistic
    regression puts its intercept) get gradient x value, and the parts' relevances plus the biases' sum to the
    class logit. With the network's linear path (``linear_skip``) the last part, ``"linear"``, gets exactly
    input x weight.

    Parameters
    ----------
    net
        A trained network.
    x
        Inputs per modality (already standardised), each (N, features).
    target
        Class index per sample (N,).
    return_bias
        Also return the biases' relevance (N,).

    Returns
    -------
    ``(relevance, logit)``, or ``(relevance, logit, bias)`` with ``return_bias``: (N, n_parts) relevance in the
    order of ``net.part_names`` and the (N,) logits of the target classes from the network's ordinary forward
    pass in eval mode (not the LRP-mode one), so that ``relevance.sum(1) + bias - logit`` measures conservation
    against what the network computes.

    Examples
    --------
    >>> rel, logit, bias = interaction_relevance(net, x, torch.zeros(len(x["rna"]), dtype=torch.long), return_bias=True)
    >>> torch.allclose(rel.sum(1) + bias, logit, atol=1e-4)
    True
    """
    with lrp_mode(net), torch.enable_grad():
        parts = {name: t.detach().requires_grad_() for name, t in net.parts(x).items()}
        with collect_biases() as biases:
            logits = net.logits_from_parts(parts)
        chosen = logits.gather(1, target.view(-1, 1).long()).squeeze(1)
        names = net.part_names
        grads = torch.autograd.grad(chosen.sum(), [parts[n] for n in names] + biases, allow_unused=True)
        relevance = torch.stack([(parts[n] * g).flatten(1).sum(1) for n, g in zip(names, grads)], dim=1)
        bias = sum(((b * g).flatten(1).sum(1) for b, g in zip(biases, grads[len(names):]) if g is not None),
                   torch.zeros_like(chosen))
    was_training = net.training
    net.eval()  # the ordinary forward pass, in eval mode whatever mode the network was left in
    try:
        with torch.no_grad():
            logit = net(x).gather(1, target.view(-1, 1).long()).squeeze(1)
    finally:
        net.train(was_training)
    if return_bias:
        return relevance.detach(), logit, bias.detach()
    return relevance.detach(), logit
