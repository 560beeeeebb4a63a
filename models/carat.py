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
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from models.base import LossOutput, NeuralModel, at_least_float32, build_config, float32_region
from models.carat_config import (  # noqa: F401  (re-exported: models.carat is the model's public face)
    CARAT_PRESETS,
    CHECKPOINTING,
    CONTRASTIVE_MODES,
    FUSIONS,
    POOLINGS,
    CARATConfig,
    auto_queue_size,
)
from models.carat_parts import (  # noqa: F401
    Reconstruction,
    alpha_inputs,
    contrastive_classes,
    ema_prototypes,
    mse_per_modality,
    shuffle_indices,
    shuffled_samples,
)
from models.contrastive import FeatureQueue, supcon_chunked
from models.layers import LAYER_NORM_EPS, CTCAligner, LabelAttention, ModalityMLP, SequenceEncoder, mlp
from models.presets import preset_values
from models.registry import register
from models.spec import DataSpec


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
            self._add(parts, "recon_r", cfg.gamma_r, lambda: mse_per_modality(rec.r, f))
            self._add(parts, "recon_a", cfg.gamma_r, lambda: mse_per_modality(rec.a, f))
            self._add(parts, "recon_b", cfg.gamma_rb, lambda: mse_per_modality(rec.b, f))
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
        a = self.fusion(alpha_inputs(r, p))
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


# ----------------------------------------------------------------------------------------
# Registry: the full model and one named, documented difference per ablation (CARAT.md section 7).

VARIANT_TABLE: dict[str, tuple[dict, str]] = {
    "carat": ({}, "Full CARAT: reconstruction fusion, SupCon with queue, both shuffles, max-pooling, aggregation."),
    "no_contrastive": (dict(contrastive=False), "CARAT without the SupCon term (no queue; prototypes still learnt)."),
    "no_shuffle": (
        dict(sample_shuffle=False, modality_shuffle=False),
        "CARAT without shuffled virtual samples (no shuffled-aggregation term).",
    ),
    "no_sample_shuffle": (
        dict(sample_shuffle=False),
        "CARAT whose virtual samples shuffle modalities only (each entry keeps its own sample).",
    ),
    "no_modality_shuffle": (
        dict(modality_shuffle=False),
        "CARAT whose virtual samples shuffle samples only (each entry keeps its own modality slot).",
    ),
    "no_reconstruction": (
        dict(reconstruction=False),
        "CARAT without prototype padding / alpha / beta fusion: heads read f directly, no recon MSE.",
    ),
    "no_maxpool": (dict(pooling="mean"), "CARAT pooling the per-modality logits by mean instead of max."),
    "no_aggregation": (
        dict(aggregation=False),
        "CARAT predicting from max-pooled beta logits alone (no aggregation head or its losses).",
    ),
}
VARIANTS: dict[str, dict] = {name: switches for name, (switches, _) in VARIANT_TABLE.items()}


def build_variant(name: str, spec: DataSpec, preset: str = "small", **overrides) -> CARAT:
    """CARAT with the switches of variant ``name`` on a preset; overrides may not undo the variant."""
    values = preset_values(CARAT_PRESETS, preset, name)
    variant = VARIANTS[name]
    clashes = sorted(k for k, v in variant.items() if k in overrides and overrides[k] != v)
    if clashes:
        raise ValueError(f"model {name!r} fixes {clashes}; use another variant to change them")
    config = build_config(CARATConfig, {**values, **variant}, overrides, name)
    return CARAT(spec, config)


def _builder(name: str, doc: str):
    def build(spec: DataSpec, preset: str = "small", **overrides) -> CARAT:
        return build_variant(name, spec, preset, **overrides)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    return build


for _name, (_, _doc) in VARIANT_TABLE.items():
    register(_builder(_name, _doc), name=_name)
