"""LSTM and GRU layers that run under CPU bf16 autocast.

`nn.LSTM`/`nn.GRU` run one fused oneDNN kernel in fp32, but under `torch.autocast("cpu",
torch.bfloat16)` torch 2.13's oneDNN LSTM cannot build its bf16 primitive ("could not create a
primitive descriptor"), and autocast leaves GRU in fp32 altogether (both measured and printed by
`python -m shared.bench`). These subclasses keep the exact parameters of `nn.LSTM`/`nn.GRU`
(state dicts are interchangeable), behave identically without autocast, and, only while CPU
autocast is on, run the recurrence themselves:

  * the input projection of all time steps is one large bf16 matmul;
  * each step does one (batch, hidden) x (hidden, gates*hidden) bf16 matmul for the recurrence;
  * gate nonlinearities and the LSTM cell state stay in fp32, so long memories do not round away.

bf16 pays only where the CPU multiplies bf16 natively (AMX, AVX512-BF16). On an AVX2-only CPU
(this project's build machine) a bf16 matmul runs ~100x slower than fp32, so train in fp32 there.

Single layer, batch_first, unpacked input only: `shared.model.Stack` stacks them itself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _autocast_on() -> bool:
    return torch.is_autocast_enabled("cpu")


def _run(layer, x, hx, cell):
    """All directions of a single-layer RNN. x: (batch, time, input); hx as nn.LSTM/nn.GRU take it.
    Returns output (batch, time, dirs*hidden) and final states shaped as nn.LSTM/nn.GRU return."""
    outs, hs, cs = [], [], []
    for d in range(2 if layer.bidirectional else 1):
        sfx = "_l0" + ("_reverse" if d else "")
        w_ih, w_hh = getattr(layer, "weight_ih" + sfx), getattr(layer, "weight_hh" + sfx)
        b_ih, b_hh = getattr(layer, "bias_ih" + sfx), getattr(layer, "bias_hh" + sfx)
        inp = x.flip(1) if d else x
        # LSTM: both biases fold into the one big input projection. GRU: b_hn sits inside
        # r * (W_hn h + b_hn), so b_hh stays in the recurrence.
        xp = F.linear(inp, w_ih, b_ih + b_hh if cell == "lstm" else b_ih)   # (B, T, gates*H)
        w = w_hh.t().to(xp.dtype)            # cast once per call, not once per step
        if hx is None:
            h = xp.new_zeros(x.size(0), layer.hidden_size, dtype=torch.float32)
            c = torch.zeros_like(h)
        elif cell == "lstm":
            h, c = hx[0][d].float(), hx[1][d].float()
        else:
            h, c = hx[d].float(), None
        steps = []
        for t in range(xp.size(1)):
            rec = torch.mm(h.to(w.dtype), w).float()                     # (B, gates*H)
            if cell == "lstm":
                i, f, g, o = (xp[:, t].float() + rec).chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                xr, xz, xn = xp[:, t].float().chunk(3, 1)
                hr, hz, hn = (rec + b_hh).chunk(3, 1)
                r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                h = (1 - z) * torch.tanh(xn + r * hn) + z * h
            steps.append(h)
        out = torch.stack(steps, 1).to(xp.dtype)
        outs.append(out.flip(1) if d else out)
        hs.append(h)
        cs.append(c)
    out = torch.cat(outs, -1) if len(outs) > 1 else outs[0]
    if cell == "lstm":
        return out, (torch.stack(hs), torch.stack(cs))
    return out, torch.stack(hs)


class LSTM(nn.LSTM):
    def forward(self, x, hx=None):
        return _run(self, x, hx, "lstm") if _autocast_on() else super().forward(x, hx)


class GRU(nn.GRU):
    def forward(self, x, hx=None):
        return _run(self, x, hx, "gru") if _autocast_on() else super().forward(x, hx)
