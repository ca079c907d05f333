"""Synthetic multi-omics data with planted truth, for tests and tutorials."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from mudata import MuData

from .._utils import new_mudata


def synthetic_interaction_mudata(
    n_obs: int = 600,
    *,
    n_features: dict[str, int] | None = None,
    group_size: int = 5,
    planted: tuple[str, str] = ("methylation", "rna"),
    noise: float = 0.0,
    within_group_noise: float = 0.5,
    random_state: int = 0,
) -> MuData:
    """Simulate samples whose class depends only on the product of one group of each of two modalities.

    Features are standard normal, except the first group (features ``0..group_size-1``) of each planted
    modality, which is co-regulated: each of its features is a shared latent value (``a`` for ``planted[1]``,
    ``b`` for ``planted[0]``, both standard normal) plus ``within_group_noise`` times independent noise.
    The label is ``"pos"`` when ``a * b > 0`` and ``"neg"`` otherwise: an XOR, so neither modality alone carries
    any information about it. ``noise`` flips each label with that probability.

    Parameters
    ----------
    n_obs
        Number of samples.
    n_features
        Features per modality (default ``{"rna": 40, "methylation": 40, "mirna": 20}``).
    group_size
        Features per group; ``uns['feature_groups'][modality]`` lists contiguous groups of this size.
    planted
        ``(source, target)`` modalities whose first groups interact.
    noise
        Probability that a label is flipped (each label independently, so about this fraction of the labels).
    within_group_noise
        Standard deviation of the feature-specific noise around the latent value in the planted groups.
    random_state
        Seed.

    Returns
    -------
    MuData with ``obs['label']`` and ``uns['planted']`` (the interaction ``"source->target"`` and the
    planted feature names) and ``uns['feature_groups']``.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.synthetic_interaction_mudata(200)
    >>> mdata.uns["planted"]["interaction"]
    'methylation->rna'
    """
    n_features = {"rna": 40, "methylation": 40, "mirna": 20} if n_features is None else dict(n_features)
    source, target = planted
    if source == target:
        raise ValueError(f"planted needs two different modalities, got {planted}.")
    if n_obs < 1 or group_size < 1:
        raise ValueError(f"n_obs and group_size must be at least 1, got {n_obs} and {group_size}.")
    if not 0 <= noise <= 1 or within_group_noise < 0:
        raise ValueError(f"noise (a fraction of labels) must be in [0, 1] and within_group_noise >= 0; got {noise} "
                         f"and {within_group_noise}.")
    for mod in planted:
        if mod not in n_features:
            raise KeyError(f"Planted modality {mod!r} is not in n_features {list(n_features)}.")
    rng = np.random.default_rng(random_state)
    obs = pd.DataFrame(index=[f"sample{i}" for i in range(n_obs)])
    mods, groups = {}, {}
    for mod, n in n_features.items():
        if n % group_size:
            raise ValueError(f"n_features[{mod!r}]={n} is not a multiple of group_size={group_size}.")
        var = pd.DataFrame(index=[f"{mod}_{j}" for j in range(n)])
        mods[mod] = ad.AnnData(rng.standard_normal((n_obs, n)).astype(np.float32), obs=obs.copy(), var=var)
        groups[mod] = {
            f"{mod}_group{g}": list(var.index[g * group_size : (g + 1) * group_size]) for g in range(n // group_size)
        }
    latent = {}
    for mod in (target, source):
        latent[mod] = rng.standard_normal(n_obs).astype(np.float32)
        noise_part = within_group_noise * rng.standard_normal((n_obs, group_size)).astype(np.float32)
        mods[mod].X[:, :group_size] = latent[mod][:, None] + noise_part
    positive = latent[target] * latent[source] > 0
    flip = rng.random(n_obs) < noise
    mdata = new_mudata(mods)
    mdata.obs["label"] = pd.Categorical(np.where(positive ^ flip, "pos", "neg"), categories=["neg", "pos"])
    mdata.uns["planted"] = {
        "interaction": f"{source}->{target}",
        "source_features": list(mods[source].var_names[:group_size]),
        "target_features": list(mods[target].var_names[:group_size]),
    }
    mdata.uns["feature_groups"] = groups
    return mdata
