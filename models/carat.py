"""CARAT (Peng et al., AAAI 2024) for any M >= 2 modalities and C >= 1 labels, and its ablations.

Implements the project's CARAT spec (shared/spec/CARAT.md); section numbers refer to it.

    f_m = label attention over a BERT-style encoder of modality m          (1)   (B, M, C, d)
    z_m = En_m(f_m), r_m = De_m(z_m), p_m = De_m(prototype padding of z_m) (2.5-7)
    a_m = F_m(concat_k [r_k, or p_m at slot m]), b_m = F_m(concat_k a_k)  (2.8-9)
    SupCon over normalised z_m, En_m(a_m), En_m(b_m) with a FIFO queue     (2.10)
    logits <g_j, W_m[j]> at the three levels, pooled over modalities       (3.11)
    aggregation head on b, plus shuffled virtual samples                   (3.12-13)
    score = (sigmoid(pooled beta logits) + mean_m sigmoid(aggregation)) / 2  (3.14)

Without reconstruction (``no_reconstruction``) the heads, the aggregation and SupCon (one
level, z_m) read f_m directly; the BCE of that prediction level carries gamma_beta.

Deviations from the reference (every one deliberate; with the reference's loaders, whose
masks mark every step real, only the last three can change a number):

* Label attention masks padding frames as the reference's does, but with BERT's finite
  -10000 instead of -inf: a sample with at least one real frame gets the same weights
  (those of padding underflow to exactly 0); a sample whose modality has no real frame at
  all gets uniform weights and a finite result where the reference gives NaN.
* The CTC aligner zeroes padding frames before aligning, and all T' aligned steps count
  as real; the reference aligns every frame, padding included, and then reuses the
  unaligned input's mask, index by index, on the aligned steps.
* SupCon is computed in blocks without the reference's 1e-12 inside its log and positive
  counts (``models.contrastive``): it differs only where a normaliser is below ~1e-10.
* Dropout masks come from 16-bit uniform integers (p quantised to 1/65536, see
  ``layers.keep_mask``).
* Random numbers are drawn differently (the shuffles are argsorts of torch uniforms, the
  reference loops over numpy permutations; dropout masks as above), so a seed gives runs
  that match the reference in distribution, not bit for bit.

The prototype update in closed form (``ema_prototypes``) is exact up to float rounding, not a deviation.

Speed and memory (see ``models.contrastive`` and ``models.layers``): SupCon is computed
exactly in blocks, never as the reference's (batch + queue)^2 matrices; attention keeps
only q, k, v and its dropout mask for backward; ``checkpoint_layers`` (on in the paper
preset) recomputes encoder layers in backward.

Mixed precision (``harness.precision``): under bf16 autocast the matmuls run in bf16,
while the loss terms, the SupCon loss, the prototype padding and update, and the vectors
pushed to the queue are computed in float32 (``float32_region``), so that the
buffers that live across steps never hold bf16 values. In float32 these casts are no-ops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from models.base import LossOutput, NeuralModel, at_least_float32, build_config, float32_region
from models.contrastive import FeatureQueue, supcon_chunked
from models.layers import LAYER_NORM_EPS, CTCAligner, LabelAttention, ModalityMLP, SequenceEncoder, mlp
from models.presets import preset_values
from models.registry import register
from models.spec import DataSpec

CONTRASTIVE_MODES = ("reference", "fast")
FUSIONS = ("linear", "mlp")
POOLINGS = ("max", "mean")
CHECKPOINTING = (False, True, "fp32")


@dataclass(frozen=True)
class CARATConfig:
    """Every architecture size, reference quirk, ablation switch and loss weight of CARAT."""

    hidden_size: int = 256  # d
    latent_size: int = 64  # dz
    # Encoder depth per modality: a tuple in modality order whose last entry repeats for
    # further modalities ((6, 4) = first modality 6, every other 4), or a dict by name.
    depths: tuple | dict = (6, 4)
    heads: int = 8
    dropout: float = 0.3
    # T' of the CTC aligner on unaligned data; None = the first modality's T. The paper preset
    # uses the reference's 500 (its --unaligned_mask_same_length option gives 50).
    aligned_length: int | None = None
    fusion: str = "linear"  # F_m: "linear" (reference) or "mlp" (2 layers, as the paper describes)
    prototype_momentum: float = 0.99
    temperature: float = 0.07
    # None: sized from the data when training starts (``CARAT.check_training``): the smallest
    # power of two holding one push (batch x levels x modalities x labels), never below
    # min_queue_size; the size chosen replaces None in ``model.config``, so it is what is logged.
    # A number is used as given, and one shorter than a push is refused.
    queue_size: int | None = None
    min_queue_size: int = 8192
    # "reference": the reference's SupCon, queue entries are anchors too (computed exactly,
    # in blocks). "fast": only the batch's vectors are anchors, the queue is only contrast
    # set (the usual SupCon/MoCo form); about two thirds of the SupCon work at the paper size.
    contrastive_mode: str = "reference"
    queue_anchors: bool | None = None  # None = as contrastive_mode says (reference: True, fast: False)
    random_queue_init: bool = True  # reference quirk: queue starts as random vectors with non-integer classes
    supcon_chunk_size: int = 1024  # SupCon works on chunk x chunk blocks: its memory is independent of the queue
    # Recompute each encoder layer's activations in backward instead of keeping them:
    # identical results (dropout masks are replayed), about 500 MB less at the paper size,
    # for one more encoder forward (about +35% step time on a CPU). "fp32": only when the
    # encoders run in float32, not under bf16 autocast (harness.precision), where the
    # activations kept are smaller and the recomputation a larger share of the step.
    checkpoint_layers: bool | str = False
    # Ablation switches (CARAT.md section 7).
    contrastive: bool = True
    sample_shuffle: bool = True
    modality_shuffle: bool = True
    reconstruction: bool = True
    pooling: str = "max"
    aggregation: bool = True
    # Loss weights (section 4); a zero weight skips computing its term.
    gamma_o: float = 0.01  # BCE of the original level
    gamma_alpha: float = 0.1  # BCE of the alpha level
    gamma_beta: float = 1.0  # BCE of the beta level (the prediction level)
    gamma_s: float = 1.0  # SupCon
    gamma_r: float = 1.0  # MSE(r_m, f_m) and MSE(a_m, f_m)
    gamma_rb: float = 0.0  # MSE(b_m, f_m)
    gamma_agg: float = 1.0  # BCE of the aggregation head
    gamma_sf: float = 0.1  # BCE of the aggregation head on shuffled virtual samples

    def __post_init__(self):
        problems = []
        for name in ("hidden_size", "latent_size", "heads", "queue_size", "min_queue_size", "supcon_chunk_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.heads:
            problems.append(f"hidden_size {self.hidden_size} must be divisible by heads {self.heads}")
        if self.hidden_size < 2:
            problems.append("hidden_size must be >= 2 (En/De have a d/2 hidden layer)")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.prototype_momentum < 1.0:
            problems.append(f"prototype_momentum must be in (0, 1), got {self.prototype_momentum}")
        if not self.temperature > 0:
            problems.append(f"temperature must be > 0, got {self.temperature}")
        if self.aligned_length is not None and self.aligned_length < 1:
            problems.append(f"aligned_length must be >= 1, got {self.aligned_length}")
        for name, valid in (("contrastive_mode", CONTRASTIVE_MODES), ("fusion", FUSIONS), ("pooling", POOLINGS)):
            if getattr(self, name) not in valid:
                problems.append(f"{name} must be one of {valid}, got {getattr(self, name)!r}")
        if self.checkpoint_layers not in CHECKPOINTING:
            problems.append(f"checkpoint_layers must be one of {CHECKPOINTING}, got {self.checkpoint_layers!r}")
        if self.contrastive_mode == "fast" and self.queue_anchors:
            problems.append("contrastive_mode 'fast' means batch anchors only; it contradicts queue_anchors=True")
        problems += [
            f"{f.name} must be >= 0, got {getattr(self, f.name)}"
            for f in fields(self)
            if f.name.startswith("gamma_") and getattr(self, f.name) < 0
        ]
        depths = self.depths
        if isinstance(depths, int) or not isinstance(depths, (tuple, list, dict)) or not depths:
            problems.append(f"depths must be a non-empty tuple or dict, got {depths!r}")
        elif any(int(v) < 1 for v in (depths.values() if isinstance(depths, dict) else depths)):
            problems.append(f"every depth must be >= 1, got {depths!r}")
        if problems:
            raise ValueError("CARATConfig: " + "; ".join(problems))

    @classmethod
    def preset(cls, name: str, **overrides) -> CARATConfig:
        return build_config(cls, preset_values(CARAT_PRESETS, name, "carat"), overrides, "carat")

    @property
    def uses_queue_anchors(self) -> bool:
        return self.queue_anchors if self.queue_anchors is not None else self.contrastive_mode == "reference"

    @property
    def shuffles(self) -> bool:
        return self.aggregation and (self.sample_shuffle or self.modality_shuffle)

    def depth_per_modality(self, names: tuple[str, ...]) -> list[int]:
        if isinstance(self.depths, dict):
            missing = [n for n in names if n not in self.depths]
            if missing:
                raise ValueError(f"depths has no entry for modalities {missing}; it names {sorted(self.depths)}")
            return [int(self.depths[n]) for n in names]
        return [int(self.depths[min(i, len(self.depths) - 1)]) for i in range(len(names))]


CARAT_PRESETS: dict[str, dict] = {
    # Paper / reference sizes (CARAT.md 1.2, 1.3, 2.5, 2.10) and the spec's loss weights.
    # Layer checkpointing changes no result; it keeps a paper-size float32 CPU step well under 2 GB.
    # checkpoint_layers="fp32": no recomputation under bf16 autocast, where the activations kept are
    # bf16 (the residual stream too, see layers.SequenceEncoder) and recomputation is the larger share
    # of the step. Measured at batch 64 on a 2-vCPU AMD EPYC with AVX512-BF16 (`invoke bench --only
    # carat-step-bf16-no-recompute --precision auto`): 1296 MB peak RSS with a float32 residual
    # stream, within the 1.41 GB budget (7.5x below the reference's 10.6 GB).
    "paper": dict(
        hidden_size=256,
        latent_size=64,
        depths=(6, 4),
        heads=8,
        dropout=0.3,
        min_queue_size=8192,  # the reference's 8192 wherever one push fits (a larger one when not)
        aligned_length=500,
        checkpoint_layers="fp32",
    ),
    # Same architecture scaled down, so a whole run on small synthetic data takes seconds on a CPU.
    # The queue is at least 4096, one push of the shipped studies: batch 64 x 3 levels x 3 modalities
    # x 6 labels = 3456 vectors (emotions and the benchmark's batch 32: at most 32 x 3 x 2 x 12 = 2304);
    # a data set with a larger push gets the next power of two (queue_size None). A larger queue
    # costs quadratically in SupCon (queue entries are anchors too): 8192 made an
    # emotions step about 5 times slower than 1152.
    # gamma_r 0.01, not 1: the reconstruction MSEs pull f toward what De/F can rebuild, and their
    # cheapest minimum is an f that is the same for every sample. On tabular data (T = 1) that
    # collapse wins within ~30 steps and CARAT predicts the label prior (validation micro-F1 of
    # synthetic_tabular, 3 seeds: 0.475 at gamma_r 1, 0.602 at 0.1, 0.655 at 0.01; emotions 0.694 ->
    # 0.717; synthetic sequences not hurt). The paper preset keeps the spec's 1.0.
    "small": dict(
        hidden_size=64, latent_size=16, depths=(2, 1), heads=4, dropout=0.1, min_queue_size=4096, gamma_r=0.01
    ),
}


def auto_queue_size(pushed: int, minimum: int) -> int:
    """The queue size chosen for ``queue_size`` None: the smallest power of two that holds one push of
    ``pushed`` vectors, never below ``minimum`` (the preset's size, which keeps the shipped studies'
    queues as they were). A power of two keeps SupCon's blocks of ``supcon_chunk_size`` whole."""
    return max(minimum, 1 << max(pushed - 1, 0).bit_length())


# ----------------------------------------------------------------------------------------
# Vectorised pieces, exposed as functions so tests can check them against plain loops.


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


class CARAT(NeuralModel):
    """CARAT with ablation switches; see ``CARATConfig`` and the module docstring."""

    def __init__(self, spec: DataSpec, config: CARATConfig | None = None):
        super().__init__()
        config = config or CARATConfig()
        names = spec.modality_names
        if len(names) < 2:
            raise ValueError(f"CARAT needs at least 2 modalities, got {list(names)}")
        if spec.n_labels < 1:
            raise ValueError("CARAT needs at least 1 label")
        self.spec, self.config, self.modalities = spec, config, names
        n_mod, n_labels = len(names), spec.n_labels
        d, dz = config.hidden_size, config.latent_size
        dims = [spec.modalities[n][1] for n in names]
        lengths = [spec.modalities[n][0] for n in names]
        self.aligned_length = None if spec.aligned else (config.aligned_length or lengths[0])
        encoded_lengths = lengths if spec.aligned else [lengths[0]] + [self.aligned_length] * (n_mod - 1)

        self.input_norms = nn.ModuleList(nn.LayerNorm(dim, eps=LAYER_NORM_EPS) for dim in dims)
        self.aligners = (
            None if spec.aligned else nn.ModuleList(CTCAligner(dim, self.aligned_length) for dim in dims[1:])
        )
        self.encoders = nn.ModuleList(
            SequenceEncoder(dim, length, d, depth, config.heads, config.dropout, config.checkpoint_layers)
            for dim, length, depth in zip(dims, encoded_lengths, config.depth_per_modality(names))
        )
        self.label_attention = nn.ModuleList(LabelAttention(d, n_labels) for _ in names)
        # W_m (C x d) per modality, Kaiming-uniform(a=sqrt(5)) as in the reference: U(-1/sqrt(d), 1/sqrt(d)).
        bound = 1 / math.sqrt(d)
        self.classifier = nn.Parameter(torch.empty(n_mod, n_labels, d).uniform_(-bound, bound))
        needs_latents = config.contrastive or config.reconstruction
        self.latent_encoder = ModalityMLP(n_mod, [d, d // 2, dz]) if needs_latents else None
        if config.reconstruction:
            self.latent_decoder = ModalityMLP(n_mod, [dz, d // 2, d])
            self.fusion = ModalityMLP(n_mod, [n_mod * d, d] if config.fusion == "linear" else [n_mod * d, d, d])
            self.register_buffer("prototypes", torch.zeros(2, n_mod, n_labels, dz))  # [positive, negative]
        self.aggregator = mlp([n_labels * d, d, n_labels]) if config.aggregation else None
        # With queue_size None the queue starts at min_queue_size; check_training resizes it once the
        # batch size is known (built last, so the weights' random draws do not depend on its size).
        queue_size = config.queue_size or config.min_queue_size
        self.queue = FeatureQueue(queue_size, dz, config.random_queue_init) if config.contrastive else None

    # ---- public API -------------------------------------------------------------------

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        """Prediction scores (B, C) in [0, 1], inference semantics (hard prototype choice)."""
        masks = self._checked(inputs, masks)
        f = self._label_features(inputs, masks)
        head_features = self._reconstruct(f, soft=False).b if self.config.reconstruction else f
        return self._scores(head_features)

    def training_loss(
        self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> LossOutput:
        """Section 4 loss with its weighted parts; in training mode, then moves prototypes and queue."""
        masks = self._checked(inputs, masks, labels)
        cfg, parts = self.config, {}
        f = self._label_features(inputs, masks)
        rec = self._reconstruct(f, soft=True) if cfg.reconstruction else None
        # Without reconstruction the heads read f directly: it is the prediction level, weighted like beta.
        head_features = rec.b if rec is not None else f
        if rec is not None:
            self._add(parts, "bce_o", cfg.gamma_o, lambda: self._bce_level(f, labels))
            self._add(parts, "bce_alpha", cfg.gamma_alpha, lambda: self._bce_level(rec.a, labels))
        self._add(parts, "bce_beta", cfg.gamma_beta, lambda: self._bce_level(head_features, labels))
        contrast = None
        if cfg.contrastive and cfg.gamma_s:
            contrast = self._contrast_set(f, rec, labels)
            parts["supcon"] = cfg.gamma_s * self._supcon(*contrast)
        if rec is not None:
            self._add(parts, "recon_r", cfg.gamma_r, lambda: _mse_per_modality(rec.r, f))
            self._add(parts, "recon_a", cfg.gamma_r, lambda: _mse_per_modality(rec.a, f))
            self._add(parts, "recon_b", cfg.gamma_rb, lambda: _mse_per_modality(rec.b, f))
        if cfg.aggregation:
            self._add(parts, "agg", cfg.gamma_agg, lambda: self._bce_aggregation(head_features, labels))
            if cfg.shuffles:
                self._add(parts, "shuffle_agg", cfg.gamma_sf, lambda: self._bce_shuffled(head_features, labels))
        total = sum(parts.values(), torch.zeros((), device=f.device))
        if self.training:
            self._update_memory(rec.z if rec is not None else None, labels, contrast)
        return LossOutput(total=total, parts=parts)

    def check_training(self, batch_size: int) -> None:
        """Refuse a contrastive queue shorter than one push, before training (``NeuralModel.check_training``).

        Each step pushes B x L x M x C vectors (L = 3 levels with reconstruction, 1
        without). A shorter queue would keep only part of the current step and nothing of
        the past: a different mechanism, which the reference refuses.

        With ``queue_size`` None the queue is sized here instead (``auto_queue_size``) and the size
        replaces None in ``self.config``: call it before logging the config and before training.
        """
        pushed = self.push_size(batch_size)
        if self.config.queue_size is None:
            size = auto_queue_size(pushed, self.config.min_queue_size)
            if self.queue is not None and size != self.queue.size:
                self.queue = FeatureQueue(size, self.config.latent_size, self.config.random_queue_init)
            self.config = replace(self.config, queue_size=size)
            return
        if pushed > self.config.queue_size:
            levels = self.contrast_levels
            raise ValueError(
                f"queue_size {self.config.queue_size} is shorter than one push of {pushed} vectors "
                f"(batch {batch_size} x {levels} level{'s' if levels != 1 else ''} x {len(self.modalities)} "
                f"modalities x {self.spec.n_labels} labels); use queue_size >= {pushed} or a smaller batch_size"
            )

    @property
    def contrast_levels(self) -> int:
        """L: the levels whose latents join SupCon and the queue (z, En(a), En(b); only z without reconstruction)."""
        return 3 if self.config.reconstruction else 1

    def push_size(self, batch_size: int) -> int:
        """Vectors pushed to the queue per training step of ``batch_size`` samples (0: no SupCon, no queue)."""
        if self.queue is None or not self.config.gamma_s:
            return 0
        return batch_size * self.contrast_levels * len(self.modalities) * self.spec.n_labels

    @torch.no_grad()
    def latents(self, inputs, masks) -> torch.Tensor | None:
        """z = En_m(f_m), (B, M, C, dz); None when the variant has no latent encoder."""
        if self.latent_encoder is None:
            return None
        masks = self._checked(inputs, masks)
        return self.latent_encoder(self._label_features(inputs, masks))

    # ---- section 1: label-specific features -------------------------------------------

    def _label_features(self, inputs, masks) -> torch.Tensor:
        features = []
        for i, name in enumerate(self.modalities):
            x, mask = self.input_norms[i](inputs[name]), masks[name]
            if self.aligners is not None and i > 0:
                x = self.aligners[i - 1](x, mask)
                mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            features.append(self.label_attention[i](self.encoders[i](x, mask), mask))
        return torch.stack(features, dim=1)  # (B, M, C, d)

    # ---- section 2: reconstruction-based fusion ----------------------------------------

    def _reconstruct(self, f: torch.Tensor, soft: bool) -> Reconstruction:
        z = self.latent_encoder(f)
        padding = self._prototype_padding(z, soft)
        n_labels = f.shape[2]
        decoded = self.latent_decoder(torch.cat([z, padding], dim=2))  # one pass for r and p
        r, p = decoded[:, :, :n_labels], decoded[:, :, n_labels:]
        a = self.fusion(_alpha_inputs(r, p))
        batch, n_mod, _, d = a.shape
        all_alpha = a.transpose(1, 2).reshape(batch, 1, n_labels, n_mod * d).expand(batch, n_mod, n_labels, n_mod * d)
        return Reconstruction(z=z, r=r, p=p, a=a, b=self.fusion(all_alpha))

    def _prototype_padding(self, z: torch.Tensor, soft: bool) -> torch.Tensor:
        """Latent stand-in for z: softmax-weighted prototype mix (training) or the closer one (inference)."""
        protos = self.prototypes
        with float32_region(z.device):  # the prototypes are float32 running averages; so is their use
            unit = F.normalize(at_least_float32(z), dim=-1)
            sims = torch.einsum("bmcd,pmcd->bmcp", unit, protos)  # prototypes not normalised
            if soft:
                return torch.einsum("bmcp,pmcd->bmcd", torch.softmax(sims, dim=-1), protos)
            return torch.where((sims[..., 0] > sims[..., 1]).unsqueeze(-1), protos[0], protos[1])

    def _contrast_set(self, f, rec: Reconstruction | None, labels) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised latents of every level (z, En(a), En(b); only z without reconstruction) and their
        classes, flattened in the reference's order (sample, level, modality, label)."""
        if rec is None:
            latents = [self.latent_encoder(f)]
        else:
            latents = [rec.z, *self.latent_encoder(torch.cat([rec.a, rec.b], dim=2)).split(labels.shape[1], dim=2)]
        # (B, L, M, C, dz), normalised in float32: these vectors also go to the queue.
        stacked = F.normalize(at_least_float32(torch.stack(latents, dim=1)), dim=-1)
        classes = contrastive_classes(labels, len(self.modalities)).unsqueeze(1).expand(stacked.shape[:-1])
        return stacked.reshape(-1, stacked.shape[-1]), classes.reshape(-1)

    def _supcon(self, vectors: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        queue_vectors, queue_classes = self.queue.contents()
        return supcon_chunked(
            vectors,
            classes,
            queue_vectors,
            queue_classes,
            self.config.uses_queue_anchors,
            self.config.temperature,
            self.config.supcon_chunk_size,
        )

    @torch.no_grad()
    def _update_memory(self, z, labels, contrast) -> None:
        if z is not None:
            # A new tensor, not an in-place update: this step's graph still holds the old prototypes.
            with float32_region(z.device):
                self.prototypes = ema_prototypes(
                    self.prototypes, F.normalize(at_least_float32(z), dim=-1), labels, self.config.prototype_momentum
                )
        if contrast is not None:
            self.queue.push(*contrast)

    # ---- section 3: heads, aggregation, shuffle ----------------------------------------

    def _pooled_logits(self, features: torch.Tensor) -> torch.Tensor:
        # Logits in float32 for the losses and scores, whatever precision the einsum ran in.
        logits = at_least_float32(torch.einsum("bmcd,mcd->bmc", features, self.classifier))
        return logits.amax(dim=1) if self.config.pooling == "max" else logits.mean(dim=1)

    def _aggregate(self, features: torch.Tensor) -> torch.Tensor:
        return at_least_float32(self.aggregator(features.flatten(2)))  # (B, M, C*d) -> (B, M, C), float32 logits

    def _scores(self, head_features: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(self._pooled_logits(head_features))
        if self.aggregator is None:
            return scores
        return (scores + torch.sigmoid(self._aggregate(head_features)).mean(dim=1)) / 2

    def _bce_level(self, features, labels) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self._pooled_logits(features), labels)

    def _bce_aggregation(self, features, labels) -> torch.Tensor:
        targets = labels.unsqueeze(1).expand(-1, features.shape[1], -1)
        return F.binary_cross_entropy_with_logits(self._aggregate(features), targets)

    def _bce_shuffled(self, features, labels) -> torch.Tensor:
        batch, n_mod, n_labels = features.shape[:3]
        sample, modality = shuffle_indices(
            batch, n_mod, n_labels, self.config.sample_shuffle, self.config.modality_shuffle, features.device
        )
        virtual, targets = shuffled_samples(features, labels, sample, modality)
        return F.binary_cross_entropy_with_logits(self._aggregate(virtual), targets)

    # ---- helpers -----------------------------------------------------------------------

    @staticmethod
    def _add(parts: dict, name: str, weight: float, term) -> None:
        if weight:
            parts[name] = weight * term()

    def _checked(self, inputs, masks, labels=None) -> dict[str, torch.Tensor]:
        """Validate shapes at the boundary; returns the masks as bool tensors."""
        missing = [n for n in self.modalities if n not in inputs or n not in masks]
        if missing:
            raise ValueError(f"missing modality inputs or masks {missing}; expected {list(self.modalities)}")
        batch = inputs[self.modalities[0]].shape[0]
        checked = {}
        for i, name in enumerate(self.modalities):
            x, mask = inputs[name], masks[name]
            max_len, dim = self.spec.modalities[name]
            too_long = (self.aligners is None or i == 0) and x.shape[1] > max_len  # beyond the position table
            if x.ndim != 3 or x.shape[0] != batch or x.shape[2] != dim or too_long:
                raise ValueError(
                    f"modality {name!r}: input shape {tuple(x.shape)}, expected ({batch}, <= {max_len}, {dim})"
                )
            if tuple(mask.shape) != tuple(x.shape[:2]):
                raise ValueError(f"modality {name!r}: mask shape {tuple(mask.shape)}, expected {tuple(x.shape[:2])}")
            checked[name] = mask.bool()
        if labels is not None and tuple(labels.shape) != (batch, self.spec.n_labels):
            raise ValueError(f"labels shape {tuple(labels.shape)}, expected ({batch}, {self.spec.n_labels})")
        return checked


def _alpha_inputs(r: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """F_m's input for every target m: concat over k of r_k, with p_m in slot m. (B, M, C, M*d)."""
    batch, n_mod, n_labels, d = r.shape
    own_slot = torch.eye(n_mod, dtype=torch.bool, device=r.device).view(1, n_mod, 1, n_mod, 1)
    slots = torch.where(own_slot, p.transpose(1, 2).unsqueeze(1), r.transpose(1, 2).unsqueeze(1))
    return slots.reshape(batch, n_mod, n_labels, n_mod * d)


def _mse_per_modality(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sum_m MSE(x_m, target_m), each MSE a mean over (B, C, d) as nn.MSELoss; in float32 under autocast."""
    return (at_least_float32(x) - at_least_float32(target)).pow(2).mean(dim=(0, 2, 3)).sum()


# ----------------------------------------------------------------------------------------
# Registry: the full model and one builder per ablation (CARAT.md section 7).

VARIANTS: dict[str, dict] = {
    "carat": {},
    "no_contrastive": dict(contrastive=False),
    "no_shuffle": dict(sample_shuffle=False, modality_shuffle=False),
    "no_sample_shuffle": dict(sample_shuffle=False),
    "no_modality_shuffle": dict(modality_shuffle=False),
    "no_reconstruction": dict(reconstruction=False),
    "no_maxpool": dict(pooling="mean"),
    "no_aggregation": dict(aggregation=False),
}


def build_variant(name: str, spec: DataSpec, preset: str = "small", **overrides) -> CARAT:
    """CARAT with the switches of variant ``name`` on a preset; overrides may not undo the variant."""
    values = preset_values(CARAT_PRESETS, preset, name)
    variant = VARIANTS[name]
    clashes = sorted(k for k, v in variant.items() if k in overrides and overrides[k] != v)
    if clashes:
        raise ValueError(f"model {name!r} fixes {clashes}; use another variant to change them")
    config = build_config(CARATConfig, {**values, **variant}, overrides, name)
    return CARAT(spec, config)


@register
def carat(spec: DataSpec, preset: str = "small", **overrides) -> CARAT:
    """Full CARAT: reconstruction fusion, SupCon with queue, both shuffles, max-pooling, aggregation."""
    return build_variant("carat", spec, preset, **overrides)


@register
def no_contrastive(spec: DataSpec, preset: str = "small", **overrides) -> CARAT:
    """CARAT without the SupCon term (no queue; prototypes still learnt)."""
    return build_variant("no_contrastive", spec, preset, **overrides)


@register
def no_shuffle(spec: DataSpec, preset: str = "small", **overrides) -> CARAT:
    """CARAT without shuffled virtual samples (no shuffled-aggregation term)."""
    return build_variant("no_shuffle", spec, preset, **overrides)


@register
def no_sample_shuffle(spec: DataSpec, preset: str = "small", **overrides) -> CARAT:
    """CARAT whose virtual samples shuffle modalities only (each entry keeps its own sample)."""
    return build_variant("no_sample_shuffle", spec, preset, **overrides)


@register
def no_modality_shuffle(spec: DataSpec, preset: str = "small", **overrides) -> CARAT:
    """CARAT whose virtual samples shuffle samples only (each entry keeps its own modality slot)."""
    return build_variant("no_modality_shuffle", spec, preset, **overrides)


@register
def no_reconstruction(spec: DataSpec, preset: str = "small", **overrides) -> CARAT:
    """CARAT without prototype padding / alpha / beta fusion: heads read f directly, no recon MSE."""
    return build_variant("no_reconstruction", spec, preset, **overrides)


@register
def no_maxpool(spec: DataSpec, preset: str = "small", **overrides) -> CARAT:
    """CARAT pooling the per-modality logits by mean instead of max."""
    return build_variant("no_maxpool", spec, preset, **overrides)


@register
def no_aggregation(spec: DataSpec, preset: str = "small", **overrides) -> CARAT:
    """CARAT predicting from max-pooled beta logits alone (no aggregation head or its losses)."""
    return build_variant("no_aggregation", spec, preset, **overrides)
