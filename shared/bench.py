"""Training-throughput benchmark of the core, on this machine.

    python -m shared.bench [--steps 3] [--naive 64] [--cell lstm] [--threads 0]

Prints tokens/s for one model and one dataset under
  (a) a naive reference loop: fp32, one sequence at a time, an optimiser step per sequence,
      no bucketing (as the classic tutorials train);
  (b) the trainer in fp32 (length-bucketed batches of 64, nn.LSTM's fused oneDNN kernel);
  (c) the trainer under CPU bf16 autocast (shared/rnn.py's recurrence; nn.LSTM's own bf16
      kernel fails in torch 2.13 on CPU: the bench shows its error);
the ratios (c)/(a), (c)/(b), (b)/(a); the measured fp32 and bf16 matmul GFLOP/s of this CPU
and the fraction of it each run achieved. Model: the reference size (bidirectional encoder,
2-layer LSTM decoder, emb 256, hidden 512) over the poem corpus if prepared, else synthetic
poem-shaped data of the same vocabulary size (said in the output).
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from .model import Seq2Seq, Seq2SeqConfig
from .trainer import TrainConfig, batches_for_epoch, collate


def matmul_gflops(dtype: torch.dtype, n: int = 1024, seconds: float = 1.0) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        reps += 1
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def flops_per_token(cfg: Seq2SeqConfig) -> float:
    """Training FLOPs per target token (forward + backward = 3x forward, 2 FLOPs a MAC);
    the short source's encoder is ignored."""
    gates = 4 if cfg.cell == "lstm" else 3
    inp = cfg.emb_dim + (cfg.hidden if cfg.feed_context else 0)
    macs = gates * cfg.hidden * (inp + cfg.hidden)
    macs += (cfg.dec_layers - 1) * gates * cfg.hidden * 2 * cfg.hidden
    macs += cfg.hidden * cfg.emb_dim + cfg.emb_dim * cfg.tgt_vocab if cfg.tie_embeddings \
        else cfg.hidden * cfg.tgt_vocab
    return 6.0 * macs


def load_pairs(vocab: int, n: int = 4000) -> tuple[list, str]:
    path = Path("cache/poems/train.jsonl")
    if path.exists():
        from .tokenizers import CharTokenizer
        poems = [json.loads(x) for x, _ in zip(open(path, encoding="utf-8"), range(n))]
        tok = CharTokenizer.train((p["body"] for p in poems), specials=["<f>"])
        pairs = [(tok.encode("<f>" + p["title"][:8]), tok.encode(p["body"])) for p in poems]
        return [([min(i, vocab - 1) for i in s], [min(i, vocab - 1) for i in t])
                for s, t in pairs], f"{n} poems of cache/poems (ids folded into {vocab})"
    rng = random.Random(0)
    lens = [24, 32, 48, 64]
    return [([rng.randrange(4, vocab) for _ in range(rng.randint(2, 8))],
             [rng.randrange(4, vocab) for _ in range(rng.choice(lens))]) for _ in range(n)], \
        f"{n} synthetic poem-shaped pairs (run `python -m poetry.poems.data prepare` for real ones)"


def run_naive(model, pairs, n: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tokens, t0 = 0, time.perf_counter()
    for i in range(n):
        src, src_len, tgt_in, tgt_out = collate(pairs, [i], 2, 3, 0)
        loss, count = model(src, src_len, tgt_in, tgt_out)
        opt.zero_grad()
        (loss / count).backward()
        opt.step()
        tokens += int(count)
    return tokens / (time.perf_counter() - t0)


def run_trainer(model, pairs, steps: int, bf16: bool, budget_s: float) -> float:
    """Timed optimiser steps on length-bucketed batches of 64, after one untimed warm-up step
    on 8 sequences (primes oneDNN kernels without costing a whole slow bf16 batch). Stops
    after `steps` steps or once `budget_s` seconds are spent, whichever comes first."""
    cfg = TrainConfig(batch_size=64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = batches_for_epoch(pairs, cfg, 0)
    tokens, elapsed = 0, 0.0
    for i in range(steps + 1):
        t0 = time.perf_counter()
        batch = collate(pairs, batches[i][:8] if i == 0 else batches[i], 2, 3, 0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, count = model(*batch)
        opt.zero_grad()
        (loss / count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i:
            tokens, elapsed = tokens + int(count), elapsed + time.perf_counter() - t0
            if elapsed > budget_s:
                break
    return tokens / elapsed


def torch_rnn_under_autocast(cell: str) -> str:
    """What torch's own nn.LSTM / nn.GRU do under CPU bf16 autocast, measured."""
    layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](8, 8, batch_first=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = layer(torch.randn(2, 3, 8))
        return f"runs, output {str(out.dtype).replace('torch.', '')}"
    except RuntimeError as e:
        return "fails: " + str(e).splitlines()[0][:90]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3, help="timed trainer steps per mode")
    ap.add_argument("--naive", type=int, default=64, help="sequences for the naive loop")
    ap.add_argument("--budget", type=float, default=120.0,
                    help="seconds per trainer mode at most (bf16 without AMX is very slow)")
    ap.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Seq2SeqConfig(src_vocab=6300, tgt_vocab=6300, cell=args.cell, emb_dim=256,
                        hidden=512, enc_layers=1, dec_layers=2, bidirectional=True,
                        dropout=0.1, share_embeddings=True)
    pairs, what = load_pairs(cfg.tgt_vocab)
    flags = open("/proc/cpuinfo").read() if Path("/proc/cpuinfo").exists() else ""
    print(f"data: {what}; threads: {torch.get_num_threads()}; CPU has AMX: "
          f"{'amx_bf16' in flags}; AVX-512: {'avx512f' in flags}")
    g32, g16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    print(f"matmul 1024^2: fp32 {g32:.0f} GFLOP/s, bf16 {g16:.1f} GFLOP/s")
    for cell in ("lstm", "gru"):
        print(f"torch's nn.{cell.upper()} under bf16 autocast: {torch_rnn_under_autocast(cell)}")
    fpt = flops_per_token(cfg)
    results = {}
    for name, fn in [("a_naive_fp32", lambda m: run_naive(m, pairs, args.naive)),
                     ("b_trainer_fp32", lambda m: run_trainer(m, pairs, args.steps, False, args.budget)),
                     ("c_trainer_bf16", lambda m: run_trainer(m, pairs, args.steps, True, args.budget))]:
        torch.manual_seed(0)
        model = Seq2Seq(cfg).train()
        tps = fn(model)
        peak = g16 if name.startswith("c") else g32
        results[name] = tps
        print(f"{name:16s} {tps:9.0f} tokens/s   {tps * fpt / 1e9:7.1f} GFLOP/s = "
              f"{100 * tps * fpt / 1e9 / peak:5.1f}% of the {'bf16' if peak == g16 else 'fp32'}"
              f" matmul rate")
    a, b, c = (results[k] for k in ("a_naive_fp32", "b_trainer_fp32", "c_trainer_bf16"))
    print(f"ratios: (c)/(a) = {c / a:.2f}   (c)/(b) = {c / b:.2f}   (b)/(a) = {b / a:.2f}")
    print(json.dumps({"tokens_per_s": results, "gflops": {"fp32": g32, "bf16": g16},
                      "model_params": Seq2Seq(cfg).num_parameters(),
                      "flops_per_token": fpt}))


if __name__ == "__main__":
    main()
