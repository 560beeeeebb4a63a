"""CARAT's building blocks against straightforward implementations."""

import pytest
import torch

from models.layers import (
    MASK_VALUE,
    BertLayer,
    CTCAligner,
    Dropout,
    LabelAttention,
    ModalityMLP,
    _Attention,
    keep_mask,
)


def test_attention_matches_the_plain_formula_and_its_gradients():
    torch.manual_seed(0)
    batch, heads, steps, dim = 3, 2, 5, 4
    q, k, v = (torch.randn(batch, heads, steps, dim, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bias = torch.zeros(batch, 1, 1, steps, dtype=torch.float64)
    bias[0, ..., 3:] = MASK_VALUE
    keep = keep_mask((batch, heads, steps, steps), 0.3)

    def plain(q, k, v):
        probs = torch.softmax(q @ k.transpose(-1, -2) / dim**0.5 + bias, dim=-1)
        return (probs * keep / 0.7) @ v

    torch.testing.assert_close(_Attention.apply(q, k, v, bias, keep, 0.3), plain(q, k, v))
    assert torch.autograd.gradcheck(lambda q, k, v: _Attention.apply(q, k, v, bias, keep, 0.3), (q, k, v))
    assert torch.autograd.gradcheck(lambda q, k, v: _Attention.apply(q, k, v, bias, None, 0.0), (q, k, v))


def test_keep_mask_rate_and_dropout_semantics():
    torch.manual_seed(0)
    keep = keep_mask((200_000,), 0.3)
    assert keep.dtype == torch.bool and abs(keep.float().mean().item() - 0.7) < 0.005
    # The mask is cut from 64-bit words, four entries per word: each of the four positions keeps at
    # rate 1 - p, and neighbours are independent (both kept at (1 - p)^2).
    quarters = keep.view(-1, 4).float()
    assert (quarters.mean(0) - 0.7).abs().max().item() < 0.01
    assert abs((quarters[:, 0] * quarters[:, 1]).mean().item() - 0.49) < 0.01
    assert abs((quarters[:-1, 3] * quarters[1:, 0]).mean().item() - 0.49) < 0.01
    assert keep_mask((3, 5, 7), 0.3).shape == (3, 5, 7)  # a size that is no multiple of four
    torch.manual_seed(1)
    first = keep_mask((1000,), 0.3)
    torch.manual_seed(1)
    assert torch.equal(first, keep_mask((1000,), 0.3))  # the same seed, the same mask
    dropout = Dropout(0.3)
    x = torch.ones(100_000)
    out = dropout(x)
    assert out.unique().tolist() == pytest.approx([0.0, 1 / 0.7])
    assert abs(out.mean().item() - 1.0) < 0.02
    assert torch.equal(dropout.eval()(x), x)
    with pytest.raises(ValueError):
        Dropout(1.0)


def test_bert_layer_ignores_padded_keys():
    torch.manual_seed(0)
    layer = BertLayer(d=8, heads=2, ffn_size=8, dropout=0.0).eval()
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    bias = (~mask).float().mul(MASK_VALUE)[:, None, None, :]
    changed = torch.where(mask.unsqueeze(-1), x, torch.randn_like(x) * 10)
    torch.testing.assert_close(layer(changed, bias)[mask], layer(x, bias)[mask])
    assert not torch.allclose(layer(changed, torch.zeros_like(bias))[mask], layer(x, bias)[mask])


def test_label_attention_is_a_masked_softmax_over_time():
    torch.manual_seed(0)
    attention = LabelAttention(d=4, n_labels=3)
    h = torch.randn(2, 6, 4)
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    out = attention(h, mask)
    assert out.shape == (2, 3, 4)
    weights = torch.softmax(attention.score(h[0, :4]).T, dim=-1)  # labels x real steps only
    torch.testing.assert_close(out[0], weights @ h[0, :4])


def test_modality_mlp_equals_one_mlp_per_modality():
    torch.manual_seed(0)
    mlp = ModalityMLP(3, [5, 4, 2])
    x = torch.randn(7, 3, 6, 5)
    out = mlp(x)
    assert out.shape == (7, 3, 6, 2)
    for m in range(3):
        hidden = torch.relu(x[:, m] @ mlp.weights[0][m] + mlp.biases[0][m])
        torch.testing.assert_close(out[:, m], hidden @ mlp.weights[1][m] + mlp.biases[1][m])


def test_ctc_aligner_output_length_and_padding_invariance():
    torch.manual_seed(0)
    aligner = CTCAligner(in_dim=3, target_len=4)
    x = torch.randn(2, 7, 3)
    mask = torch.tensor([[True] * 5 + [False] * 2, [True] * 7])
    out = aligner(x, mask)
    assert out.shape == (2, 4, 3)
    changed = torch.where(mask.unsqueeze(-1), x, torch.randn_like(x))
    torch.testing.assert_close(aligner(changed, mask), out)
