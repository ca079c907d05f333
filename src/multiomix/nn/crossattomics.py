"""CrossAttOmics: per-modality AttOmics encoders fused by cross-attention along an interaction graph.

Beaude, Augé, Zehraoui, Hanczar, "CrossAttOmics: multi-omics data integration with cross-attention",
Bioinformatics 41(6) btaf302, 2025.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .attomics import AttentionBlock, AttOmicsEncoder
from .mlp import MLPHead


def interaction_name(source: str, target: str) -> str:
    """Display name of an interaction (``"source->target"``)."""
    return f"{source}->{target}"


def _module_key(source: str, target: str) -> str:
    return f"{source}__to__{target}"


def validate_graph(graph: Mapping[str, Sequence[str]], modalities: Sequence[str]) -> dict[str, list[str]]:
    """Check an interaction graph ``{target: [sources]}`` against the modalities; return a clean copy."""
    if not graph:
        raise ValueError("The interaction graph is empty; give at least one {target: [sources]} entry.")
    clean = {}
    for target, sources in graph.items():
        sources = [sources] if isinstance(sources, str) else list(sources)
        unknown = [m for m in [target, *sources] if m not in modalities]
        if unknown:
            raise KeyError(f"Interaction graph names modalities {unknown} that are not among {list(modalities)}.")
        if target in sources:
            raise ValueError(f"Interaction graph: modality {target!r} lists itself as a source.")
        if not sources or len(set(sources)) != len(sources):
            raise ValueError(f"Interaction graph: target {target!r} needs a non-empty list of distinct sources.")
        clean[target] = sources
    return clean


class CrossAttOmicsNet(nn.Module):
    """CrossAttOmics network: encoders -> cross-attention fusion -> MLP head.

    For each target modality ``t`` of ``interaction_graph = {t: [s1, s2, ...]}``, the group tokens of ``t``
    attend to those of each source ``s`` (queries from ``t``, keys/values from ``s``, residual + LayerNorm);
    the outputs are concatenated along the group axis, optionally with ``t``'s own tokens, and optionally
    pass a self-attention block. Targets are flattened and concatenated, followed by the flattened tokens of
    every modality that is never a target (the unimodal branches).

    Parameters
    ----------
    in_features
        Number of features per modality.
    groups
        Feature indices of each group, per modality.
    group_sizes
        Token widths of the encoder layers, per modality.
    interaction_graph
        ``{target: [sources]}``.
    hidden
        Hidden widths of the MLP head.
    n_classes
        Number of classes.
    heads
        Attention heads in encoders and fusion.
    dropout
        Dropout in the head (the encoders, as in AttOmics, have none).
    target_self_attention
        Apply a self-attention block over each target's concatenated tokens.
    add_unimodal_branches
        Append the encodings of modalities that are never a target.
    add_unimodal_to_multimodal
        Concatenate each target's own tokens with its cross-attention outputs.

    Examples
    --------
    >>> from multiomix.nn import random_groups
    >>> net = CrossAttOmicsNet(
    ...     in_features={"rna": 30, "meth": 20},
    ...     groups={"rna": random_groups(30, 3), "meth": random_groups(20, 2)},
    ...     group_sizes={"rna": [8], "meth": [6]},
    ...     interaction_graph={"rna": ["meth"]},
    ...     hidden=[16],
    ...     n_classes=4,
    ... )
    >>> net({"rna": torch.randn(5, 30), "meth": torch.randn(5, 20)}).shape
    torch.Size([5, 4])
    """

    def __init__(
        self,
        *,
        in_features: Mapping[str, int],
        groups: Mapping[str, Sequence[Sequence[int]]],
        group_sizes: Mapping[str, Sequence[int]],
        interaction_graph: Mapping[str, Sequence[str]],
        hidden: Sequence[int],
        n_classes: int,
        heads: int = 1,
        dropout: float = 0.0,
        target_self_attention: bool = True,
        add_unimodal_branches: bool = True,
        add_unimodal_to_multimodal: bool = False,
    ):
        super().__init__()
        self.modalities = list(in_features)
        self.graph = validate_graph(interaction_graph, self.modalities)
        self.encoders = nn.ModuleDict(
            {
                m: AttOmicsEncoder(
                    in_features=in_features[m], groups=groups[m], group_sizes=group_sizes[m], heads=heads
                )
                for m in self.modalities
            }
        )
        self.add_unimodal_to_multimodal = add_unimodal_to_multimodal
        self.cross = nn.ModuleDict(
            {
                _module_key(s, t): AttentionBlock(
                    dim=self.encoders[t].out_dim, source_dim=self.encoders[s].out_dim, heads=heads
                )
                for t, sources in self.graph.items()
                for s in sources
            }
        )
        self.target_attention = nn.ModuleDict(
            {t: AttentionBlock(dim=self.encoders[t].out_dim, heads=heads) for t in self.graph}
            if target_self_attention
            else {}
        )
        self.unimodal = sorted(m for m in self.modalities if m not in self.graph) if add_unimodal_branches else []
        fused_dim = sum(
            (len(s) + add_unimodal_to_multimodal) * self.encoders[t].n_groups * self.encoders[t].out_dim
            for t, s in self.graph.items()
        ) + sum(self.encoders[m].n_groups * self.encoders[m].out_dim for m in self.unimodal)
        self.fused_dim = fused_dim
        self.head = MLPHead(in_dim=fused_dim, hidden=hidden, out_dim=n_classes, dropout=dropout)

    @property
    def part_names(self) -> list[str]:
        """Fusion parts: each interaction's message ``source->target``, each target's own tokens, unimodal branches.

        The message of ``source->target`` is the cross-attention output before the residual connection, so
        its relevance is what the source contributes through that interaction; the target's own tokens
        (residual path, and concatenation with ``add_unimodal_to_multimodal``) form the part named ``target``.
        """
        names = []
        for t, sources in self.graph.items():
            names += [interaction_name(s, t) for s in sources] + [t]
        return names + self.unimodal

    def parts(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Encode and cross-attend: the fusion parts named as :attr:`part_names`, each (N, groups, width)."""
        tokens = {m: self.encoders[m](x[m]) for m in self.modalities}
        parts: dict[str, torch.Tensor] = {}
        for t, sources in self.graph.items():
            for s in sources:
                parts[interaction_name(s, t)] = self.cross[_module_key(s, t)].message(tokens[t], tokens[s])
            parts[t] = tokens[t]
        for m in self.unimodal:
            parts[m] = tokens[m]
        return parts

    def fuse_parts(self, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Fused vector (N, fused_dim) from the fusion parts (residuals, norms and target self-attention)."""
        flat = []
        for t, sources in self.graph.items():
            pieces = [self.cross[_module_key(s, t)].combine(parts[interaction_name(s, t)], parts[t]) for s in sources]
            if self.add_unimodal_to_multimodal:
                pieces.append(parts[t])
            joined = torch.cat(pieces, dim=1)
            if t in self.target_attention:
                joined = self.target_attention[t](joined)
            flat.append(joined.flatten(1))
        flat += [parts[m].flatten(1) for m in self.unimodal]
        return torch.cat(flat, dim=1)

    def fuse(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Fused vector (N, fused_dim) fed to the head: the joint representation."""
        return self.fuse_parts(self.parts(x))

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Class logits (N, n_classes) from a dict of (N, features) tensors."""
        return self.head(self.fuse(x))
