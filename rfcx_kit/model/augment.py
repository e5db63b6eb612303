"""Training-time augmentation of a batch: gain and noise on the dB crops, SpecAugment masks, mixup.

Every function draws from the ``torch.Generator`` it is given and from nothing else, so a batch's augmentation
is a function of its seed (:func:`batch_generator`): the same seed gives the same batch, whichever thread builds
it and whether or not the run was resumed. All of it is vectorised over the batch (no Python loop over crops).

Order in a step (``method/train.py``)::

    dB crops (M, F, W) --gain, noise--> normalise (M, C, F, W) --time/freq masks--> model
                                                  mixup: the input (M, C, F, W) or the pooled sequence (M, D, T')

Masks and padding both write 0 into the normalised input, the value the post pads windows with.
"""

from __future__ import annotations

import numpy as np
import torch

from rfcx_kit.core.config import AugmentConfig

DB_TO_NEPER = float(np.log(10.0) / 10.0)  # 10 ** (db / 10) == exp(db * DB_TO_NEPER)


def batch_generator(*seed: int) -> torch.Generator:
    """A CPU generator seeded by a tuple of ints (seed, fold, stage, epoch, batch), as numpy's SeedSequence."""
    words = np.random.SeedSequence(list(seed)).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(words[0]) << 32 | int(words[1]))


def gain_noise(frames: torch.Tensor, peak_db: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Loudness and background noise on dB crops, before normalisation.

    Gain: every crop moves by ``U(-gain_db, gain_db)`` dB. The normalisation keeps its recording's statistics,
    so the crop is louder or quieter than the recording it came from (as a call nearer or farther away).
    Noise: a share ``noise`` of crops gets white noise added in the power domain (the periodogram of white
    noise: an exponential variable per bin) at ``noise_db`` below the recording's loudest bin; it fills the quiet
    bins and leaves loud calls standing, as real background noise does.

    Args:
        frames: ``(M, F, W)`` dB.
        peak_db: ``(M,)`` each crop's recording's maximum (its statistics' column 3).
    Returns:
        ``(M, F, W)`` float32 (a new tensor; ``frames`` is left as it is).
    """
    m = frames.shape[0]
    out = frames.float()
    if cfg.gain_db:
        shift = (torch.rand(m, generator=gen) * 2.0 - 1.0) * cfg.gain_db
        out = out + shift.view(m, 1, 1)
    if cfg.noise:
        chosen = torch.rand(m, generator=gen) < cfg.noise
        level_db = peak_db.float() + cfg.noise_db  # (M,)
        noise = -torch.log1p(-torch.rand(out.shape, generator=gen))  # Exp(1): white noise's power per bin
        # dB of (signal power + noise power), computed in log space (logaddexp) so nothing under- or overflows.
        noisy = torch.logaddexp(out * DB_TO_NEPER, level_db.view(m, 1, 1) * DB_TO_NEPER + torch.log(noise))
        out = torch.where(chosen.view(m, 1, 1), noisy / DB_TO_NEPER, out)
    return out


def band_masks(m: int, size: int, count: int, widest: int, gen: torch.Generator) -> torch.Tensor:
    """``(M, size)`` bool: ``count`` bands per row, each ``0..widest`` wide at a uniform position (SpecAugment)."""
    if not count:
        return torch.zeros((m, size), dtype=torch.bool)
    widest = min(widest, size)
    width = torch.randint(0, widest + 1, (m, count), generator=gen)
    start = (torch.rand((m, count), generator=gen) * (size - width + 1)).long()
    pos = torch.arange(size).view(1, 1, size)
    return ((pos >= start[..., None]) & (pos < (start + width)[..., None])).any(dim=1)


def spec_masks(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Time and frequency masks on the normalised input ``(M, C, F, W)``: masked cells become 0."""
    if not (cfg.time_masks or cfg.freq_masks):
        return x
    m, _, f, w = x.shape
    time = band_masks(m, w, cfg.time_masks, cfg.time_mask_frames, gen).to(x.device)  # (M, W)
    freq = band_masks(m, f, cfg.freq_masks, cfg.freq_mask_bins, gen).to(x.device)  # (M, F)
    cells = time[:, None, None, :] | freq[:, None, :, None]  # (M, 1, F, W)
    return x.masked_fill(cells, 0.0)


# Kept over timm.data.Mixup (1.0.31): its multi-label targets are lam-weighted (the partner's call at 0.51 on
# average, not 1), it takes no loss weights, pairs i with M-1-i and refuses odd batches, leaves 51 % of lam below
# 0.5, and draws from numpy's global RNG (a resumed run draws other mixes). Measured in benchmarks/handwritten.py.
def mixup_plan(m: int, cfg: AugmentConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Which crop each crop is mixed with and how much of itself it keeps: ``(partner (M,) long, lam (M,))``.

    A share ``mixup`` of crops is mixed (the others get ``lam = 1``); ``lam ~ Beta(alpha, alpha)``, folded to
    ``max(lam, 1 - lam)`` so each crop stays the larger part of its own mix. None when mixup is off or M < 2.
    """
    if not cfg.mixup or m < 2:
        return None
    partner = torch.randperm(m, generator=gen)
    # torch's Beta sampler takes no generator: draw it from numpy, seeded from this batch's generator.
    beta = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen))).beta(
        cfg.mixup_alpha, cfg.mixup_alpha, m)
    lam = torch.from_numpy(beta).float()
    lam = torch.maximum(lam, 1.0 - lam)
    chosen = (torch.rand(m, generator=gen) < cfg.mixup) & (partner != torch.arange(m))
    return partner, torch.where(chosen, lam, torch.ones_like(lam))


def mix(x: torch.Tensor, plan: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``lam * x + (1 - lam) * x[partner]`` along the first axis (any trailing shape)."""
    partner, lam = plan
    lam = lam.to(x.device, x.dtype).view((-1,) + (1,) * (x.dim() - 1))
    return lam * x + (1.0 - lam) * x[partner.to(x.device)]


def mix_targets(target: torch.Tensor, weight: torch.Tensor,
                plan: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets and loss weights ``(M, 24)`` of mixed crops: the union of both crops' calls.

    A species positive in either crop is positive, with that crop's weight (the larger of the two if both);
    otherwise it is negative where both crops say negative, and unknown (weight 0) where either is unknown.
    Unmixed crops (``lam == 1``) keep their own targets.
    """
    partner, lam = plan
    other_t, other_w = target[partner], weight[partner]
    pos_a, pos_b = (target > 0) & (weight > 0), (other_t > 0) & (other_w > 0)
    positive = pos_a | pos_b
    pos_weight = torch.maximum(torch.where(pos_a, weight, 0.0), torch.where(pos_b, other_w, 0.0))
    mixed_t = torch.where(positive, torch.maximum(target, other_t), torch.zeros_like(target))
    mixed_w = torch.where(positive, pos_weight, torch.minimum(weight, other_w))
    keep = (lam >= 1.0).to(target.device).view(-1, 1)
    return torch.where(keep, target, mixed_t), torch.where(keep, weight, mixed_w)
