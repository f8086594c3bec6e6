"""Half-size weights for generation: the same model, half the bytes per generated token.

Generating one token reads every decoder weight and the whole output projection once, for a
batch of one to a few rows: matrix-vector products, limited by memory traffic, not arithmetic.
For the poem model that is ~7.5 MB of fp32 per character, more than this CPU's caches keep
between steps. `Fp16Decoder` stores those matrices in fp16 and multiplies them with fbgemm's
fp16-weight kernels: weights are widened to fp32 in registers, activations and sums stay fp32,
so each row's result depends on that row alone (unlike dynamic int8, which quantizes the
activations of the whole batch with one scale: measured as fast here, but a row's poem then
changes with its batch-mates). Gate nonlinearities, the LSTM cell state and the encoder stay fp32.

    fast = Fp16Decoder(model)        # model: a trained shared.model.Seq2Seq (unchanged)
    generate(fast, src, src_len, cfg, ...)   # anything that calls encode / decode_step

What it costs in quality is measured, not assumed: `shared.trainer.evaluate(..., stepwise=True)`
scores held-out data through any `decode_step`, and `python -m poetry.evaluate poem` prints both. Training and teacher-forced
evaluation use the fp32 model.
"""
from __future__ import annotations

import contextlib
import threading

import torch

from .model import Seq2Seq, State


def available() -> bool:
    """True when this torch build has fbgemm's fp16-weight linear kernels (x86 builds)."""
    return "fbgemm" in torch.backends.quantized.supported_engines


def _pack(weight: torch.Tensor, bias: torch.Tensor | None):
    """(out, in) fp32 weight (+ bias) -> fbgemm's packed fp16 form."""
    return torch.ops.quantized.linear_prepack_fp16(
        weight.detach().float().contiguous(),
        None if bias is None else bias.detach().float().contiguous())


def _linear(x: torch.Tensor, packed) -> torch.Tensor:
    return torch.ops.quantized.linear_dynamic_fp16(x.contiguous(), packed)


class Fp16Decoder:
    """Encoder and decoder of `model` for generation, with fp16 decoder and projection weights.
    Follows `Seq2Seq.decode_step` exactly, except for the fp16 rounding of those weights."""

    def __init__(self, model: Seq2Seq):
        if not available():
            raise RuntimeError("this torch build has no fbgemm fp16 kernels")
        self.model, self.cfg = model.eval(), model.cfg
        self.lstm = self.cfg.cell == "lstm"
        self.layers = []
        self.ctx = None          # packed share of the encoder summary in layer 0's input product
        self._last = threading.local()   # per thread (requests decode concurrently):
                                          # (context tensor, its gate share) of its last call
        emb = self.cfg.emb_dim
        with torch.no_grad():
            for i, layer in enumerate(model.decoder.layers):
                w_ih, w_hh = layer.weight_ih_l0, layer.weight_hh_l0
                b_ih, b_hh = layer.bias_ih_l0, layer.bias_hh_l0
                # LSTM: one product, [x ; h] @ [W_ih ; W_hh]^T + both biases. GRU: r gates
                # W_hn h + b_hn, so the two products stay apart.
                w, b = (torch.cat([w_ih, w_hh], 1), b_ih + b_hh) if self.lstm else (w_ih, b_ih)
                if i == 0 and self.cfg.feed_context:
                    # the summary is the same at every step: its share of the product (and
                    # the bias) is computed once per sequence, not once per token
                    self.ctx = _pack(w[:, emb:emb + self.cfg.hidden], b)
                    w, b = torch.cat([w[:, :emb], w[:, emb + self.cfg.hidden:]], 1), None
                self.layers.append((_pack(w, b),) if self.lstm
                                   else (_pack(w, b), _pack(w_hh, b_hh)))
            if self.cfg.tie_embeddings:
                self.pre = model.out_proj                    # (hidden -> emb), small: fp32
                self.proj = _pack(model.tgt_emb.weight, model.out_bias)
            else:
                self.pre = None
                self.proj = _pack(model.out_proj.weight, model.out_proj.bias)

    def eval(self) -> "Fp16Decoder":
        return self

    def products(self) -> list:
        """The packed fp16 products one decode step runs, in order (for timing them alone)."""
        return [p for layer in self.layers for p in layer] + [self.proj]

    def product_inputs(self) -> list[int]:
        """The input width of each of `products()`."""
        c, H = self.cfg, self.cfg.hidden
        sizes = []
        for i in range(c.dec_layers):
            x = c.emb_dim if i == 0 else H
            sizes += [x + H] if self.lstm else [x, H]
        return sizes + [c.emb_dim if c.tie_embeddings else H]

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> State:
        return self.model.encode(src, src_len)

    def _context_gates(self, context: torch.Tensor) -> torch.Tensor:
        """Layer 0's gate share of the summary (+ bias), (batch, gates*hidden); recomputed only
        when the state carries another context tensor (a new sequence, beams reordered)."""
        last = getattr(self._last, "gates", (None, None))
        if last[0] is not context:
            last = self._last.gates = (context, _linear(context.float(), self.ctx))
        return last[1]

    def decode_step(self, tokens: torch.Tensor, state: State):
        """tokens: (batch,) previous tokens -> logits (batch, vocab) fp32 and the new state."""
        with torch.no_grad(), torch.autocast("cpu", enabled=False):   # fp32 activations
            x = self.model.tgt_emb(tokens)
            hs, cs, H = [], [], self.cfg.hidden
            for i, packed in enumerate(self.layers):
                h = state.h[i]
                if self.lstm:   # few ops: at batch 1 each costs what a product's row does
                    gates = _linear(torch.cat([x, h], -1), packed[0])      # (B, 4H): i f g o
                    if i == 0 and self.ctx is not None:
                        gates += self._context_gates(state.context)
                    s = gates.sigmoid()
                    c = torch.addcmul(s[:, H:2 * H] * state.c[i], s[:, :H],
                                      gates[:, 2 * H:3 * H].tanh())
                    h = s[:, 3 * H:] * c.tanh()
                    cs.append(c)
                else:
                    gx = _linear(x, packed[0])
                    if i == 0 and self.ctx is not None:
                        gx = gx + self._context_gates(state.context)
                    xr, xz, xn = gx.chunk(3, 1)
                    hr, hz, hn = _linear(h, packed[1]).chunk(3, 1)
                    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                    h = (1 - z) * torch.tanh(xn + r * hn) + z * h
                hs.append(h)
                x = h + x if self.cfg.residual and i > 0 and h.shape == x.shape else h
            logits = _linear(self.pre(x) if self.pre is not None else x, self.proj)
        return logits, State(torch.stack(hs), torch.stack(cs) if cs else None, state.context)


def for_generation(model: Seq2Seq, fp16: bool = True):
    """What a writer should decode with: the fp16-weight decoder where the kernels exist,
    else the fp32 model itself."""
    return Fp16Decoder(model) if fp16 and available() else model.eval()


@contextlib.contextmanager
def fp32_generation(owner):
    """Within the block, `owner.decoder` (a writer's or bot's generation decoder) is its fp32
    `owner.model`: for measuring what the fp16 weights bring."""
    fast, owner.decoder = owner.decoder, owner.model
    try:
        yield owner
    finally:
        owner.decoder = fast
