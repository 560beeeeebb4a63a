"""Supervised contrastive loss with a FIFO queue, as CARAT's reference computes it.

The reference builds the full (batch + queue) x (batch + queue) similarity matrix and
float masks of the same size: about 10 GB at the paper configuration. ``supcon_chunked``
computes the same loss and gradient one chunk x chunk block at a time inside a custom
autograd function that keeps up to ``KEPT_BLOCK_BYTES`` of blocks for backward and
recomputes the rest there: beyond the vectors themselves, its memory is bounded, whatever
the queue size. The straightforward dense form is in tests/models/test_contrastive.py, the
reference the chunked one is checked against on small shapes.

Loss of anchor i (contrast set = every other vector of batch and queue):
    l_i = logsumexp_{k != i} s_ik - mean_{p in P(i)} s_ip,   s_ik = <x_i, x_k> / temperature
where P(i) are the other vectors of the same class; an anchor without positives
contributes 0 and still counts in the mean over anchors (as in the reference). The
reference adds 1e-12 inside its log and to its positive counts; the chunked form leaves
these out, which only matters when a normaliser is itself below about 1e-10.

Under bf16 autocast (``harness.precision``) the chunked loss still runs in float32 on any
device: its exponentials of similarities / 0.07 need float32's range and accuracy.
"""

from __future__ import annotations

import torch
from torch import nn

from models.base import at_least_float32, float32_region


def supcon_chunked(
    batch: torch.Tensor,
    batch_classes: torch.Tensor,
    queue: torch.Tensor,
    queue_classes: torch.Tensor,
    queue_anchors: bool,
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Same value and gradient (w.r.t. ``batch``) as the reference's dense SupCon, in bounded memory.

    ``batch`` (N, dz) carries the gradient; ``queue`` (Q, dz) is constant. Classes are
    float or integer ids (N,) and (Q,); equal ids are positives.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if not torch.isfinite(batch.detach()).all():
        # A diverged model: hand the trainer a NaN loss, which it reports with epoch and step.
        return batch.sum() * float("nan")
    batch, queue = at_least_float32(batch), at_least_float32(queue.detach())  # see the module docstring
    classes = torch.cat([batch_classes, queue_classes]).to(batch.dtype)
    with float32_region(batch.device):
        return _ChunkedSupCon.apply(batch, queue, classes, bool(queue_anchors), float(temperature), int(chunk_size))


class _ChunkedSupCon(torch.autograd.Function):
    """Blocked SupCon: a chunk x chunk block of the similarity matrix at a time, recomputed in backward.

    * The similarity matrix is symmetric, so each block above the diagonal serves two
      sets of anchors (its row sums and its column sums): half the work of row chunks.
    * Only the softmax normalisers need the similarities. The positive terms are linear
      in the vectors and come from per-class sums: sum_{p in P(i)} s_ip =
      <x_i, S_class(i) - x_i> / temperature. No positive mask is ever built.
    * Exponentials use one shift, the Cauchy-Schwarz bound max|x|^2 / temperature of every
      similarity, so blocks can be summed both ways without a pass for row maxima. The
      smallest term is exp(-2 * shift); where that would underflow float32, the blocks are
      computed in float64.
    """

    # Inputs arrive in float32 and autocast is off (``supcon_chunked``); backward turns it off too,
    # whatever autocast state the caller of backward() is in.
    @staticmethod
    def forward(ctx, batch, queue, classes, queue_anchors, temperature, chunk_size):
        features = torch.cat([batch, queue])  # a copy: the caller may push to its queue before backward
        n_batch, n_anchors = batch.shape[0], features.shape[0] if queue_anchors else batch.shape[0]
        blocks = _Blocks(features, n_batch, n_anchors, temperature, chunk_size)
        normalisers = features.new_zeros(n_anchors, dtype=blocks.dtype)  # Z_i = sum_{k != i} exp(s_ik - shift)
        kept, kept_bytes = {}, 0  # blocks backward needs, while they fit KEPT_BLOCK_BYTES
        for (rs, re), (cs, ce) in blocks.pairs(row_limit=n_anchors):
            block = blocks.exp_similarities(rs, re, cs, ce)
            size = block.numel() * block.element_size()
            if rs < n_batch and kept_bytes + size <= KEPT_BLOCK_BYTES and ctx.needs_input_grad[0]:
                kept[rs, cs], kept_bytes = block, kept_bytes + size
            normalisers[rs:re] += block.sum(1)
            if cs != rs and cs < n_anchors:
                normalisers[cs:ce] += block.sum(0)
        class_of, class_sizes = torch.unique(classes, return_inverse=True, return_counts=True)[1:]
        anchors, anchor_class = features[:n_anchors], class_of[:n_anchors]
        class_sums = _class_sums(features, class_of, len(class_sizes))
        n_positives = (class_sizes[anchor_class] - 1).to(features.dtype)
        positive_sum = ((anchors * class_sums[anchor_class]).sum(1) - (anchors * anchors).sum(1)) / temperature
        log_norms = normalisers.log().add(blocks.shift).to(features.dtype)
        losses = torch.where(n_positives > 0, log_norms - positive_sum / n_positives.clamp_min(1.0), 0.0)
        ctx.save_for_backward(features, class_of, class_sizes, normalisers, n_positives)
        ctx.n_batch, ctx.temperature, ctx.chunk_size, ctx.kept = n_batch, temperature, chunk_size, kept
        return losses.sum() / n_anchors

    @staticmethod
    def backward(ctx, grad_output):
        with float32_region(grad_output.device):
            return _ChunkedSupCon._backward(ctx, grad_output)

    @staticmethod
    def _backward(ctx, grad_output):
        features, class_of, class_sizes, normalisers, n_positives = ctx.saved_tensors
        n_batch, n_anchors, temperature = ctx.n_batch, normalisers.shape[0], ctx.temperature
        blocks = _Blocks(features, n_batch, n_anchors, temperature, ctx.chunk_size)
        # d loss / d s_ik = P_ik + P_ki (softmax parts) minus the positive parts below, where
        # P_ik = exp(s_ik - shift) * alpha_i and alpha_i = 1 / Z_i for anchors with positives, else 0.
        alpha = features.new_zeros(features.shape[0], dtype=blocks.dtype)
        alpha[:n_anchors] = torch.where(n_positives > 0, 1.0 / normalisers, 0.0)
        work = features.to(blocks.dtype)
        with_alpha = torch.cat([work, work * alpha.unsqueeze(1)], dim=1)  # [x_k, alpha_k x_k]
        dim = features.shape[1]
        grad = work.new_zeros(n_batch, dim)
        # Gradient flows only to batch vectors: blocks whose row or column chunk is in the batch.
        for (rs, re), (cs, ce) in blocks.pairs(row_limit=n_batch):
            if not (bool(alpha[rs:re].any()) or bool(alpha[cs:ce].any())):
                continue  # anchors without positives have neither loss nor gradient
            block = ctx.kept.pop((rs, cs), None)
            if block is None:
                block = blocks.exp_similarities(rs, re, cs, ce)
            # sum_k E_ik (alpha_i + alpha_k) x_k = alpha_i (E x)_i + (E (alpha x))_i
            both = block @ with_alpha[cs:ce]
            grad[rs:re] += alpha[rs:re, None] * both[:, :dim] + both[:, dim:]
            if cs != rs and cs < n_batch:
                both = block.T @ with_alpha[rs:re]
                grad[cs:ce] += alpha[cs:ce, None] * both[:, :dim] + both[:, dim:]
        # Positive parts, through per-class sums: as anchor, then as another anchor's positive.
        weight = torch.where(n_positives > 0, 1.0 / n_positives.clamp_min(1.0), 0.0).to(blocks.dtype)
        n_classes = len(class_sizes)
        own_class, own, own_weight = class_of[:n_batch], work[:n_batch], weight[:n_batch, None]
        grad -= own_weight * (_class_sums(work, class_of, n_classes)[own_class] - own)
        weighted = _class_sums(work[:n_anchors] * weight.unsqueeze(1), class_of[:n_anchors], n_classes)
        grad -= weighted[own_class] - own_weight * own
        grad = grad.to(features.dtype) * (grad_output / (n_anchors * temperature))
        return grad, None, None, None, None, None


# Forward keeps the exponentiated blocks that backward would recompute, up to this many bytes
# (about 6 % of a small-preset step's time for at most 64 MB; the paper step keeps 16 of its blocks).
KEPT_BLOCK_BYTES = 64 * 2**20

# exp(-2 * shift) must stay a normal number: about exp(-87) in float32, exp(-708) in float64.
_SHIFT_RANGE = {torch.float32: 80.0, torch.float64: 700.0}


class _Blocks:
    """Chunked view of the contrast set: chunk pairs and their shifted exponentiated similarities."""

    def __init__(self, features, n_batch, n_anchors, temperature, chunk_size):
        self.shift = float(features.norm(dim=1).max()) ** 2 / temperature
        candidates = (features.dtype, torch.float64)  # the input's own precision unless it would underflow
        self.dtype = next((t for t in candidates if 2 * self.shift <= _SHIFT_RANGE.get(t, 0.0)), None)
        if self.dtype is None:
            raise ValueError(f"temperature {temperature} is too small for vectors of norm {self.shift**0.5:.3g}")
        self.features = features.to(self.dtype)
        self.scaled = self.features / temperature
        n_all = features.shape[0]
        # Chunks never straddle the batch/queue boundary, so a chunk is wholly batch or wholly queue.
        self.chunks = [
            (s, min(s + chunk_size, hi))
            for lo, hi in ((0, n_batch), (n_batch, n_all))
            for s in range(lo, hi, chunk_size)
        ]

    def pairs(self, row_limit: int):
        """Chunk pairs (row, column) on or above the diagonal whose row chunk starts below row_limit."""
        for i, rows in enumerate(self.chunks):
            if rows[0] < row_limit:
                yield from ((rows, cols) for cols in self.chunks[i:])

    def exp_similarities(self, rs, re, cs, ce) -> torch.Tensor:
        """exp(s_ik - shift) for i in rs..re, k in cs..ce; zero where i == k."""
        block = torch.mm(self.features[rs:re], self.scaled[cs:ce].T).sub_(self.shift).exp_()
        if rs == cs:
            block.fill_diagonal_(0.0)
        return block


def _class_sums(vectors: torch.Tensor, class_of: torch.Tensor, n_classes: int) -> torch.Tensor:
    return vectors.new_zeros(n_classes, vectors.shape[1]).index_add_(0, class_of, vectors)


class FeatureQueue(nn.Module):
    """FIFO queue of past latent vectors and their contrastive classes (buffers, no gradient).

    ``random_init=True`` is the reference quirk: the queue starts full of random vectors
    (normalised along the queue axis, as the reference does) with random non-integer
    classes, so they act only as negatives until replaced. Otherwise it starts empty and
    only filled entries join the contrast set.
    """

    def __init__(self, size: int, dim: int, random_init: bool = True):
        super().__init__()
        if size < 1:
            raise ValueError(f"queue size must be >= 1, got {size}")
        self.size, self.random_init = size, random_init
        if random_init:
            vectors = nn.functional.normalize(torch.randn(size, dim), dim=0)
            classes = torch.randn(size)
        else:
            vectors, classes = torch.zeros(size, dim), torch.zeros(size)
        self.register_buffer("vectors", vectors)
        self.register_buffer("classes", classes)
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.tensor(size if random_init else 0, dtype=torch.long))

    def contents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The valid entries (vectors, classes)."""
        n = int(self.filled)
        return self.vectors[:n], self.classes[:n]

    @torch.no_grad()
    def push(self, vectors: torch.Tensor, classes: torch.Tensor) -> None:
        """Enqueue in order, overwriting the oldest entries.

        A push longer than the queue is refused: it would overwrite part of itself, so the
        queue would hold only the push's last entries and no past step at all -- another
        mechanism, which the reference refuses too (``CARAT.check_training`` says so before
        training starts).
        """
        n_pushed = vectors.shape[0]
        if n_pushed > self.size:
            raise ValueError(f"a push of {n_pushed} vectors is longer than the queue ({self.size} entries)")
        start = int(self.pointer)
        slots = (start + torch.arange(n_pushed, device=vectors.device)) % self.size
        self.vectors[slots] = vectors.detach().to(self.vectors.dtype)
        self.classes[slots] = classes.detach().to(self.classes.dtype)
        self.pointer.fill_((start + n_pushed) % self.size)
        self.filled.fill_(min(self.size, int(self.filled) + n_pushed))
