"""Training-throughput, time-to-quality and decoding benchmark of the core, on this machine.

    python -m shared.bench [--steps 3] [--naive 64] [--cell lstm] [--threads 0]
                           [--vocab 6300] [--quality-minutes 0] [--decode-tokens 200]

Prints tokens/s for one model and one dataset under
  (a) a naive reference loop: fp32, one sequence at a time, an optimiser step per sequence,
      no bucketing (as the classic tutorials train);
  (b) the trainer's step in fp32 (length-bucketed batches of 64, nn.LSTM's fused oneDNN
      kernel, the decoder's first layer by hand with the encoder summary's share once per
      sequence, the projection and cross-entropy fused in chunks, fused AdamW);
  (c) the same under CPU bf16 autocast (oneDNN's bf16 RNN where it builds, else
      shared/rnn.py's loop; the decoder's first layer by hand with bf16 products);
  (d) auto: what `train.bf16=auto` picks here, with the probe's timings;
the ratios, the measured fp32 and bf16 matmul GFLOP/s of this CPU and the fraction of it each
run achieved. Model: the reference size (bidirectional encoder, 2-layer LSTM decoder, emb 256,
hidden 512; `--vocab 8000` for the chat size) over the poem corpus if prepared, else synthetic
poem-shaped data of the same vocabulary size (said in the output).

`--quality-minutes M` then trains the naive loop and the Trainer (auto precision) for M
minutes of wall time each and prints their validation perplexity. The decode section times
one generated token at batch 1 (fp16-weight decoder, greedy) against its matrix products alone.
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from .model import Seq2Seq, Seq2SeqConfig
from .precision import cpu_flags, probe_training
from .trainer import TrainConfig, Trainer, adamw, batches_for_epoch, collate, evaluate


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


def load_pairs(vocab: int, n: int = 4000, split: str = "train", skip: int = 0) -> tuple[list, str]:
    """`n` (source, target) pairs after the first `skip`: poems of cache/poems if prepared
    (the `vocab` most frequent characters of its training split, the rest <unk>), else
    synthetic poem-shaped pairs (another seed per split)."""
    path = Path("cache/poems") / f"{split}.jsonl"
    if path.exists():
        from .tokenizers import CharTokenizer
        bodies = (json.loads(x)["body"] for x in open(path.with_name("train.jsonl"),
                                                        encoding="utf-8"))
        tok = CharTokenizer.train(bodies, specials=["<f>"], max_size=vocab - 5)
        lines = open(path, encoding="utf-8")
        poems = [json.loads(x) for i, x in zip(range(skip + n), lines) if i >= skip]
        pairs = [(tok.encode("<f>" + p["title"][:8]), tok.encode(p["body"])) for p in poems]
        return pairs, f"{len(pairs)} poems of {path} ({tok.vocab_size} character ids)"
    rng = random.Random({"train": 0, "validation": 1}.get(split, 2) * 1000 + skip)
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
    """Timed optimiser steps on length-bucketed batches of 64, after untimed warm-up steps on
    8 sequences of each batch shape to come (oneDNN builds a kernel per sequence length, once
    per process: a long run pays that once, a short benchmark would pay it every step).
    Stops after `steps` steps or once `budget_s` seconds are spent, whichever comes first."""
    cfg = TrainConfig(batch_size=64)
    opt = adamw(model, 1e-3, cfg.weight_decay)              # the trainer's optimiser
    batches = batches_for_epoch(pairs, cfg, 0)[:steps]
    shapes = {}
    for b in batches:
        batch = collate(pairs, b, 2, 3, 0)
        shapes.setdefault(batch[2].size(1), b[:8])
    warm = [collate(pairs, b, 2, 3, 0) for b in shapes.values()]
    tokens, elapsed = 0, 0.0
    for i, batch in enumerate(warm + [None] * len(batches)):
        t0 = time.perf_counter()
        if batch is None:
            batch = collate(pairs, batches[i - len(warm)], 2, 3, 0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, count = model(*batch)
        opt.zero_grad()
        (loss / count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i >= len(warm):
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


def time_to_quality(cfg: Seq2SeqConfig, minutes: float) -> dict:
    """Validation perplexity after `minutes` of wall time for the naive loop and the Trainer
    (auto precision, batches of 64, its defaults but a 100-step warm-up and no decay: the run
    length in steps is not known in advance). Same data, same init."""
    train, what = load_pairs(cfg.tgt_vocab, n=40_000)     # all 34,853 training poems
    val, _ = load_pairs(cfg.tgt_vocab, n=500, split="validation")
    print(f"time to quality: {minutes} min each; train {what}; validation {len(val)} pairs")
    out = {}
    torch.manual_seed(0)
    model = Seq2Seq(cfg).train()
    opt, t0, seen, i = torch.optim.SGD(model.parameters(), lr=0.1), time.perf_counter(), 0, 0
    order = list(range(len(train)))
    random.Random(0).shuffle(order)
    while time.perf_counter() - t0 < minutes * 60:
        loss, count = model(*collate(train, [order[i % len(order)]], 2, 3, 0))
        opt.zero_grad()
        (loss / count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)   # else it diverges
        opt.step()
        seen, i = seen + int(count), i + 1
    out["naive"] = {"val_ppl": evaluate(model, val, bos=2, eos=3)["ppl"], "tokens": seen}
    torch.manual_seed(0)
    model = Seq2Seq(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        tcfg = TrainConfig(epochs=100, batch_size=64, warmup_steps=100, decay="none",
                           checkpoint_every=0, log_every=10 ** 9)
        trainer = Trainer(model, train, val, tcfg, tmp, bos=2, eos=3, progress=False)
        tcfg.max_seconds = minutes * 60 - (time.perf_counter() - t0)   # the probe counts
        trainer.fit()
        out["trainer_auto"] = {"val_ppl": evaluate(model, val, bos=2, eos=3,
                                                   bf16=trainer.bf16)["ppl"],
                               "steps": trainer.state["step"],
                               "precision": trainer.precision["precision"]}
    for k, v in out.items():
        print(f"  {k:13s} validation ppl {v['val_ppl']:8.1f}   {v}")
    return out


def decode_timing(cfg: Seq2SeqConfig, tokens: int, rounds: int = 5) -> dict:
    """Batch-1 generation with the fp16-weight decoder: ms per generated token through
    shared.decoding.generate (greedy), ms per decode_step alone, and ms of that step's matrix
    products alone (the same packed fp16 products on the same shapes, nothing else). The three
    are timed in turn, `rounds` times after a warm-up, and each keeps its best round: a pass
    takes a fifth of a second, and another job's burst should not decide the ratio."""
    from .decoding import GenerationConfig, generate
    from .fp16 import Fp16Decoder, _linear, available
    if not available():
        return {}
    torch.manual_seed(0)
    model = Seq2Seq(cfg).eval()
    fast = Fp16Decoder(model)
    src, src_len = torch.tensor([[4, 5, 6, 7, 8]]), torch.tensor([5])
    g = GenerationConfig(strategy="greedy", max_len=tokens)
    inputs = [torch.randn(1, k) for k in fast.product_inputs()]
    h = torch.randn(1, cfg.hidden)

    def through_generate() -> float:
        t0 = time.perf_counter()
        n = sum(len(t) for t in generate(fast, src, src_len, g, bos_id=2, eos_id=-1).tokens)
        return (time.perf_counter() - t0) / n

    def steps() -> float:
        state, tok = fast.encode(src, src_len), torch.tensor([2])
        t0 = time.perf_counter()
        for _ in range(tokens):
            logits, state = fast.decode_step(tok, state)
        return (time.perf_counter() - t0) / tokens

    pairs = list(zip(inputs, fast.products()))

    def products() -> float:
        with torch.no_grad():
            t0 = time.perf_counter()
            for _ in range(tokens):
                for x, packed in pairs:
                    _linear(x, packed)
                if fast.pre is not None:  # the small fp32 (hidden -> emb) product of tied models
                    torch.nn.functional.linear(h, fast.pre.weight, fast.pre.bias)
            return (time.perf_counter() - t0) / tokens

    best = [float("inf")] * 3
    for rnd in range(rounds + 1):                       # round 0 warms up
        times = [f() for f in (through_generate, steps, products)]
        if rnd:
            best = [min(a, b) for a, b in zip(best, times)]
    per_token, step, mm = best
    res = {"ms_per_token": 1e3 * per_token, "ms_per_step": 1e3 * step,
           "ms_matmul": 1e3 * mm, "overhead": 1 - mm / per_token,
           "step_overhead": 1 - mm / step}
    print(f"decode, batch 1, fp16 weights, {tokens} greedy tokens, best of {rounds} rounds: "
          f"{res['ms_per_token']:.3f} ms/token "
          f"through generate, {res['ms_per_step']:.3f} ms per decode_step; its matrix products "
          f"alone {res['ms_matmul']:.3f} ms: overhead {100 * res['overhead']:.0f}% of the token, "
          f"{100 * res['step_overhead']:.0f}% of the step")
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3, help="timed trainer steps per mode")
    ap.add_argument("--naive", type=int, default=64, help="sequences for the naive loop")
    ap.add_argument("--budget", type=float, default=120.0,
                    help="seconds per trainer mode at most (bf16 without AMX is very slow)")
    ap.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    ap.add_argument("--vocab", type=int, default=6300, help="6300 = poems, 8000 = chat size")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--quality-minutes", type=float, default=0.0,
                    help="also train naive and Trainer this long each, compare validation ppl")
    ap.add_argument("--decode-tokens", type=int, default=200, help="0 = skip the decode timing")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Seq2SeqConfig(src_vocab=args.vocab, tgt_vocab=args.vocab, cell=args.cell,
                        emb_dim=256, hidden=512, enc_layers=1, dec_layers=2,
                        bidirectional=True, dropout=0.1, share_embeddings=True)
    pairs, what = load_pairs(cfg.tgt_vocab)
    print(f"data: {what}; threads: {torch.get_num_threads()}; CPU flags: "
          f"{' '.join(cpu_flags()) or 'unknown'}")
    g32, g16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    print(f"matmul 1024^2: fp32 {g32:.0f} GFLOP/s, bf16 {g16:.1f} GFLOP/s")
    for cell in ("lstm", "gru"):
        print(f"torch's nn.{cell.upper()} under bf16 autocast: {torch_rnn_under_autocast(cell)}")
    fpt = flops_per_token(cfg)
    torch.manual_seed(0)
    probe = probe_training(Seq2Seq(cfg), 64)
    print(f"auto precision probe ({probe.shape}): {probe.choice}; seconds per step "
          + ", ".join(f"{k} {v:.3f}" if v else f"{k} skipped" for k, v in probe.seconds.items()))
    results = {}
    modes = [("a_naive_fp32", lambda m: run_naive(m, pairs, args.naive)),
             ("b_trainer_fp32", lambda m: run_trainer(m, pairs, args.steps, False, args.budget)),
             ("c_trainer_bf16", lambda m: run_trainer(m, pairs, args.steps, True, args.budget)),
             ("d_trainer_auto", lambda m: run_trainer(m, pairs, args.steps,
                                                      probe.choice == "bf16", args.budget))]
    for name, fn in modes:
        torch.manual_seed(0)
        model = Seq2Seq(cfg).train()
        tps = fn(model)
        bf = name.startswith("c") or (name.startswith("d") and probe.choice == "bf16")
        peak = g16 if bf else g32
        results[name] = tps
        print(f"{name:16s} {tps:9.0f} tokens/s   {tps * fpt / 1e9:7.1f} GFLOP/s = "
              f"{100 * tps * fpt / 1e9 / peak:5.1f}% of the {'bf16' if bf else 'fp32'}"
              f" matmul rate")
    a, b, c, d = (results[k] for k in ("a_naive_fp32", "b_trainer_fp32", "c_trainer_bf16",
                                       "d_trainer_auto"))
    print(f"ratios: (d)/(a) = {d / a:.2f}   (d)/(b) = {d / b:.2f}   (c)/(b) = {c / b:.2f}   "
          f"(b)/(a) = {b / a:.2f}")
    extra = {}
    if args.decode_tokens:
        extra["decode"] = decode_timing(cfg, args.decode_tokens)
    if args.quality_minutes:
        extra["quality"] = time_to_quality(cfg, args.quality_minutes)
    print(json.dumps({"tokens_per_s": results, "gflops": {"fp32": g32, "bf16": g16},
                      "model_params": Seq2Seq(cfg).num_parameters(),
                      "flops_per_token": fpt, "fp32_matmul_fraction": b * fpt / 1e9 / g32,
                      "auto": probe.record(), **extra}))


if __name__ == "__main__":
    main()
