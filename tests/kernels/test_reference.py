"""The LASA reference against an independent brute force: a per-block loop for the selection and dense
softmax attention with an explicit T x T mask built from it."""

import math

import pytest
import torch

from kernels.lasa.reference import lasa_attention_reference, select_blocks_reference, selection_mask
from tests.kernels._util import make_inputs, rel_err


def brute_selection(q, k, decay, block_size, top_k, window_blocks, seq_lens):
    """The selection of the spec, written as literally as possible: (B, Hkv, NB, NB) bool."""
    B, T, Hq, D = q.shape
    Hkv = k.shape[2]
    G = Hq // Hkv
    NB = -(-T // block_size)
    lens = [T if seq_lens is None else int(seq_lens[b]) for b in range(B)]
    sel = torch.zeros(B, Hkv, NB, NB, dtype=torch.bool)
    for b in range(B):
        for g in range(Hkv):
            heads = range(g * G, (g + 1) * G)
            for m in range(NB):
                chosen = {0} | {n for n in range(max(0, m - window_blocks + 1), m + 1)}
                cands = []
                for n in range(1, m - window_blocks + 1):
                    kbar = k[b, n * block_size : (n + 1) * block_size, g].double().mean(0)
                    score = 0.0
                    for h in heads:
                        rows = q[b, (m - 1) * block_size : min(m * block_size, lens[b]), h].double()
                        score += (rows.mean(0) @ kbar).item() / math.sqrt(D)
                        score -= float(decay[h]) * block_size * (m - n)
                    cands.append((-score / G, n))
                chosen |= {n for _, n in sorted(cands)[:top_k]}
                sel[b, g, m, sorted(chosen)] = True
    return sel


def dense_masked_attention(q, k, v, decay, sel_BHMN, block_size, seq_lens):
    """Softmax attention over the full T x T score matrix with an explicit mask."""
    B, T, Hq, D = q.shape
    G = Hq // k.shape[2]
    i = torch.arange(T)
    blk = i // block_size
    mask = sel_BHMN[:, :, blk][:, :, :, blk]  # (B, Hkv, T, T)
    mask = mask & (i[None, :] <= i[:, None])
    lens = torch.full((B,), T) if seq_lens is None else seq_lens
    mask = mask & (i[None, None, None, :] < lens[:, None, None, None])
    mask = mask.repeat_interleave(G, dim=1)
    s = torch.einsum("bihd,bjhd->bhij", q.double(), k.double().repeat_interleave(G, 2)) / math.sqrt(D)
    s = s - decay.double()[None, :, None, None] * (i[:, None] - i[None, :]).double()
    p = torch.softmax(s.masked_fill(~mask, float("-inf")), -1).nan_to_num()
    o = torch.einsum("bhij,bjhd->bihd", p, v.double().repeat_interleave(G, 2))
    return o * (i[None, :] < lens[:, None])[:, :, None, None]


CASES = [  # B, T, Hq, Hkv, D, block_size, top_k, window_blocks, ragged
    (1, 63, 2, 2, 8, 16, 1, 1, False),
    (2, 111, 4, 1, 16, 16, 2, 1, True),
    (2, 257, 4, 4, 16, 32, 3, 2, True),
    (1, 200, 8, 2, 8, 16, 4, 1, False),
]


@pytest.mark.parametrize("case", CASES)
def test_selection_and_output_match_dense(case):
    B, T, Hq, Hkv, D, bs, top_k, w, ragged = case
    q, k, v, decay, seq_lens = make_inputs(B, T, Hq, Hkv, D, seed=T, ragged=ragged)
    decay = decay * 0.05  # a weak prior, so the content term decides the ranking
    block_idx, counts = select_blocks_reference(
        q, k, decay, block_size=bs, top_k=top_k, window_blocks=w, seq_lens=seq_lens
    )
    NB = -(-T // bs)
    sel = selection_mask(block_idx, NB)
    expected = brute_selection(q, k, decay, bs, top_k, w, seq_lens)
    # Query blocks without a valid row have no output, so their selection is not part of the contract.
    lens = torch.full((B,), T) if seq_lens is None else seq_lens
    live_BM = (torch.arange(NB)[None, :] * bs < lens[:, None])[:, None, :].expand(-1, Hkv, -1)
    assert torch.equal(sel[live_BM], expected[live_BM])
    assert torch.equal(counts[live_BM], expected.sum(-1).int()[live_BM])
    out = lasa_attention_reference(
        q, k, v, decay, block_size=bs, top_k=top_k, window_blocks=w, seq_lens=seq_lens
    )
    ref = dense_masked_attention(q, k, v, decay, expected, bs, seq_lens)
    assert rel_err(out, ref) < 1e-5


def test_gradients_match_dense_and_chunking_is_invisible():
    q, k, v, decay, seq_lens = make_inputs(
        2, 111, 4, 2, 16, dtype=torch.float64, ragged=True, requires_grad=True
    )
    kw = dict(block_size=16, top_k=2, window_blocks=1, seq_lens=seq_lens)
    block_idx, _ = select_blocks_reference(q, k, decay, **kw)
    do = torch.randn(q.shape, dtype=torch.float64)
    outs, grads = [], []
    for fn in (
        lambda: lasa_attention_reference(q, k, v, decay, **kw, chunk_blocks=1),
        lambda: lasa_attention_reference(q, k, v, decay, **kw, chunk_blocks=3),
        lambda: dense_masked_attention(q, k, v, decay, selection_mask(block_idx, 7), 16, seq_lens),
    ):
        o = fn()
        outs.append(o)
        grads.append(torch.autograd.grad(o, (q, k, v, decay), do))
    for o, g in zip(outs[1:], grads[1:], strict=True):
        assert rel_err(o, outs[0]) < 1e-12
        for a, b in zip(g, grads[0], strict=True):
            assert rel_err(a, b) < 1e-12


def test_gradcheck_decay_and_inputs():
    q, k, v, decay, seq_lens = make_inputs(2, 37, 4, 2, 4, dtype=torch.float64, ragged=True)
    decay = (decay + 0.05).requires_grad_(True)
    kw = dict(block_size=8, top_k=1, window_blocks=1, seq_lens=seq_lens)
    assert torch.autograd.gradcheck(lambda d: lasa_attention_reference(q, k, v, d, **kw), (decay,))
    q, k, v = (t.requires_grad_(True) for t in (q, k, v))
    # fast_mode checks a random projection of the Jacobian: a full one costs a minute of CPU.
    assert torch.autograd.gradcheck(
        lambda a, b, c: lasa_attention_reference(a, b, c, decay.detach(), **kw), (q, k, v), fast_mode=True
    )


def test_ragged_rows_equal_unpadded_sequences_and_padding_is_zero():
    q, k, v, decay, seq_lens = make_inputs(3, 100, 4, 2, 8, ragged=True, seed=3)
    kw = dict(block_size=16, top_k=2, window_blocks=1)
    out = lasa_attention_reference(q, k, v, decay, seq_lens=seq_lens, **kw)
    for b in range(3):
        L = int(seq_lens[b])
        alone = lasa_attention_reference(q[b : b + 1, :L], k[b : b + 1, :L], v[b : b + 1, :L], decay, **kw)
        assert rel_err(out[b : b + 1, :L], alone) < 1e-6
        assert out[b, L:].abs().sum().item() == 0


def test_dense_limit_is_causal_softmax_attention():
    """With enough top-k every block is selected: LASA with decay 0 is causal softmax attention (GQA)."""
    q, k, v, _, _ = make_inputs(2, 70, 8, 2, 16, seed=5)
    out = lasa_attention_reference(q, k, v, torch.zeros(8), block_size=16, top_k=8, window_blocks=1)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.repeat_interleave(4, 2).transpose(1, 2),
        v.repeat_interleave(4, 2).transpose(1, 2),
        is_causal=True,
    ).transpose(1, 2)
    assert rel_err(out, ref) < 1e-5
