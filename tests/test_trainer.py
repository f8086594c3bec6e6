import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared.checkpoint import ModelFileError, export_model, load_model
from shared.decoding import GenerationConfig, generate, pad_batch
from shared.tokenizers import CharTokenizer
from shared.trainer import TrainConfig, Trainer, TrainingDiverged, batches_for_epoch
from tests.helpers import BOS, EOS, copy_pairs, tiny_model

ROOT = Path(__file__).resolve().parents[1]


def cfg(**kw):
    base = dict(epochs=3, batch_size=16, lr=5e-3, warmup_steps=5, checkpoint_every=0,
                log_every=1, patience=5, bf16=False)   # fixed: runs compared bitwise
    base.update(kw)
    return TrainConfig(**base)


def fit(model, out, train, **kw):
    return Trainer(model, train, copy_pairs(20, seed=9), cfg(**kw), out, bos=BOS, eos=EOS,
                   progress=False).fit()


def test_resume_is_bitwise_exact(cell, tmp_path):
    """2N steps in one go == N steps, a 'killed' process, and N more steps after resume,
    with an epoch boundary (and its validation) crossed after the resume. Dropout on."""
    train = copy_pairs(200, seed=1)                     # 13 batches an epoch
    N = 10
    straight = tiny_model(cell, seed=0, dropout=0.3)
    fit(straight, tmp_path / "a", train, max_steps=2 * N)
    first = tiny_model(cell, seed=0, dropout=0.3)
    fit(first, tmp_path / "b", train, max_steps=N)
    torch.manual_seed(1234)                             # a new process: other RNG, other init
    resumed = tiny_model(cell, seed=99, dropout=0.3)
    result = fit(resumed, tmp_path / "b", train, max_steps=2 * N)
    assert result["steps"] == 2 * N
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    log_a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    losses = lambda log: [r["loss"] for r in log if "loss" in r]
    assert losses(log_a) == losses(log_b)               # same data order, same numbers


def test_a_kill_between_the_renames_of_a_save_resumes_from_the_previous_one(tmp_path):
    """Killed after `checkpoint` went to `checkpoint.old` and before `checkpoint.tmp` took its
    place: the trainer resumes from `.old`, never reads the half-written `.tmp`, and the run
    still ends bitwise equal to an uninterrupted one."""
    train = copy_pairs(200, seed=1)
    straight = tiny_model("lstm", seed=0, dropout=0.3)
    fit(straight, tmp_path / "a", train, max_steps=12, checkpoint_every=4)
    first = tiny_model("lstm", seed=0, dropout=0.3)
    fit(first, tmp_path / "b", train, max_steps=8, checkpoint_every=4)
    ckpt = tmp_path / "b" / "checkpoint"
    os.rename(ckpt, ckpt.with_name("checkpoint.old"))
    tmp = ckpt.with_name("checkpoint.tmp")
    tmp.mkdir()
    (tmp / "state.json").write_text("{\"state\": {\"st")          # torn
    resumed = tiny_model("lstm", seed=99, dropout=0.3)
    assert fit(resumed, tmp_path / "b", train, max_steps=12, checkpoint_every=4)["steps"] == 12
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_auto_precision_leaves_no_trace_is_logged_and_kept_on_resume(tmp_path, monkeypatch):
    """The probe really runs (forward and backward in both precisions) yet a run that it sends
    to fp32 equals a forced-fp32 run bitwise; a resumed run keeps the first run's choice."""
    import shared.precision as precision
    train = copy_pairs(100, seed=1)
    forced = tiny_model("lstm", seed=0, dropout=0.3)
    fit(forced, tmp_path / "a", train, max_steps=6)
    monkeypatch.setattr(precision, "choose", lambda seconds, margin=1.1: "fp32")
    auto = tiny_model("lstm", seed=0, dropout=0.3)
    fit(auto, tmp_path / "b", train, max_steps=3, bf16="auto")
    monkeypatch.setattr(precision, "choose", lambda seconds, margin=1.1: "bf16")
    resumed = tiny_model("lstm", seed=5, dropout=0.3)
    trainer = Trainer(resumed, train, copy_pairs(20, seed=9), cfg(max_steps=6, bf16="auto"),
                      tmp_path / "b", bos=BOS, eos=EOS, progress=False)
    assert trainer.precision["precision"] == "fp32" and trainer.precision["resumed"]
    trainer.fit()
    for (k, a), b in zip(forced.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    log = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    first = next(r for r in log if "precision" in r)
    assert first["setting"] == "auto" and set(first["probe_s"]) == {"fp32", "bf16"}
    assert first["probe_s"]["fp32"] > 0 and isinstance(first["cpu_flags"], list)


@pytest.mark.parametrize("fp32,bf16,pick", [(1.0, 1.5, "fp32"), (1.0, None, "fp32"),
                                            (1.0, 0.95, "fp32"), (1.0, 0.5, "bf16")])
def test_probe_picks_bf16_only_when_it_measures_clearly_faster(fp32, bf16, pick, monkeypatch):
    """The probe's decision from injected step timings: a CPU without native bf16 (slower,
    or too slow to finish the warm-up = None) never gets bf16, nor does a tie."""
    import shared.precision as precision
    times = {False: fp32, True: bf16}
    monkeypatch.setattr(precision, "_step_seconds", lambda m, b, bf, reps, limit: times[bf])
    probe = precision.probe_training(tiny_model("gru"), 8)
    assert probe.choice == pick and probe.seconds == {"fp32": fp32, "bf16": bf16}
    assert precision.resolve(True, None, 8).choice == "bf16"
    assert precision.resolve(False, None, 8).choice == "fp32"


def test_bf16_setting_parses_from_overrides():
    from shared.config import apply_overrides
    assert TrainConfig().bf16 == "auto"
    for raw, value in (("true", True), ("false", False), ("auto", "auto")):
        assert apply_overrides(TrainConfig(), [f"bf16={raw}"]).bf16 == value
    with pytest.raises(ValueError, match="bf16"):
        apply_overrides(TrainConfig(), ["bf16=fast"])


def test_bucketed_batches_are_deterministic_and_cover_everything():
    pairs = copy_pairs(300, seed=2, lo=1, hi=9)
    c = cfg(batch_size=10, bucket_batches=5)
    b0, b0_again, b1 = (batches_for_epoch(pairs, c, e) for e in (0, 0, 1))
    assert b0 == b0_again and b0 != b1
    assert sorted(i for b in b0 for i in b) == list(range(300))
    spread = [max(len(pairs[i][1]) for i in b) - min(len(pairs[i][1]) for i in b) for b in b0]
    assert sum(spread) / len(spread) < 2     # length-bucketed: little padding


def test_divergence_stops_with_a_clear_message(tmp_path):
    model = tiny_model("lstm")
    with pytest.raises(TrainingDiverged, match="lower lr"):
        fit(model, tmp_path, copy_pairs(50), lr=1e4, warmup_steps=1, clip_norm=0.0,
            max_loss=1.0)


def test_empty_dataset_and_truncation(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        fit(tiny_model("gru"), tmp_path, [])
    long = [([4] * 50, [5] * 50)] + copy_pairs(10)
    with pytest.warns(UserWarning, match="truncated 1 of 11"):
        Trainer(tiny_model("gru"), long, copy_pairs(5), cfg(max_src_len=8, max_tgt_len=8),
                tmp_path, bos=BOS, eos=EOS, progress=False)


def test_early_stopping_and_best_weights(tmp_path):
    out = fit(tiny_model("gru"), tmp_path, copy_pairs(64), epochs=30, patience=1, lr=0.5,
              clip_norm=0.0, max_loss=1e9)
    assert out["stopped"] == "early_stopping" and out["epochs"] < 30
    assert (tmp_path / "best.safetensors").exists()


def test_export_load_round_trip_and_damage(cell, tmp_path):
    model = tiny_model(cell, seed=3).eval()
    tok = CharTokenizer([chr(ord("a") + i) for i in range(8)])
    export_model(tmp_path / "m", model, tok, {"rebuild": "python make_it.py"},
                 dtype=torch.float32)
    back, tok2, card = load_model(tmp_path / "m")
    src, src_len = pad_batch([[5, 6, 7], [8]])
    g = GenerationConfig(strategy="sample", seed=1, max_len=8)
    assert generate(model, src, src_len, g, bos_id=BOS, eos_id=EOS).tokens == \
        generate(back, src, src_len, g, bos_id=BOS, eos_id=EOS).tokens
    assert tok2.itos == tok.itos and set(card["files"]) >= {"model.safetensors", "config.json"}
    export_model(tmp_path / "bf", model, tok, {})          # default: bf16 weights, half the size
    assert (tmp_path / "bf" / "model.safetensors").stat().st_size < \
        0.6 * (tmp_path / "m" / "model.safetensors").stat().st_size
    load_model(tmp_path / "bf")
    w = tmp_path / "m" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelFileError, match="model.safetensors.*python make_it.py"):
        load_model(tmp_path / "m")
    (tmp_path / "bf" / "config.json").unlink()
    with pytest.raises(ModelFileError, match="missing file .*config.json"):
        load_model(tmp_path / "bf")


DDP_SCRIPT = """
import sys, torch
sys.path.insert(0, {root!r})
from shared.trainer import TrainConfig, Trainer, init_distributed
from shared.checkpoint import unique_state
from safetensors.torch import save_file
from tests.helpers import copy_pairs, tiny_model
init_distributed()
torch.set_num_threads(1)
model = tiny_model("lstm", seed=0, dropout=0.0)
cfg = TrainConfig(epochs=1, batch_size=16, lr=5e-3, warmup_steps=2, max_steps=8,
                  checkpoint_every=0, log_every=100, bf16=False)
Trainer(model, copy_pairs(160, seed=1, lo=1, hi=7), copy_pairs(10, seed=2), cfg,
        sys.argv[1], bos=2, eos=3, progress=False).fit()
save_file(unique_state(model), sys.argv[1] + "/final.safetensors")
"""


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path):
    """Global batch 16 as 2 x 8 under gloo vs 16 in one process, dropout off. Both compute the
    gradient of (global summed NLL / global tokens); only the fp32 summation order differs,
    so after 8 AdamW steps weights agree to ~1e-5 (Adam's normalisation amplifies rounding
    only where gradients are ~0)."""
    from safetensors.torch import load_file
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(root=str(ROOT)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, str(script), str(tmp_path / "one")], check=True, env=env)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", str(script), str(tmp_path / "two")], env=env,
                         capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-6000:]
    one = load_file(str(tmp_path / "one" / "final.safetensors"))
    two = load_file(str(tmp_path / "two" / "final.safetensors"))
    moved = 0.0
    for k in one:
        torch.testing.assert_close(two[k], one[k], atol=2e-5, rtol=1e-4)
    init = tiny_model("lstm", seed=0, dropout=0.0).state_dict()
    moved = max(float((one[k] - init[k]).abs().max()) for k in one)
    assert moved > 1e-3          # the runs really trained
