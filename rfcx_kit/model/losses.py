"""Training losses of the method: clipwise BCE (stage 1) and masked BCE (stage 2, re-labeling, final stage).

Both take window-level logits ``(B, K)`` (B windows, K = 24 species), e.g. the model's ``clipwise``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 2:
        raise ValueError(f"expected equal (B, K) shapes, got {shapes}")


def clipwise_bce(clipwise_logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """The post's stage-1 loss: mean BCE-with-logits of clipwise logits against window labels.

    Args:
        clipwise_logits: ``(B, K)`` logits.
        target: ``(B, K)`` float labels in [0, 1] (1 where the window holds a TP call of the species).
        weight: optional ``(B, K)`` cell weights; the loss is then the weighted mean
            ``sum(w * bce) / sum(w)`` (e.g. implicit negatives counted at less than a verified label).
    Returns:
        Scalar mean over all ``B * K`` cells.
    """
    _check_same_shape(clipwise_logits=clipwise_logits, target=target)
    if weight is None:
        return F.binary_cross_entropy_with_logits(clipwise_logits, target.to(clipwise_logits.dtype))
    return masked_bce(clipwise_logits, target, weight)


def masked_bce(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, pos_weight: float = 1.0
) -> torch.Tensor:
    """Weighted BCE-with-logits that leaves unknown labels out: the masked loss of stage 2.

    Each (window, species) cell has a target and a weight:

    * weight 0: the label is unknown (neither TP nor FP covers the window), so the cell is left out: it
      adds nothing to the loss and gets no gradient.
    * weight 1: a known label: TP / pseudo-positive (target 1) or FP (target 0).
    * 0 < weight < 1: a soft pseudo-label (the final stage uses 0.5), counted at that fraction of a known one.

    Positive cells (``target > 0.5``) are further multiplied by ``pos_weight``, to balance the few
    positives against the many FP negatives. With effective weight ``w = weight * (pos_weight if positive
    else 1)`` the loss is ``sum(w * bce) / max(sum(w), 1e-8)``: a weighted mean, so its scale does not
    depend on how many cells of the batch happen to be known. A batch with nothing known gives 0 (still
    attached to the graph, so ``backward`` works and every gradient is 0).

    Args:
        logits: ``(B, K)`` logits.
        target: ``(B, K)`` float targets in [0, 1].
        weight: ``(B, K)`` float weights >= 0 (not checked on the device, to avoid a synchronisation).
        pos_weight: multiplier of positive cells' weights.
    Returns:
        Scalar loss.
    """
    _check_same_shape(logits=logits, target=target, weight=weight)
    target = target.to(logits.dtype)
    effective = weight.to(logits.dtype) * torch.where(target > 0.5, pos_weight, 1.0)
    per_cell = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    # where() rather than a product: a masked cell whose BCE is inf (e.g. a saturated logit) must not
    # turn 0 * inf into NaN.
    weighted = torch.where(effective > 0, effective * per_cell, torch.zeros_like(per_cell))
    return weighted.sum() / effective.sum().clamp_min(1e-8)
