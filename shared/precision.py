"""fp32 or bf16, chosen by measurement on this CPU for this model (`train.bf16=auto`).

Whether bf16 pays depends on the CPU (measured): ~30x slower than fp32 on an AVX2-only EPYC,
1.1-1.5x faster with AVX512-BF16, ~1.8x with AMX. Flags alone do not say it (oneDNN may lack a
kernel; small models are bound by overheads), so `probe_training` times the model's own
training step, forward and backward, at its real batch size and width on a short synthetic
batch, in both precisions, and `choose` keeps bf16 only when it is clearly faster. The probe
leaves no trace: RNG state, gradients and train/eval mode are restored, no weight changes.

    probe = probe_training(model, batch_size=64)   # ~1-2 s at the reference size
    probe.choice                                   # "bf16" or "fp32"; probe.record() for logs
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
MARGIN = 1.1      # bf16 must be >10 % faster: its rounding is not free, a tie goes to fp32


def cpu_flags() -> list[str]:
    """The CPU features that decide bf16 speed, as /proc/cpuinfo lists them."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return []
    have = set()
    for line in path.read_text().splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            break
    return [f for f in FLAGS if f in have]


@dataclass
class Probe:
    choice: str                                   # "bf16" or "fp32"
    seconds: dict = field(default_factory=dict)   # precision -> best step time (None = skipped)
    flags: list = field(default_factory=list)
    shape: str = ""

    def record(self) -> dict:
        return {"precision": self.choice, "probe_s": self.seconds, "cpu_flags": self.flags,
                "probe_shape": self.shape}


def choose(seconds: dict, margin: float = MARGIN) -> str:
    """bf16 only when it measured faster than fp32 by `margin`; fp32 when in doubt."""
    fp32, bf16 = seconds.get("fp32"), seconds.get("bf16")
    if fp32 is None or bf16 is None or bf16 * margin >= fp32:
        return "fp32"
    return "bf16"


def _synthetic_batch(model, batch_size: int, src_len: int, tgt_len: int):
    """Random ids, no padding (every position costs what a real token costs)."""
    cfg, g = model.cfg, torch.Generator().manual_seed(0)
    src = torch.randint(0, cfg.src_vocab, (batch_size, src_len), generator=g)
    tgt = torch.randint(0, cfg.tgt_vocab, (batch_size, tgt_len + 1), generator=g)
    src[src == cfg.pad_id] = (cfg.pad_id + 1) % cfg.src_vocab
    tgt[tgt == cfg.pad_id] = (cfg.pad_id + 1) % cfg.tgt_vocab
    return src, torch.full((batch_size,), src_len), tgt[:, :-1], tgt[:, 1:]


def _step_seconds(model, batch, bf16: bool, reps: int, limit_s: float) -> float | None:
    """Best of `reps` timed forward+backward passes; None when one ran past `limit_s` (a
    precision that slow is not worth timing further). reps=0: one untimed warm-up pass."""
    best = None
    for _ in range(max(reps, 1)):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, n = model(*batch)
        (loss / n).backward()
        dt = time.perf_counter() - t0
        if dt > limit_s:
            return None
        best = dt if best is None else min(best, dt)
    return best if reps else 0.0


def probe_training(model, batch_size: int, *, src_len: int = 8, tgt_len: int = 12,
                   reps: int = 2, margin: float = MARGIN) -> Probe:
    """Time one training step of `model` in fp32 and in bf16 and pick the faster. After one
    warm-up each, the timed passes alternate (fp32, bf16, fp32, ...) so that a machine shared
    with other jobs slows both alike; each precision keeps its best time."""
    rng, was_training = torch.get_rng_state(), model.training
    grads = {p: p.grad for p in model.parameters()}
    batch = _synthetic_batch(model, batch_size, src_len, tgt_len)
    model.train()
    seconds = {"fp32": None, "bf16": None}
    try:
        t0 = time.perf_counter()
        _step_seconds(model, batch, False, 0, float("inf"))
        # bf16's warm-up includes building oneDNN kernels; 5x fp32 is far past paying
        limit = 5 * (time.perf_counter() - t0) + 0.5
        slow = _step_seconds(model, batch, True, 0, limit) is None
        for _ in range(reps):
            for key, bf16 in (("fp32", False), ("bf16", True)):
                if bf16 and slow:
                    continue
                dt = _step_seconds(model, batch, bf16, 1, float("inf") if not bf16 else limit)
                old = seconds[key]
                seconds[key] = dt if old is None or (dt is not None and dt < old) else old
    finally:
        torch.set_rng_state(rng)
        model.train(was_training)
        for p, g in grads.items():
            p.grad = g
    return Probe(choose(seconds, margin), seconds, cpu_flags(),
                 f"batch {batch_size}, source {src_len}, target {tgt_len} tokens")


def resolve(setting, model, batch_size: int) -> Probe:
    """`TrainConfig.bf16` (True, False or "auto") -> the precision to train in."""
    if setting == "auto":
        return probe_training(model, batch_size)
    return Probe("bf16" if setting else "fp32", {}, cpu_flags(), "forced by the config")
