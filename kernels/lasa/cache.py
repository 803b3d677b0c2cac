"""The pruned KV cache of LASA decoding, the per-step block selection, and the reference decode step.

Shape legend:
    B   batch size     Hq  query heads     Hkv key/value heads (Hf kept in full, Hl pruned)     D  head dim
    BS  block size     R   rolling window of a pruned head (tokens, a multiple of BS)
    TM  the most tokens a sequence may hold (max_len)      NBM = ceil(TM / BS)

A KV head whose every query head has decay * R >= prune_nats forgets: beyond the last R tokens its prior
alone puts a key at least prune_nats below the newest one, so the cache keeps for it only the sink block,
a ring of the last R tokens and (for all heads) the pooled key of every block, which the block ranking
reads. Full heads keep everything. Decoding is exact for full heads (it reproduces
reference.lasa_attention_reference token by token, because the selection of block m only reads blocks
before m) and, for pruned heads, drops the selected keys that left the ring: an error of order
exp(-prune_nats) relative to the kept attention mass when query/key scores are bounded.
"""

import math

import torch

__all__ = ["LasaKVCache", "pruned_heads", "lasa_decode_reference"]


def pruned_heads(decay: torch.Tensor, num_kv_heads: int, rolling_tokens: int, prune_nats: float = 16.0):
    """(Hkv,) bool: the KV heads whose learned horizon is short enough to keep only a rolling window."""
    d = decay.detach().float().view(num_kv_heads, -1)
    return (d.min(1).values * rolling_tokens) >= prune_nats


class LasaKVCache:
    """KV cache for LASA decoding: full heads keep every token, pruned heads the sink block and a ring.

    Holds: k_full, v_full (B, TM, Hf, D); k_ring, v_ring (B, BS + R, Hl, D) with pos_ring (B, BS + R) the
    position each ring slot holds (-1 empty); ksum (B, NBM, Hkv, D) float32 block key sums; qsum and
    qprev (B, Hkv, D) float32: the group-mean query sum of the last (open) block and the mean of the block
    before it; length (B,) tokens written.
    """

    def __init__(
        self,
        batch: int,
        max_len: int,
        num_q_heads: int,
        pruned: torch.Tensor,
        head_dim: int,
        *,
        block_size: int = 64,
        top_k: int = 4,
        window_blocks: int = 1,
        rolling_tokens: int = 1024,
        dtype=torch.bfloat16,
        device=None,
    ):
        if rolling_tokens % block_size or rolling_tokens < window_blocks * block_size:
            raise ValueError(
                f"LasaKVCache: rolling_tokens={rolling_tokens} must be a multiple of "
                f"block_size={block_size} and cover window_blocks={window_blocks} blocks"
            )
        self.block_size, self.top_k, self.window_blocks = block_size, top_k, window_blocks
        self.rolling_tokens, self.max_len, self.num_q_heads = rolling_tokens, max_len, num_q_heads
        self.pruned = pruned.to(torch.bool).cpu()
        Hkv = len(self.pruned)
        self.full_heads = torch.nonzero(~self.pruned).flatten().tolist()
        self.ring_heads = torch.nonzero(self.pruned).flatten().tolist()
        B, D, S = batch, head_dim, block_size + rolling_tokens
        kw = dict(dtype=dtype, device=device)
        self.k_full = torch.zeros(B, max_len, len(self.full_heads), D, **kw)
        self.v_full = torch.zeros_like(self.k_full)
        self.k_ring = torch.zeros(B, S, len(self.ring_heads), D, **kw)
        self.v_ring = torch.zeros_like(self.k_ring)
        self.pos_ring = torch.full((B, S), -1, dtype=torch.int64, device=device)
        self.ksum = torch.zeros(B, -(-max_len // block_size), Hkv, D, dtype=torch.float32, device=device)
        self.qsum = torch.zeros(B, Hkv, D, dtype=torch.float32, device=device)
        self.qprev = torch.zeros_like(self.qsum)
        self.length = torch.zeros(B, dtype=torch.int64, device=device)

    def nbytes(self) -> int:
        """Bytes held by the cache's tensors."""
        return sum(
            t.numel() * t.element_size()
            for t in (
                self.k_full,
                self.v_full,
                self.k_ring,
                self.v_ring,
                self.pos_ring,
                self.ksum,
                self.qsum,
                self.qprev,
                self.length,
            )
        )

    def _ring_slot(self, pos: torch.Tensor) -> torch.Tensor:
        bs = self.block_size
        return torch.where(pos < bs, pos, bs + (pos - bs) % self.rolling_tokens)

    def _group_mean(self, q_BHD: torch.Tensor) -> torch.Tensor:
        B, Hq, D = q_BHD.shape
        return q_BHD.float().view(B, len(self.pruned), Hq // len(self.pruned), D).mean(2)

    @torch.no_grad()
    def prefill(self, q, k, v, seq_lens: torch.Tensor | None = None) -> None:
        """Write a right-padded prompt, q (B, T, Hq, D), k and v (B, T, Hkv, D), into an empty cache."""
        B, T = k.shape[:2]
        bs = self.block_size
        dev = k.device
        lens = torch.full((B,), T, device=dev) if seq_lens is None else seq_lens.to(dev).long()
        self.k_full[:, :T] = k[:, :, self.full_heads]
        self.v_full[:, :T] = v[:, :, self.full_heads]
        slot = torch.arange(self.k_ring.shape[1], device=dev)
        r = slot - bs  # ring slot r holds the last position p >= bs with (p - bs) % R == r
        last = lens[:, None] - 1
        ring_pos = (
            bs
            + r
            + self.rolling_tokens * torch.div(last - bs - r, self.rolling_tokens, rounding_mode="floor")
        )
        held = torch.where(slot < bs, slot <= last, last >= bs + r)
        pos = torch.where(held, torch.where(slot < bs, slot.expand(B, -1), ring_pos), -1)
        self.pos_ring.copy_(pos)
        b_ix = torch.arange(B, device=dev)[:, None]
        self.k_ring.copy_(k[b_ix, pos.clamp(min=0)][:, :, self.ring_heads])
        self.v_ring.copy_(v[b_ix, pos.clamp(min=0)][:, :, self.ring_heads])
        valid_BT = torch.arange(T, device=dev)[None, :] < lens[:, None]
        NB = -(-T // bs)
        kf = torch.nn.functional.pad(k.float() * valid_BT[..., None, None], (0, 0, 0, 0, 0, NB * bs - T))
        self.ksum[:, :NB] = kf.view(B, NB, bs, *k.shape[2:]).sum(2)
        qg = torch.nn.functional.pad(
            self._group_mean(q.flatten(0, 1)).view(B, T, -1, q.shape[-1]) * valid_BT[..., None, None],
            (0, 0, 0, 0, 0, NB * bs + bs - T),
        )
        qblk = qg.view(B, NB + 1, bs, *qg.shape[2:]).sum(2)  # (B, NB + 1, Hkv, D)
        lb = torch.div(lens - 1, bs, rounding_mode="floor").clamp(min=0)
        self.qsum.copy_(qblk[torch.arange(B, device=dev), lb])
        prev = qblk[torch.arange(B, device=dev), (lb - 1).clamp(min=0)] / bs
        self.qprev.copy_(torch.where((lb >= 1)[:, None, None], prev, 0.0))
        self.length.copy_(lens)

    @torch.no_grad()
    def append(self, q, k, v, decay) -> torch.Tensor:
        """Write one token per sequence, q (B, Hq, D), k and v (B, Hkv, D), at position length; return the
        selected blocks of its query block as a mask (B, Hkv, NBM) bool. Call lasa_decode, not this."""
        B = k.shape[0]
        bs = self.block_size
        t = self.length
        if int(t.max()) >= self.max_len:
            raise ValueError(f"LasaKVCache: a sequence reached max_len={self.max_len}")
        b_ix = torch.arange(B, device=k.device)
        opens = ((t % bs == 0) & (t > 0))[:, None, None]  # block m - 1 just closed
        self.qprev.copy_(torch.where(opens, self.qsum / bs, self.qprev))
        self.qsum.masked_fill_(opens, 0.0)
        self.k_full[b_ix, t] = k[:, self.full_heads]
        self.v_full[b_ix, t] = v[:, self.full_heads]
        slot = self._ring_slot(t)
        self.k_ring[b_ix, slot] = k[:, self.ring_heads]
        self.v_ring[b_ix, slot] = v[:, self.ring_heads]
        self.pos_ring[b_ix, slot] = t
        self.ksum[b_ix, t // bs] += k.float()
        sel = self.selection(decay)
        self.qsum += self._group_mean(q)
        self.length += 1
        return sel

    def selection(self, decay) -> torch.Tensor:
        """The blocks of the query block of position length, as in reference.select_blocks_reference."""
        bs, w = self.block_size, self.window_blocks
        NBM = self.ksum.shape[1]
        m = (self.length // bs)[:, None, None]  # (B, 1, 1)
        n = torch.arange(NBM, device=self.ksum.device)[None, None, :]
        kbar = self.ksum / bs
        rank = torch.einsum("bhd,bnhd->bhn", self.qprev, kbar) / math.sqrt(kbar.shape[-1])
        decaybar = decay.detach().float().view(len(self.pruned), -1).mean(1)
        rank = rank - decaybar[None, :, None] * (bs * (m - n)).float()
        cand = (n >= 1) & (n <= m - w)
        rank = rank.masked_fill(~cand, float("-inf"))
        order = torch.sort(rank, dim=-1, descending=True, stable=True).indices[..., : self.top_k]
        sel = (n == 0) | ((n <= m) & (n > m - w))
        top = torch.zeros_like(rank, dtype=torch.bool)
        top.scatter_(-1, order, torch.gather(rank, -1, order) > float("-inf"))
        return sel | top


def lasa_decode_reference(q, k, v, decay, cache: LasaKVCache) -> torch.Tensor:
    """One decoding step in plain PyTorch: append (k, v) (B, Hkv, D) and attend with q (B, Hq, D).

    Returns (B, Hq, D) in q's dtype: for full heads the output of lasa_attention_reference at this
    position; for pruned heads the same restricted to the keys still in the ring.
    """
    sel = cache.append(q, k, v, decay)
    t = cache.length - 1
    B, Hq, D = q.shape
    G = Hq // len(cache.pruned)
    out = torch.zeros(B, Hq, D, dtype=torch.float32, device=q.device)
    stores = (
        (
            cache.full_heads,
            cache.k_full,
            cache.v_full,
            torch.arange(cache.max_len, device=q.device).expand(B, -1),
        ),
        (cache.ring_heads, cache.k_ring, cache.v_ring, cache.pos_ring),
    )
    for heads, ks, vs, pos in stores:
        for i, g in enumerate(heads):
            hs = slice(g * G, (g + 1) * G)
            keep = (pos >= 0) & (pos <= t[:, None])
            keep &= torch.gather(
                sel[:, g], 1, torch.div(pos.clamp(min=0), cache.block_size, rounding_mode="floor")
            )
            s = torch.einsum("bhd,bjd->bhj", q[:, hs].float(), ks[:, :, i].float()) / math.sqrt(D)
            s = s - decay[hs].float()[None, :, None] * (t[:, None, None] - pos[:, None, :]).float()
            p = torch.softmax(s.masked_fill(~keep[:, None, :], float("-inf")), -1)
            out[:, hs] = torch.einsum("bhj,bjd->bhd", p, vs[:, :, i].float())
    return out.to(q.dtype)
