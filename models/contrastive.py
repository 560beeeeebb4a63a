"""Supervised contrastive loss with a FIFO queue, as CARAT's reference computes it.

The reference builds the full (batch + queue) x (batch + queue) similarity matrix and
float masks of the same size: about 10 GB at the paper configuration. Here the loss is
computed in chunks of anchors by a custom autograd function that recomputes each chunk
in backward, so memory depends on the chunk size, not on the queue size; positive
masks are derived per chunk from class ids. ``supcon_dense`` is the straightforward
reference form, kept for tests on small shapes.

Loss of anchor i (contrast set = every other vector of batch and queue):
    l_i = logsumexp_{k != i} s_ik - mean_{p in P(i)} s_ip,   s_ik = <x_i, x_k> / temperature
where P(i) are the other vectors of the same class; an anchor without positives
contributes 0 and still counts in the mean over anchors (as in the reference).
"""
from __future__ import annotations

import torch
from torch import nn


def supcon_dense(
    batch: torch.Tensor,
    batch_classes: torch.Tensor,
    queue: torch.Tensor,
    queue_classes: torch.Tensor,
    queue_anchors: bool,
    temperature: float = 0.07,
) -> torch.Tensor:
    """The reference's dense SupCon (full masks); only for small shapes and tests."""
    features = torch.cat([batch, queue])
    classes = torch.cat([batch_classes, queue_classes]).to(features.dtype).view(-1, 1)
    n_anchors = features.shape[0] if queue_anchors else batch.shape[0]
    positives = torch.eq(classes[:n_anchors], classes.T).to(features.dtype)
    logits = features[:n_anchors] @ features.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    not_self = torch.ones_like(positives).scatter(1, torch.arange(n_anchors).view(-1, 1), 0.0)
    positives = positives * not_self
    log_prob = logits - torch.log((torch.exp(logits) * not_self).sum(1, keepdim=True) + 1e-12)
    mean_log_prob_pos = (positives * log_prob).sum(1) / (positives.sum(1) + 1e-12)
    return -mean_log_prob_pos.mean()


def supcon_chunked(
    batch: torch.Tensor,
    batch_classes: torch.Tensor,
    queue: torch.Tensor,
    queue_classes: torch.Tensor,
    queue_anchors: bool,
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Same value and gradient (w.r.t. ``batch``) as ``supcon_dense``, in bounded memory.

    ``batch`` (N, dz) carries the gradient; ``queue`` (Q, dz) is constant. Classes are
    float or integer ids (N,) and (Q,); equal ids are positives.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    classes = torch.cat([batch_classes, queue_classes]).to(batch.dtype)
    return _ChunkedSupCon.apply(batch, queue.detach(), classes, bool(queue_anchors), float(temperature), int(chunk_size))


class _ChunkedSupCon(torch.autograd.Function):
    """Row chunks of the similarity matrix; backward recomputes them from saved row statistics."""

    @staticmethod
    def forward(ctx, batch, queue, classes, queue_anchors, temperature, chunk_size):
        features = torch.cat([batch, queue])
        n_anchors = features.shape[0] if queue_anchors else batch.shape[0]
        log_norms = features.new_empty(n_anchors)
        n_positives = features.new_empty(n_anchors)
        total = features.new_zeros(())
        for start, stop in _anchor_chunks(batch.shape[0], n_anchors, chunk_size):
            sims, positives = _chunk_similarities(features, classes, start, stop, features.shape[0], temperature)
            log_norm = torch.logsumexp(sims, dim=1)
            count = positives.sum(1).to(sims.dtype)
            positive_sum = torch.where(positives, sims, 0.0).sum(1)
            total += torch.where(count > 0, log_norm - positive_sum / count.clamp_min(1.0), 0.0).sum()
            log_norms[start:stop], n_positives[start:stop] = log_norm, count
        # The concatenation is a copy: the caller may push to its queue before backward runs.
        ctx.save_for_backward(features, classes, log_norms, n_positives)
        ctx.n_batch, ctx.temperature, ctx.chunk_size = batch.shape[0], temperature, chunk_size
        return total / n_anchors

    @staticmethod
    def backward(ctx, grad_output):
        features, classes, log_norms, n_positives = ctx.saved_tensors
        n_batch, n_anchors = ctx.n_batch, log_norms.shape[0]
        grad = features.new_zeros(n_batch, features.shape[1])
        for start, stop in _anchor_chunks(n_batch, n_anchors, ctx.chunk_size):
            count = n_positives[start:stop]
            if not bool((count > 0).any()):
                continue  # anchors without positives have neither loss nor gradient
            # Queue anchors are constants: only their similarities to batch vectors carry gradient.
            width = features.shape[0] if start < n_batch else n_batch
            sims, positives = _chunk_similarities(features, classes, start, stop, width, ctx.temperature)
            probs = torch.exp(sims - log_norms[start:stop].unsqueeze(1))  # exp(-inf) = 0 on the diagonal
            coeff = probs - positives.to(sims.dtype) / count.clamp_min(1.0).unsqueeze(1)
            coeff = coeff * (count > 0).to(sims.dtype).unsqueeze(1)
            anchors = features[start:stop]
            if start < n_batch:
                grad[start:stop] += coeff @ features
            grad += coeff[:, :n_batch].T @ anchors
        return grad * (grad_output / (n_anchors * ctx.temperature)), None, None, None, None, None


def _anchor_chunks(n_batch: int, n_anchors: int, chunk_size: int) -> list[tuple[int, int]]:
    """Chunks of anchor rows that never straddle the batch/queue boundary."""
    bounds = [(0, min(n_batch, n_anchors)), (n_batch, n_anchors)]
    return [(s, min(s + chunk_size, hi)) for lo, hi in bounds for s in range(lo, hi, chunk_size)]


def _chunk_similarities(features, classes, start, stop, width, temperature):
    """Scaled similarities of anchors start..stop to contrasts 0..width, self excluded (-inf), and positives."""
    sims = features[start:stop] @ features[:width].T / temperature
    positives = classes[start:stop].unsqueeze(1) == classes[:width].unsqueeze(0)
    if start < width:  # the chunk's own rows lie inside the contrast columns
        local = torch.arange(min(stop, width) - start, device=features.device)
        sims[local, local + start] = float("-inf")
        positives[local, local + start] = False
    return sims, positives


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
        """Enqueue in order, overwriting the oldest entries (of a push longer than the queue, the last ``size`` stay)."""
        n_pushed = vectors.shape[0]
        kept = min(n_pushed, self.size)
        start = int(self.pointer)
        slots = (start + torch.arange(n_pushed - kept, n_pushed, device=vectors.device)) % self.size
        self.vectors[slots] = vectors.detach()[n_pushed - kept:].to(self.vectors.dtype)
        self.classes[slots] = classes.detach()[n_pushed - kept:].to(self.classes.dtype)
        self.pointer.fill_((start + n_pushed) % self.size)
        self.filled.fill_(min(self.size, int(self.filled) + n_pushed))
