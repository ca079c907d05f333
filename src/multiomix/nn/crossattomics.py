"""CrossAttOmics: per-modality AttOmics encoders fused by cross-attention along an interaction graph.

Beaude, Augé, Zehraoui, Hanczar, "CrossAttOmics: multi-omics data integration with cross-attention",
Bioinformatics 41(6) btaf302, 2025.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .attomics import BatchedAttentionBlock, MultiAttOmicsEncoder
from .mlp import MLPHead


def interaction_name(source: str, target: str) -> str:
    """Display name of an interaction (``"source->target"``)."""
    return f"{source}->{target}"


class _Span:
    """Tokens ``start:start + length`` (axis 1) of a tensor; adjacent spans of one tensor join as a view."""

    __slots__ = ("base", "start", "length")

    def __init__(self, base: torch.Tensor, start: int, length: int):
        self.base, self.start, self.length = base, start, length

    @classmethod
    def whole(cls, tensor: torch.Tensor) -> _Span:
        return cls(tensor, 0, tensor.shape[1])

    def narrow(self, start: int, length: int) -> _Span:
        return _Span(self.base, self.start + start, length)

    def tensor(self) -> torch.Tensor:
        if self.start == 0 and self.length == self.base.shape[1]:
            return self.base
        return self.base.narrow(1, self.start, self.length)

    @staticmethod
    def _merged(spans: Sequence[_Span]) -> list[_Span]:
        merged: list[_Span] = []
        for span in spans:
            last = merged[-1] if merged else None
            if last is not None and last.base is span.base and last.start + last.length == span.start:
                merged[-1] = _Span(last.base, last.start, last.length + span.length)
            else:
                merged.append(span)
        return merged

    @classmethod
    def join(cls, spans: Sequence[_Span]) -> _Span:
        """All spans along the token axis (one concatenation, or none when they are adjacent)."""
        merged = cls._merged(spans)
        return merged[0] if len(merged) == 1 else cls.whole(torch.cat([s.tensor() for s in merged], dim=1))

    @classmethod
    def flatten(cls, spans: Sequence[_Span]) -> torch.Tensor:
        """(N, tokens x width) of all spans, each flattened, concatenated (spans may differ in width)."""
        tensors = [s.tensor() for s in cls._merged(spans)]
        if len(tensors) == 1:
            return tensors[0].flatten(1)
        if len({t.shape[2] for t in tensors}) == 1:  # equal widths: one concatenation along the tokens
            return torch.cat(tensors, dim=1).flatten(1)
        return torch.cat([t.flatten(1) for t in tensors], dim=1)


def _buckets(keys: Sequence) -> dict:
    """Positions of equal keys, in order of first appearance: ``{key: [i, ...]}``."""
    out: dict = {}
    for i, key in enumerate(keys):
        out.setdefault(key, []).append(i)
    return out


def validate_graph(graph: Mapping[str, Sequence[str]], modalities: Sequence[str]) -> dict[str, list[str]]:
    """Check an interaction graph ``{target: [sources]}`` against the modalities; return a clean copy."""
    if not graph:
        raise ValueError("The interaction graph is empty; give at least one {target: [sources]} entry.")
    clean = {}
    for target, sources in graph.items():
        if isinstance(sources, set | frozenset):  # no order of its own: the stacked edge weights need one
            sources = sorted(sources)
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


class WideLinear(nn.Linear):
    """Bias-free linear map from the concatenated inputs to the logits (the "wide" path); zero at start.

    Its LRP relevance is input x weight, summed over the inputs (the head's output bias is a separate constant,
    see :meth:`CrossAttOmicsNet.logits_from_parts`).
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)

    def reset_parameters(self) -> None:
        """Start at zero (the network starts as its deep part alone)."""
        nn.init.zeros_(self.weight)


class CrossAttOmicsNet(nn.Module):
    """CrossAttOmics network: encoders -> cross-attention fusion -> MLP head (+ an optional linear path).

    For each target modality ``t`` of ``interaction_graph = {t: [s1, s2, ...]}``, the group tokens of ``t``
    attend to those of each source ``s`` (queries from ``t``, keys/values from ``s``, residual + LayerNorm);
    the outputs are concatenated along the group axis, optionally with ``t``'s own tokens, and optionally
    pass a self-attention block. Targets are flattened and concatenated, followed by the flattened tokens of
    every modality that is never a target (the unimodal branches). With ``linear_skip`` a linear map of the
    concatenated inputs is added to the head's logits (wide-and-deep).

    Every stage runs as few batched calls: the AttOmics encoders of all modalities with the same token widths
    form one :class:`~multiomix.nn.MultiAttOmicsEncoder`, the cross-attention blocks of all edges with the
    same widths one :class:`~multiomix.nn.BatchedAttentionBlock` (block-diagonal attention), and so do the
    targets' self-attention blocks. The result equals a loop over modalities and edges with one block each.

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
    linear_skip
        Add a linear map of the concatenated inputs (bias-free, zero at start) to the head's logits;
        :attr:`part_names` then ends with ``"linear"``.

    Notes
    -----
    The blocks are post-norm, ``LayerNorm(target + attention(target, source))``, as in AttOmics and
    CrossAttOmics; the LRP decomposition into messages and residual paths (:attr:`part_names`) rests on it.

    State dict layout (changed with the batched implementation; earlier saved networks do not load):
    ``encoders.<i>`` is the :class:`~multiomix.nn.MultiAttOmicsEncoder` of the ``i``-th set of modalities
    with equal ``group_sizes`` (``index`` (groups, width) into their concatenated features,
    ``projections.<l>.weight`` (groups, width, out), ``.bias``;
    ``interactions.<l>.to_qkv`` (modalities, dim, 3 dim), ``.to_out``, ``.norm_weight``, ``.norm_bias``
    (modalities, dim)); ``cross.<j>`` the :class:`~multiomix.nn.BatchedAttentionBlock` of the ``j``-th set of
    edges with equal widths (``to_q``, ``to_kv``, ``to_out``, ``norm_weight``, ``norm_bias`` stacked over
    edges in graph order); ``target_attention.<k>`` likewise over targets; ``head`` the
    :class:`~multiomix.nn.MLPHead`; ``linear.weight`` (classes, features) with ``linear_skip``.

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
    ...     linear_skip=True,
    ... )
    >>> net({"rna": torch.randn(5, 30), "meth": torch.randn(5, 20)}).shape
    torch.Size([5, 4])
    >>> net.part_names
    ['meth->rna', 'rna', 'meth', 'linear']
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
        linear_skip: bool = False,
    ):
        super().__init__()
        rng_state = torch.get_rng_state()
        self.modalities = list(in_features)
        self.graph = validate_graph(interaction_graph, self.modalities)
        self.in_features = {m: int(in_features[m]) for m in self.modalities}
        self.n_groups = {m: len(groups[m]) for m in self.modalities}
        self.token_dim = {m: int(group_sizes[m][-1]) for m in self.modalities}
        self.add_unimodal_to_multimodal = add_unimodal_to_multimodal
        # encoders: one batched encoder per set of modalities with equal token widths
        by_widths = _buckets([tuple(int(w) for w in group_sizes[m]) for m in self.modalities])
        self.encoders = nn.ModuleList(
            MultiAttOmicsEncoder(
                in_features={self.modalities[i]: in_features[self.modalities[i]] for i in members},
                groups={self.modalities[i]: groups[self.modalities[i]] for i in members},
                group_sizes=list(widths),
                heads=heads,
            )
            for widths, members in by_widths.items()
        )
        self._location = {  # modality -> (encoder, first token)
            m: (e, start) for e, enc in enumerate(self.encoders) for m, start in enc.offsets.items()
        }
        # cross-attention: one batched block per set of edges with equal (target, source) widths
        self.edges = [(s, t) for t, sources in self.graph.items() for s in sources]
        by_dims = _buckets([(self.token_dim[t], self.token_dim[s]) for s, t in self.edges])
        self._cross_edges = [[self.edges[i] for i in members] for members in by_dims.values()]
        self.cross = nn.ModuleList(
            BatchedAttentionBlock(
                query_counts=[self.n_groups[t] for _, t in edges],
                key_counts=[self.n_groups[s] for s, _ in edges],
                dim=dim_t,
                context_dim=dim_s,
                heads=heads,
            )
            for (dim_t, dim_s), edges in zip(by_dims, self._cross_edges)
        )
        self._joined_tokens = {
            t: (len(sources) + add_unimodal_to_multimodal) * self.n_groups[t] for t, sources in self.graph.items()
        }
        targets = list(self.graph)
        by_target_dim = _buckets([self.token_dim[t] for t in targets])
        self._target_sets = [[targets[i] for i in members] for members in by_target_dim.values()]
        self.target_attention = nn.ModuleList(
            BatchedAttentionBlock(query_counts=[self._joined_tokens[t] for t in members], dim=dim, heads=heads)
            for dim, members in zip(by_target_dim, self._target_sets)
        ) if target_self_attention else nn.ModuleList()
        self.unimodal = sorted(m for m in self.modalities if m not in self.graph) if add_unimodal_branches else []
        self.fused_dim = sum(n * self.token_dim[t] for t, n in self._joined_tokens.items()) + sum(
            self.n_groups[m] * self.token_dim[m] for m in self.unimodal
        )
        self.head = MLPHead(in_dim=self.fused_dim, hidden=hidden, out_dim=n_classes, dropout=dropout)
        self.linear = WideLinear(sum(self.in_features.values()), n_classes) if linear_skip else None
        torch.set_rng_state(rng_state)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw the initial weights as one module per modality, edge and target would, in that order.

        Each modality's AttOmics layers, then each ``source->target`` cross-attention block, each target's
        self-attention block and the head draw from the global generator in the order and with the
        distributions (:class:`torch.nn.Linear`'s for the attention projections) of a network built from one
        :class:`~multiomix.nn.AttOmicsEncoder` / :class:`~multiomix.nn.AttentionBlock` per modality and
        edge; under the same seed the batched network starts from the same function.
        """

        def linear_weight(out_dim: int, in_dim: int) -> torch.Tensor:  # nn.Linear's draw, as (in, out)
            weight = torch.empty(out_dim, in_dim)
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            return weight.T

        def attention(block: BatchedAttentionBlock, i: int, context_dim: int) -> None:
            q, kv = linear_weight(block.dim, block.dim), linear_weight(2 * block.dim, context_dim)
            out = linear_weight(block.dim, block.dim)
            if block.self_attention:
                block.to_qkv[i] = torch.cat([q, kv], dim=1)
            else:
                block.to_q[i], block.to_kv[i] = q, kv
            block.to_out[i] = out
            block.norm_weight[i], block.norm_bias[i] = 1.0, 0.0

        for m in self.modalities:
            e, start = self._location[m]
            encoder, rows = self.encoders[e], slice(start, start + self.n_groups[m])
            for layer, projection in enumerate(encoder.projections):
                in_dim = encoder.group_width[m] if layer == 0 else projection.weight.shape[1]
                weight = torch.empty(self.n_groups[m], in_dim, projection.weight.shape[2])
                nn.init.uniform_(weight, -(in_dim**-0.5), in_dim**-0.5)
                projection.weight[rows] = 0.0
                projection.weight[rows, :in_dim] = weight
                projection.bias[rows] = 0.0
            first = encoder.projections[0].weight
            first.mul_((encoder.index < encoder.total_features).float().unsqueeze(-1))  # padding: no weight
            for block in encoder.interactions:
                attention(block, encoder.modalities.index(m), block.dim)
        for s, t in self.edges:
            j = next(j for j, edges in enumerate(self._cross_edges) if (s, t) in edges)
            attention(self.cross[j], self._cross_edges[j].index((s, t)), self.token_dim[s])
        for t in self.graph:
            for block, targets in zip(self.target_attention, self._target_sets):
                if t in targets:
                    attention(block, targets.index(t), block.dim)
        for linear in self.head.linears:
            linear.reset_parameters()
        self.head.out.reset_parameters()
        for norm in self.head.norms:
            norm.reset_parameters()
        if self.linear is not None:
            self.linear.reset_parameters()

    @property
    def part_names(self) -> list[str]:
        """Names of the fusion parts (interaction messages ``source->target``, targets' own tokens, unimodal branches).

        The message of ``source->target`` is the cross-attention output before the residual connection, so
        its relevance is what the source contributes through that interaction; the target's own tokens
        (residual path, and concatenation with ``add_unimodal_to_multimodal``) form the part named ``target``.
        With ``linear_skip`` the last part, ``"linear"``, is the linear path of the concatenated inputs.
        """
        names = []
        for t, sources in self.graph.items():
            names += [interaction_name(s, t) for s in sources] + [t]
        return names + self.unimodal + (["linear"] if self.linear is not None else [])

    # ------------------------------------------------------------------ stages

    def _encode(self, x: Mapping[str, torch.Tensor]) -> tuple[list[torch.Tensor], dict[str, _Span]]:
        """Run the batched encoders; return their outputs and where each modality's tokens lie in them."""
        outputs = [encoder(x) for encoder in self.encoders]
        return outputs, {m: _Span(outputs[e], start, self.n_groups[m]) for m, (e, start) in self._location.items()}

    def encode(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Group tokens of every modality, (N, groups, width) each (views of the batched encoders' outputs)."""
        return {m: span.tensor() for m, span in self._encode(x)[1].items()}

    def _messages(self, spans: Mapping[str, _Span]) -> list[tuple[_Span, torch.Tensor]]:
        """Per cross-attention block: the messages (N, sum of target groups, width) and the target tokens."""
        out = []
        for block, edges in zip(self.cross, self._cross_edges):
            queries = _Span.join([spans[t] for _, t in edges])
            message = block.message(queries.tensor(), _Span.join([spans[s] for s, _ in edges]).tensor())
            out.append((_Span(message, 0, message.shape[1]), queries.tensor()))
        return out

    def _fuse(self, messages: Sequence[tuple[_Span, torch.Tensor]], spans: Mapping[str, _Span]) -> torch.Tensor:
        """Fused vector from the cross-attention messages and the tokens (residuals, norms, target attention)."""
        combined: dict[tuple[str, str], _Span] = {}
        for block, edges, (message, queries) in zip(self.cross, self._cross_edges, messages):
            updated = _Span.whole(block.combine(message.tensor(), queries))
            start = 0
            for s, t in edges:
                combined[(s, t)] = updated.narrow(start, self.n_groups[t])
                start += self.n_groups[t]
        joined = {
            t: _Span.join([combined[(s, t)] for s in sources] + ([spans[t]] if self.add_unimodal_to_multimodal else []))
            for t, sources in self.graph.items()
        }
        for block, targets in zip(self.target_attention, self._target_sets):
            attended = _Span.whole(block(_Span.join([joined[t] for t in targets]).tensor()))
            start = 0
            for t in targets:
                joined[t] = attended.narrow(start, self._joined_tokens[t])
                start += self._joined_tokens[t]
        return _Span.flatten([*(joined[t] for t in self.graph), *(spans[m] for m in self.unimodal)])

    # ------------------------------------------------------------------ public

    def parts(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Encode and cross-attend: the fusion parts named as :attr:`part_names`.

        Interaction messages, target and unimodal tokens are (N, groups, width); the ``"linear"`` part is the
        (N, features) concatenation of the inputs.
        """
        _, spans = self._encode(x)
        messages: dict[str, torch.Tensor] = {}
        for edges, (message, _) in zip(self._cross_edges, self._messages(spans)):
            start = 0
            for s, t in edges:
                messages[interaction_name(s, t)] = message.narrow(start, self.n_groups[t]).tensor()
                start += self.n_groups[t]
        ordered = {}
        for t, sources in self.graph.items():
            ordered.update({interaction_name(s, t): messages[interaction_name(s, t)] for s in sources})
            ordered[t] = spans[t].tensor()
        ordered.update({m: spans[m].tensor() for m in self.unimodal})
        if self.linear is not None:
            ordered["linear"] = self.wide_input(x)
        return ordered

    def fuse_parts(self, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Fused vector (N, fused_dim) from the fusion parts (residuals, norms and target self-attention)."""
        spans = {m: _Span.whole(parts[m]) for m in [*self.graph, *self.unimodal]}
        messages = [
            (
                _Span.join([_Span.whole(parts[interaction_name(s, t)]) for s, t in edges]),
                _Span.join([spans[t] for _, t in edges]).tensor(),
            )
            for edges in self._cross_edges
        ]
        return self._fuse(messages, spans)

    def fuse(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Fused vector (N, fused_dim) fed to the head: the joint representation."""
        _, spans = self._encode(x)
        return self._fuse(self._messages(spans), spans)

    def wide_input(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Input of the linear path: the (N, features) concatenation of the inputs, in modality order."""
        return torch.cat([x[m] for m in self.modalities], dim=1)

    def classify(self, fused: torch.Tensor, x: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Class logits from the fused vector (and, with ``linear_skip``, the inputs ``x`` of the linear path)."""
        logits = self.head(fused)
        if self.linear is None:
            return logits
        if x is None:
            raise ValueError("This network has a linear path (linear_skip=True): pass the inputs x as well.")
        return logits + self.linear(self.wide_input(x))

    def logits_from_parts(self, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Class logits from the fusion parts (what LRP differentiates; see :meth:`parts`).

        The head's output bias (where a fitted logistic regression puts its intercept) is, like every bias in LRP
        mode, a constant input: it is not spread over the parts.
        """
        fused = self.fuse_parts(parts)
        if self.linear is None:
            return self.head(fused)
        return self.head(fused) + self.linear(parts["linear"])

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Class logits (N, n_classes) from a dict of (N, features) tensors."""
        return self.classify(self.fuse(x), x)
