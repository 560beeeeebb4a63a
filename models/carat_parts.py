"""CARAT's vectorised pieces, as plain functions so that tests can check each against a plain loop.

Prototype EMA (CARAT.md 2.6), the shuffles of virtual samples (3.13), SupCon classes (2.10),
the alpha-level fusion inputs (2.8) and the reconstruction MSE (2.7).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.base import at_least_float32


def ema_prototypes(
    prototypes: torch.Tensor, latents: torch.Tensor, labels: torch.Tensor, momentum: float
) -> torch.Tensor:
    """Prototypes after the reference's sample-by-sample EMA over the batch, in closed form.

    prototypes (2, M, C, dz) [positive, negative]; latents (B, M, C, dz), already
    normalised; labels (B, C). For k matching samples x_1..x_k in batch order:
    p <- m^k p + (1 - m) sum_r m^(k - r) x_r.
    """
    positive = labels >= 0.5  # the reference tests == 1 on 0/1 labels
    matches = torch.stack([positive, ~positive]).to(latents.dtype)  # (2, B, C)
    count = matches.sum(1)  # (2, C)
    rank = matches.cumsum(1)  # 1-based position among the matching samples
    weights = (1.0 - momentum) * momentum ** (count.unsqueeze(1) - rank) * matches  # (2, B, C)
    decay = (momentum**count)[:, None, :, None]  # (2, 1, C, 1)
    return decay * prototypes + torch.einsum("pbc,bmcd->pmcd", weights, latents)


def shuffle_indices(
    batch: int,
    n_modalities: int,
    n_labels: int,
    sample_shuffle: bool = True,
    modality_shuffle: bool = True,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources of the shuffled virtual entries (CARAT.md 3.13), each (B, M, C).

    Entry (s, m, l) takes the beta features of sample ``sample[s, m, l]`` =
    sigma_{l,m}(s) and modality ``modality[s, m, l]`` = pi_{l,s}(m), label l. Permutations
    are argsorts of uniform random matrices from torch's global RNG: sample
    permutations are drawn first, as in the reference. A disabled shuffle is the identity.
    """
    if sample_shuffle:
        sample = torch.rand(n_labels, n_modalities, batch, device=device).argsort(-1).permute(2, 1, 0)
    else:
        sample = torch.arange(batch, device=device).view(-1, 1, 1).expand(batch, n_modalities, n_labels)
    if modality_shuffle:
        modality = torch.rand(n_labels, batch, n_modalities, device=device).argsort(-1).permute(1, 2, 0)
    else:
        modality = torch.arange(n_modalities, device=device).view(1, -1, 1).expand(batch, n_modalities, n_labels)
    return sample, modality


def shuffled_samples(
    features: torch.Tensor, labels: torch.Tensor, sample: torch.Tensor, modality: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Virtual samples (B, M, C, d) from features (B, M, C, d) and their targets (B, M, C)."""
    label = torch.arange(features.shape[2], device=features.device).view(1, 1, -1)
    return features[sample, modality, label], labels[sample, label]


def contrastive_classes(labels: torch.Tensor, n_modalities: int) -> torch.Tensor:
    """Class of every (sample, modality, label) vector (B, M, C): modality, polarity, label (2MC classes).

    Numbered as the reference does: m * 2C + l for a positive label, m * 2C + C + l otherwise.
    """
    n_labels = labels.shape[1]
    label = torch.arange(n_labels, device=labels.device)
    modality = torch.arange(n_modalities, device=labels.device).view(-1, 1) * 2 * n_labels
    polarity = torch.where(labels >= 0.5, 0, n_labels).unsqueeze(1)  # (B, 1, C)
    return modality + polarity + label


@dataclass
class Reconstruction:
    """Section 2 tensors, each (B, M, C, ·)."""

    z: torch.Tensor  # latents of f
    r: torch.Tensor  # De(z)
    p: torch.Tensor  # De(prototype padding)
    a: torch.Tensor  # alpha level
    b: torch.Tensor  # beta level


def alpha_inputs(r: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """F_m's input for every target m: concat over k of r_k, with p_m in slot m. (B, M, C, M*d)."""
    batch, n_mod, n_labels, d = r.shape
    own_slot = torch.eye(n_mod, dtype=torch.bool, device=r.device).view(1, n_mod, 1, n_mod, 1)
    slots = torch.where(own_slot, p.transpose(1, 2).unsqueeze(1), r.transpose(1, 2).unsqueeze(1))
    return slots.reshape(batch, n_mod, n_labels, n_mod * d)


def mse_per_modality(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sum_m MSE(x_m, target_m), each MSE a mean over (B, C, d) as nn.MSELoss; in float32 under autocast."""
    return (at_least_float32(x) - at_least_float32(target)).pow(2).mean(dim=(0, 2, 3)).sum()
