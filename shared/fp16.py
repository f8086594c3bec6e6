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
        with torch.no_grad():
            for layer in model.decoder.layers:
                w_ih, w_hh = layer.weight_ih_l0, layer.weight_hh_l0
                b_ih, b_hh = layer.bias_ih_l0, layer.bias_hh_l0
                if self.lstm:    # one product: [x ; h] @ [W_ih ; W_hh]^T + both biases
                    self.layers.append((_pack(torch.cat([w_ih, w_hh], 1), b_ih + b_hh),))
                else:            # GRU: r gates W_hn h + b_hn, so the two products stay apart
                    self.layers.append((_pack(w_ih, b_ih), _pack(w_hh, b_hh)))
            if self.cfg.tie_embeddings:
                self.pre = model.out_proj                    # (hidden -> emb), small: fp32
                self.proj = _pack(model.tgt_emb.weight, model.out_bias)
            else:
                self.pre = None
                self.proj = _pack(model.out_proj.weight, model.out_proj.bias)

    def eval(self) -> "Fp16Decoder":
        return self

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> State:
        return self.model.encode(src, src_len)

    def decode_step(self, tokens: torch.Tensor, state: State):
        """tokens: (batch,) previous tokens -> logits (batch, vocab) fp32 and the new state."""
        with torch.no_grad(), torch.autocast("cpu", enabled=False):   # fp32 activations
            x = self.model.tgt_emb(tokens)
            if self.cfg.feed_context:
                x = torch.cat([x, state.context.float()], -1)
            hs, cs = [], []
            for i, packed in enumerate(self.layers):
                h = state.h[i]
                if self.lstm:
                    gi, gf, gg, go = _linear(torch.cat([x, h], -1), packed[0]).chunk(4, 1)
                    c = torch.sigmoid(gf) * state.c[i] + torch.sigmoid(gi) * torch.tanh(gg)
                    h = torch.sigmoid(go) * torch.tanh(c)
                    cs.append(c)
                else:
                    xr, xz, xn = _linear(x, packed[0]).chunk(3, 1)
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
