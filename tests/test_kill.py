"""A batch killed for real (SIGKILL) and rerun gives the uninterrupted run's output: one line per
item, indexes 0..N-1 in order, no torn line, the same poems, replies and tunes (issue 13)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ITEMS = 160


# per task: the batch command's leading words and the input items
TASKS = {
    "poem": (["poetry", "poem", "--form", "wujue"], ["明月", "春", "秋思", "送别"]),
    "chat": (["chatbot"], ["hi!", "how are you?", "你好", '{"messages": [{"role": "user", '
                           '"content": "what music do you like?"}]}']),
    "tune": (["poetry", "tune"], ["6/8 D jig", '{"meter": "2/4", "key": "G"}', "4/4 Ador reel",
                                  "6/8 Emin"]),
}


def command(task: str, model: Path, src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", *TASKS[task][0], "--input", str(src), "--output", str(out),
            "--model", str(model), "--seed", "3"]


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
def test_a_killed_batch_resumes_to_the_same_output(task, request, tmp_path):
    model = request.getfixturevalue(f"{task}_model_dir")
    items = TASKS[task][1]
    src = tmp_path / "items.txt"
    src.write_text("\n".join(items * (ITEMS // len(items))) + "\n", encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = tmp_path / "full.jsonl"
    subprocess.run(command(task, model, src, full), check=True, cwd=ROOT, env=env,
                   capture_output=True)
    expected = lines(full)
    assert [json.loads(x)["index"] for x in expected] == list(range(ITEMS))

    killed = 0
    out = tmp_path / "killed.jsonl"
    for target in (1, 40, 100):                       # kill once past each of these lines
        proc = subprocess.Popen(command(task, model, src, out), cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while proc.poll() is None and len(lines(out)) < target and time.time() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait()
        assert len(lines(out)) < ITEMS or proc.returncode == 0
    assert killed >= 2, "the batch finished before it could be killed: give it more items"
    subprocess.run(command(task, model, src, out), check=True, cwd=ROOT, env=env,
                   capture_output=True)
    assert lines(out) == expected
    assert not any("error" in json.loads(x) for x in expected)


TRAINERS = {"poem": ("poetry.poems.train", "poem_corpus", 8),
            "chat": ("chatbot.train", "chat_corpus", 8),
            "tune": ("poetry.tunes.train", "tune_corpus", 24)}    # module, corpus, epochs


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TRAINERS))
def test_a_killed_training_resumes_to_the_same_weights(task, tmp_path):
    """Each task's real trainer (a tiny model, fp32, a checkpoint every step) killed with
    SIGKILL at random moments, checkpoint writes included, and rerun until it ends: its
    weights equal an uninterrupted run's bit for bit, and no half-written checkpoint is ever
    loaded."""
    import random
    from safetensors.torch import load_file
    from tests import test_smoke
    module, corpus, epochs = TRAINERS[task]
    data = tmp_path / "data"
    getattr(test_smoke, corpus)(data)

    def args(out: Path) -> list[str]:
        return [sys.executable, "-m", module, "--data", str(data), "--out",
                str(out), "--threads", "1", "--epochs", str(epochs), *test_smoke.TINY,
                "train.batch_size=1", "train.checkpoint_every=1", "train.bf16=false"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(args(tmp_path / "full"), check=True, cwd=ROOT, env=env, capture_output=True)
    out, rng, kills = tmp_path / "killed", random.Random(0), 0
    state = out / "checkpoint" / "state.json"
    for _ in range(4):
        proc = subprocess.Popen(args(out), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:                                          # a target past the last checkpoint
            reached = json.loads(state.read_text())["state"]["step"]
        except (OSError, ValueError, KeyError):
            reached = 0
        target, deadline = reached + rng.randint(3, 20), time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            try:
                step = json.loads(state.read_text())["state"]["step"]
            except (OSError, ValueError, KeyError):
                step = 0
            if step >= target:
                time.sleep(rng.random() * 0.01)      # anywhere in a step or a checkpoint write
                break
            time.sleep(0.002)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 3, "the training ended before it could be killed"
    subprocess.run(args(out), check=True, cwd=ROOT, env=env, capture_output=True)
    for name in ("best.safetensors", "checkpoint/model.safetensors",
                 "checkpoint/optim.safetensors"):
        a, b = load_file(str(tmp_path / "full" / name)), load_file(str(out / name))
        assert a.keys() == b.keys() and all(torch_equal(a[k], b[k]) for k in a), name


def torch_equal(a, b) -> bool:
    import torch
    return a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a, b))
