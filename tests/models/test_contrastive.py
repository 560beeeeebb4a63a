"""Blocked SupCon against the dense reference form, and the FIFO feature queue."""

import pytest
import torch
import torch.nn.functional as F

from models.contrastive import FeatureQueue, supcon_chunked


def supcon_dense(
    batch: torch.Tensor,
    batch_classes: torch.Tensor,
    queue: torch.Tensor,
    queue_classes: torch.Tensor,
    queue_anchors: bool,
    temperature: float = 0.07,
) -> torch.Tensor:
    """The reference's dense SupCon (full masks, CARAT.md 2.10), written as the reference writes it."""
    features = torch.cat([batch, queue])
    classes = torch.cat([batch_classes, queue_classes]).to(features.dtype).view(-1, 1)
    n_anchors = features.shape[0] if queue_anchors else batch.shape[0]
    positives = torch.eq(classes[:n_anchors], classes.T).to(features.dtype)
    logits = features[:n_anchors] @ features.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    anchor_index = torch.arange(n_anchors, device=features.device).view(-1, 1)
    not_self = torch.ones_like(positives).scatter(1, anchor_index, 0.0)
    positives = positives * not_self
    log_prob = logits - torch.log((torch.exp(logits) * not_self).sum(1, keepdim=True) + 1e-12)
    mean_log_prob_pos = (positives * log_prob).sum(1) / (positives.sum(1) + 1e-12)
    return -mean_log_prob_pos.mean()


def _problem(n_batch=37, n_queue=29, dim=8, n_classes=5, random_queue=8, dtype=torch.float64, seed=0):
    """Unit batch vectors with integer classes; a queue whose first entries have random non-integer classes."""
    g = torch.Generator().manual_seed(seed)
    batch = F.normalize(torch.randn(n_batch, dim, generator=g, dtype=dtype), dim=1)
    batch_classes = torch.randint(0, n_classes, (n_batch,), generator=g).to(dtype)
    batch_classes[0] = 1000.0  # an anchor without any positive
    queue = F.normalize(torch.randn(n_queue, dim, generator=g, dtype=dtype), dim=1)
    queue_classes = torch.randint(0, n_classes, (n_queue,), generator=g).to(dtype)
    queue_classes[:random_queue] = torch.randn(random_queue, generator=g, dtype=dtype) + 0.5
    return batch, batch_classes, queue, queue_classes


def _value_and_grad(fn, batch, *args, **kwargs):
    batch = batch.clone().requires_grad_()
    value = fn(batch, *args, **kwargs)
    (grad,) = torch.autograd.grad(value, batch)
    return value.detach(), grad


@pytest.mark.parametrize("queue_anchors", [True, False])
@pytest.mark.parametrize("chunk_size", [3, 7, 16, 1000])
def test_chunked_equals_dense_values_and_gradients(queue_anchors, chunk_size):
    batch, batch_classes, queue, queue_classes = _problem()
    dense = _value_and_grad(supcon_dense, batch, batch_classes, queue, queue_classes, queue_anchors)
    chunked = _value_and_grad(
        supcon_chunked, batch, batch_classes, queue, queue_classes, queue_anchors, chunk_size=chunk_size
    )
    torch.testing.assert_close(chunked[0], dense[0], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(chunked[1], dense[1], rtol=1e-8, atol=1e-9)


def test_chunked_equals_dense_in_float32_with_non_unit_queue():
    batch, batch_classes, queue, queue_classes = _problem(dtype=torch.float32, seed=3)
    queue = F.normalize(queue, dim=0)  # the reference's random queue: normalised along the queue axis
    for queue_anchors in (True, False):
        dense = _value_and_grad(supcon_dense, batch, batch_classes, queue, queue_classes, queue_anchors)
        chunked = _value_and_grad(
            supcon_chunked, batch, batch_classes, queue, queue_classes, queue_anchors, chunk_size=5
        )
        torch.testing.assert_close(chunked[0], dense[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(chunked[1], dense[1], rtol=1e-4, atol=1e-6)


def test_queue_anchors_change_the_loss():
    batch, batch_classes, queue, queue_classes = _problem()
    with_queue = supcon_chunked(batch, batch_classes, queue, queue_classes, True)
    batch_only = supcon_chunked(batch, batch_classes, queue, queue_classes, False)
    assert not torch.isclose(with_queue, batch_only)


def test_anchor_without_positives_contributes_zero_but_counts():
    batch, batch_classes, queue, queue_classes = _problem(n_queue=0, random_queue=0)
    lonely = torch.cat([batch, F.normalize(torch.ones(1, batch.shape[1], dtype=batch.dtype), dim=1)])
    lonely_classes = torch.cat([batch_classes, torch.tensor([555.0], dtype=batch.dtype)])
    base = supcon_chunked(batch, batch_classes, queue, queue_classes, False) * batch.shape[0]
    value = _value_and_grad(supcon_chunked, lonely, lonely_classes, queue, queue_classes, False, chunk_size=4)
    # Its own term is 0, and it still changes the others' normalisers (it is in their contrast set).
    dense = _value_and_grad(supcon_dense, lonely, lonely_classes, queue, queue_classes, False)
    torch.testing.assert_close(value[0], dense[0])
    torch.testing.assert_close(value[1], dense[1])
    assert value[0] * lonely.shape[0] > base  # an extra negative only raises the others' losses


def test_small_temperature_stays_exact():
    """At temperature 0.02, exp(-2 / temperature) underflows float32; the result must still be exact."""
    batch, batch_classes, queue, queue_classes = _problem(dtype=torch.float64, seed=5)
    classes = torch.cat([batch_classes, queue_classes])

    def exact(b):
        f = torch.cat([b, queue])
        sims = (f @ f.T / 0.02).masked_fill(torch.eye(len(f), dtype=torch.bool), float("-inf"))
        positives = (classes[:, None] == classes[None, :]) & ~torch.eye(len(f), dtype=torch.bool)
        count = positives.sum(1)
        terms = torch.logsumexp(sims, 1) - torch.where(positives, sims, 0.0).sum(1) / count.clamp_min(1)
        return torch.where(count > 0, terms, 0.0).mean()

    expected = _value_and_grad(exact, batch)
    got = _value_and_grad(
        lambda b: supcon_chunked(b.float(), batch_classes, queue.float(), queue_classes, True, 0.02, 6), batch
    )
    torch.testing.assert_close(got[0].double(), expected[0], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got[1], expected[1], rtol=1e-3, atol=1e-5)


def test_chunked_refuses_a_bad_chunk_size():
    batch, batch_classes, queue, queue_classes = _problem()
    with pytest.raises(ValueError, match="chunk_size"):
        supcon_chunked(batch, batch_classes, queue, queue_classes, True, chunk_size=0)


def test_queue_is_fifo_with_wrap_around():
    queue = FeatureQueue(size=5, dim=2, random_init=False)
    assert queue.contents()[0].shape == (0, 2)
    queue.push(torch.full((3, 2), 1.0), torch.tensor([1.0, 2.0, 3.0]))
    vectors, classes = queue.contents()
    assert classes.tolist() == [1.0, 2.0, 3.0] and vectors.shape == (3, 2)
    queue.push(torch.full((4, 2), 2.0), torch.tensor([4.0, 5.0, 6.0, 7.0]))
    vectors, classes = queue.contents()
    # slots 3, 4 then wrap to 0, 1: the oldest entries (1, 2) are overwritten.
    assert classes.tolist() == [6.0, 7.0, 3.0, 4.0, 5.0]
    assert int(queue.pointer) == 2


def test_a_push_longer_than_the_queue_is_refused_and_changes_nothing():
    queue = FeatureQueue(size=4, dim=1, random_init=False)
    queue.push(torch.zeros(1, 1), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="push of 5 vectors is longer than the queue \\(4 entries\\)"):
        queue.push(torch.arange(5.0).view(-1, 1), torch.arange(5.0))
    assert queue.contents()[1].tolist() == [0.0] and int(queue.pointer) == 1


def test_a_push_as_long_as_the_queue_replaces_it_in_order():
    queue = FeatureQueue(size=4, dim=1, random_init=False)
    queue.push(torch.zeros(1, 1), torch.tensor([0.0]))
    queue.push(torch.arange(1.0, 5.0).view(-1, 1), torch.arange(1.0, 5.0))
    vectors, classes = queue.contents()
    assert classes.tolist() == [4.0, 1.0, 2.0, 3.0]  # slots 1, 2, 3 then wrap to 0
    assert int(queue.pointer) == 1
    torch.testing.assert_close(vectors.view(-1), classes)


def test_random_queue_starts_full_of_non_integer_classes():
    torch.manual_seed(0)
    queue = FeatureQueue(size=64, dim=4, random_init=True)
    vectors, classes = queue.contents()
    assert vectors.shape == (64, 4)
    assert not torch.any(classes == classes.round())
    torch.testing.assert_close(vectors.norm(dim=0), torch.ones(4))  # normalised along the queue axis


def test_non_finite_latents_give_a_nan_loss_not_an_exception():
    # The trainer turns a NaN loss into a failure naming the epoch and step; an exception here would hide both.
    import torch

    from models.contrastive import supcon_chunked

    batch = torch.randn(6, 4)
    batch[2, 1] = float("nan")
    loss = supcon_chunked(batch, torch.arange(6) % 2, torch.randn(5, 4), torch.arange(5) % 2, queue_anchors=True)
    assert torch.isnan(loss)
