"""The Triton LASA kernels (selection, forward, backward) against the reference, in the Triton interpreter
on the CPU: outputs and the gradients of q, k, v and decay by relative error."""

import pytest
import torch

from kernels.lasa import lasa_attention
from kernels.lasa.attention import check_tiles
from kernels.lasa.reference import lasa_attention_reference, select_blocks_reference
from kernels.lasa.select import select_blocks
from tests.kernels._util import make_inputs, rel_err

CASES = [  # B, T, Hq, Hkv, D, block_size, top_k, window_blocks, ragged
    (1, 63, 2, 2, 16, 16, 1, 1, False),
    (2, 111, 4, 1, 16, 16, 2, 1, True),
    (2, 257, 4, 4, 32, 32, 2, 2, True),
    (1, 200, 8, 2, 16, 16, 4, 1, False),
    (1, 257, 2, 1, 16, 64, 1, 1, True),
]


@pytest.mark.parametrize("case", CASES)
def test_selection_matches_reference(case):
    B, T, Hq, Hkv, D, bs, top_k, w, ragged = case
    q, k, _, decay, seq_lens = make_inputs(B, T, Hq, Hkv, D, seed=T + 1, ragged=ragged)
    decay = decay * 0.05
    kw = dict(block_size=bs, top_k=top_k, window_blocks=w, seq_lens=seq_lens)
    idx, cnt = select_blocks(q, k, decay, **kw)
    ref_idx, ref_cnt = select_blocks_reference(q, k, decay, **kw)
    assert torch.equal(idx, ref_idx)
    assert torch.equal(cnt, ref_cnt)


@pytest.mark.parametrize("case", CASES)
def test_forward_and_gradients_fp32(case):
    B, T, Hq, Hkv, D, bs, top_k, w, ragged = case
    q, k, v, decay, seq_lens = make_inputs(B, T, Hq, Hkv, D, seed=T, ragged=ragged, requires_grad=True)
    kw = dict(block_size=bs, top_k=top_k, window_blocks=w, seq_lens=seq_lens)
    do = torch.randn(q.shape)
    out = lasa_attention(q, k, v, decay, impl="triton", **kw)
    grads = torch.autograd.grad(out, (q, k, v, decay), do)
    ref = lasa_attention_reference(q, k, v, decay, **kw)
    ref_grads = torch.autograd.grad(ref, (q, k, v, decay), do)
    assert rel_err(out, ref) < 1e-4
    for name, g, r in zip(["q", "k", "v", "decay"], grads, ref_grads, strict=True):
        assert rel_err(g, r) < 1e-4, name
    if seq_lens is not None:
        for b in range(B):
            assert out[b, int(seq_lens[b]) :].abs().sum().item() == 0


def test_forward_and_gradients_fp16():
    """fp16 operands, fp32 accumulation: the error is set by fp16 rounding of q, k, v, P and dS (2^-11 each),
    against a reference computed in fp32 from the same fp16 inputs; 5e-3 is about ten roundings."""
    q, k, v, decay, seq_lens = make_inputs(
        2, 111, 4, 1, 32, dtype=torch.float16, seed=7, ragged=True, requires_grad=True
    )
    kw = dict(block_size=16, top_k=2, window_blocks=1, seq_lens=seq_lens)
    do = torch.randn(q.shape).half()
    out = lasa_attention(q, k, v, decay, impl="triton", **kw)
    grads = torch.autograd.grad(out, (q, k, v, decay), do)
    q32, k32, v32 = (t.detach().float().requires_grad_(True) for t in (q, k, v))
    ref = lasa_attention_reference(q32, k32, v32, decay, **kw)
    ref_grads = torch.autograd.grad(ref, (q32, k32, v32, decay), do.float())
    assert out.dtype == torch.float16
    assert rel_err(out, ref) < 5e-3
    for name, g, r in zip(["q", "k", "v", "decay"], grads, ref_grads, strict=True):
        assert rel_err(g, r) < 5e-3, name


def test_switch_and_tile_checks(monkeypatch):
    q, k, v, decay, _ = make_inputs(1, 40, 2, 1, 16)
    ref = lasa_attention(q, k, v, decay, block_size=16, top_k=1)  # CPU tensors: "auto" is the reference
    assert torch.equal(ref, lasa_attention_reference(q, k, v, decay, block_size=16, top_k=1))
    monkeypatch.setenv("APERTUS_LASA_IMPL", "triton")
    assert rel_err(lasa_attention(q, k, v, decay, block_size=16, top_k=1, impl="reference"), ref) < 1e-4
    with pytest.raises(ValueError):
        lasa_attention(q, k, v, decay, block_size=24)
    with pytest.raises(ValueError):
        check_tiles(128, 128, backward=True)
    check_tiles(64, 128, backward=True)


def test_library_ops_pass_opcheck():
    """The torch.library registration (schema, fake tensors, no hidden mutation) that torch.compile relies on."""
    from kernels.lasa.attention import _backward_op, _forward_op

    q, k, v, decay, _ = make_inputs(1, 40, 2, 1, 16, seed=11)
    lens = torch.tensor([33], dtype=torch.int32)
    torch.library.opcheck(
        _forward_op, (q, k, v, decay, lens, 16, 1, 1), test_utils=("test_schema", "test_faketensor")
    )
    o, lse, idx, cnt = _forward_op(q, k, v, decay, lens, 16, 1, 1)
    torch.library.opcheck(
        _backward_op,
        (torch.randn_like(o), q, k, v, o, lse, decay, lens, idx, cnt, 16),
        test_utils=("test_schema", "test_faketensor"),
    )


def test_torch_compile_traces_through_without_graph_breaks():
    from kernels.lasa.attention import lasa_attention_triton

    q, k, v, decay, _ = make_inputs(1, 40, 2, 1, 16, seed=12, requires_grad=True)

    def f(q, k, v, d):
        return lasa_attention_triton(q, k, v, d, block_size=16, top_k=1) * 2

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    out = compiled(q, k, v, decay)
    grads = torch.autograd.grad(out.sum(), (q, k, v, decay))
    ref = f(q, k, v, decay)
    ref_grads = torch.autograd.grad(ref.sum(), (q, k, v, decay))
    assert rel_err(out, ref) < 1e-6
    for g, r in zip(grads, ref_grads, strict=True):
        assert rel_err(g, r) < 1e-6
