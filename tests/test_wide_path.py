"""The wide path (linear + low-rank cross-modal product) and its cross-validated fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multiomix.nn.wide import ABSENT_CLASS_LOGIT, WidePath, fit_wide_path


def _xor(n=400, seed=0, noise=0.5):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n, 5)), rng.normal(size=(n, 6))
    y = ((a[:, 0] > 0) ^ (b[:, 2] > 0)).astype(int)
    return a + 3.0 + noise * rng.normal(size=a.shape), b * 2.0, y  # shifted / scaled: standardised inside


def _accuracy(path, a, b, y):
    with torch.no_grad():
        out = path(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32))
    return float((out.argmax(1).numpy() == y).mean())


def test_fit_wide_path_learns_a_cross_modal_product():
    a, b, y = _xor()
    path, choice = fit_wide_path(a[:300], b[:300], y[:300], num_classes=2, random_state=0)
    assert choice["product"] and choice["cv_loss"] < choice["cv_loss_linear"] - 0.1
    assert _accuracy(path, a[300:], b[300:], y[300:]) >= 0.8


def test_fit_wide_path_on_a_linear_signal_matches_a_linear_model():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 4)), rng.normal(size=(300, 3))
    y = (a[:, 1] + b[:, 0] > 0).astype(int)
    path, choice = fit_wide_path(a[:200], b[:200], y[:200], num_classes=2, random_state=0)
    assert choice["cv_loss"] <= choice["cv_loss_linear"] + 1e-9
    assert _accuracy(path, a[200:], b[200:], y[200:]) >= 0.9


def test_fit_wide_path_is_deterministic_and_never_predicts_an_absent_class():
    a, b, y = _xor(n=120)
    first, c1 = fit_wide_path(a, b, y, num_classes=3, max_epochs=40, random_state=3)
    second, c2 = fit_wide_path(a, b, y, num_classes=3, max_epochs=40, random_state=3)
    assert c1 == c2
    for k, v in first.state_dict().items():
        torch.testing.assert_close(v, second.state_dict()[k])
    assert first.linear.bias[2].item() == ABSENT_CLASS_LOGIT
    with torch.no_grad():
        out = first(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32))
    assert (out.argmax(1) != 2).all()


def test_wide_path_without_fit_is_zero_and_rejects_rank_zero():
    path = WidePath(a_dim=3, b_dim=2, num_classes=4)
    assert torch.count_nonzero(path(torch.randn(5, 3), torch.randn(5, 2))) == 0
    with pytest.raises(ValueError, match="rank must be at least 1"):
        WidePath(a_dim=3, b_dim=2, num_classes=2, rank=0)


def test_wide_inputs_are_reduced_to_principal_components_and_still_learn():
    # 400 noise features around a low-rank signal: the path reads 50 components, fitted in seconds
    rng = np.random.default_rng(2)
    n = 300
    factors = rng.normal(size=(n, 3))
    a = factors @ rng.normal(size=(3, 400)) + 0.5 * rng.normal(size=(n, 400))
    b = rng.normal(size=(n, 6))
    y = ((factors[:, 0] > 0) ^ (b[:, 1] > 0)).astype(int)
    path, choice = fit_wide_path(a[:220], b[:220], y[:220], num_classes=2, max_epochs=200, random_state=0)
    assert path.a_proj.shape == (400, 50) and path.b_proj.shape == (6, 6)
    torch.testing.assert_close(path.b_proj, torch.eye(6))  # a narrow input is only standardised
    with torch.no_grad():
        reduced, _ = path.reduce(torch.as_tensor(a[:220], dtype=torch.float32), torch.zeros(220, 6))
    torch.testing.assert_close(path.a_proj.T @ path.a_proj, torch.eye(50), atol=1e-4, rtol=0)  # orthonormal
    spread = reduced.std(0)
    assert spread[:3].min() > 5 * spread[3:].max()  # the three planted factors lead, noise comes after
    assert choice["product"] and _accuracy(path, a[220:], b[220:], y[220:]) >= 0.75
