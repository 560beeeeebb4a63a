"""CARAT's configuration: the ablation switches, sizes and loss weights, the presets, the queue's size.

Kept apart from the model (``models.carat``) so that reading a configuration needs no torch
module code; the section numbers refer to shared/spec/CARAT.md.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from models.base import build_config
from models.presets import preset_values

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
