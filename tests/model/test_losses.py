"""Clipwise BCE and masked BCE: masking, positive weighting and soft weights, checked through values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rfcx_kit.model.losses import clipwise_bce, masked_bce


def _batch(seed: int = 0, b: int = 6, k: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, generator=generator, dtype=torch.float64)
    target = (torch.rand(b, k, generator=generator) < 0.3).double()
    return logits, target


def test_clipwise_bce_is_torch_mean_bce() -> None:
    logits, target = _batch()
    expected = torch.nn.BCEWithLogitsLoss()(logits, target)
    assert torch.allclose(clipwise_bce(logits, target), expected)


def test_masked_bce_with_unit_weights_equals_bce_with_logits() -> None:
    logits, target = _batch(1)
    loss = masked_bce(logits, target, torch.ones_like(target))
    assert torch.allclose(loss, F.binary_cross_entropy_with_logits(logits, target))


def test_masked_entries_change_nothing_and_get_no_gradient() -> None:
    logits, target = _batch(2)
    weight = torch.ones_like(target)
    weight[:, ::3] = 0  # unknown labels
    weight[0, 1] = 0

    a = logits.clone().requires_grad_(True)
    loss_a = masked_bce(a, target, weight)
    loss_a.backward()
    assert torch.all(a.grad[weight == 0] == 0)
    assert torch.all(a.grad[weight > 0] != 0)

    # Whatever the masked cells hold (wild logits, flipped targets, even a saturated logit whose BCE is
    # inf), the loss is the same.
    b = logits.clone()
    b[weight == 0] = torch.randn(int((weight == 0).sum()), dtype=b.dtype) * 50
    b[0, 1] = float("inf")
    flipped = torch.where(weight == 0, 1 - target, target)
    b.requires_grad_(True)
    loss_b = masked_bce(b, flipped, weight)
    loss_b.backward()
    assert torch.allclose(loss_a, loss_b)
    assert torch.isfinite(b.grad).all() and torch.all(b.grad[weight == 0] == 0)

    # And it equals plain BCE over the known cells only.
    known = weight > 0
    assert torch.allclose(loss_a, F.binary_cross_entropy_with_logits(logits[known], target[known]))


def test_nothing_known_gives_zero_with_grad() -> None:
    logits, target = _batch(3)
    logits.requires_grad_(True)
    loss = masked_bce(logits, target, torch.zeros_like(target))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.all(logits.grad == 0)


def test_pos_weight_scales_positive_cells() -> None:
    logits, target = _batch(4)
    weight = torch.ones_like(target)
    per_cell = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    w = torch.where(target > 0.5, 3.0, 1.0).double()
    expected = (w * per_cell).sum() / w.sum()
    assert torch.allclose(masked_bce(logits, target, weight, pos_weight=3.0), expected)

    # One positive and one negative cell at logit 0: the positive's gradient carries weight 3.
    x = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    masked_bce(x, torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.ones(1, 2), pos_weight=3.0).backward()
    # d bce / d logit at logit 0 is -0.5 for target 1 and +0.5 for target 0; weights 3 and 1, sum 4.
    assert torch.allclose(x.grad, torch.tensor([[-1.5 / 4, 0.5 / 4]], dtype=torch.float64))


def test_soft_weight_half_halves_the_gradient_contribution() -> None:
    # Two cells with the same logit and target: one a known label (weight 1), one a soft pseudo-label (0.5).
    logits = torch.tensor([[0.3, 0.3, -1.2]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    weight = torch.tensor([[1.0, 0.5, 1.0]], dtype=torch.float64)
    masked_bce(logits, target, weight, pos_weight=2.0).backward()
    assert logits.grad[0, 1] == pytest.approx(0.5 * logits.grad[0, 0].item())

    # Equivalently, a soft weight counts as half a cell in the weighted mean.
    per_cell = F.binary_cross_entropy_with_logits(logits.detach(), target, reduction="none")
    effective = torch.tensor([[2.0, 1.0, 1.0]], dtype=torch.float64)
    expected = (effective * per_cell).sum() / effective.sum()
    assert torch.allclose(masked_bce(logits.detach(), target, weight, pos_weight=2.0), expected)


def test_soft_targets_are_accepted() -> None:
    logits, _ = _batch(5)
    soft = torch.full_like(logits, 0.3)
    assert torch.allclose(
        masked_bce(logits, soft, torch.ones_like(soft)), F.binary_cross_entropy_with_logits(logits, soft)
    )


def test_shape_mismatch_raises() -> None:
    logits, target = _batch(6)
    with pytest.raises(ValueError, match="shapes"):
        masked_bce(logits, target, torch.ones(6, 23))
    with pytest.raises(ValueError, match="shapes"):
        clipwise_bce(logits, target[:3])
