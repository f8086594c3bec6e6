"""A batch killed for real (SIGKILL) and rerun gives the uninterrupted run's output: one line per
item, indexes 0..N-1 in order, no torn line, the same poems, replies and tunes (issue 13); a
training killed and rerun ends with the uninterrupted run's weights, optimiser state and
checkpoint/state.json. The kills are at known points: SHIYU_KILL_AFTER=k makes a batch kill
itself right after its output's line k (shared/batch.py), SHIYU_KILL_AFTER_STEP=k a training
right after step k (shared/trainer.py)."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ITEMS = 48
KILLS = (1, 16, 40)     # the first line, the last of a 16-item chunk (before its flush), mid-chunk


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


def killed_at(args: list[str], env: dict, **kill) -> subprocess.CompletedProcess:
    """`args` run with a kill point (SHIYU_KILL_AFTER=..., SHIYU_KILL_AFTER_STEP=...): it must
    end by SIGKILL."""
    r = subprocess.run(args, cwd=ROOT, env={**env, **{k: str(v) for k, v in kill.items()}},
                       capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])
    return r


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

    out = tmp_path / "killed.jsonl"
    for k in KILLS:                        # each run resumes the last one's output, killed at k
        killed_at(command(task, model, src, out), env, SHIYU_KILL_AFTER=k)
        assert lines(out) == expected[:k]
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
    SIGKILL right after a step, before its checkpoint, at three points, and rerun until it
    ends: its weights and optimiser state equal an uninterrupted run's bit for bit, and so does
    its checkpoint/state.json (step, epoch, data position, best validation loss, precision,
    optimiser settings, config) but for the wall time it keeps."""
    from safetensors.torch import load_file
    from tests import test_smoke
    module, corpus, epochs = TRAINERS[task]
    data = tmp_path / "data"
    getattr(test_smoke, corpus)(data)

    def args(out: Path) -> list[str]:
        return [sys.executable, "-m", module, "--data", str(data), "--out",
                str(out), "--threads", "1", "--epochs", str(epochs), *test_smoke.TINY,
                "train.batch_size=1", "train.checkpoint_every=1", "train.bf16=false"]

    def state(out: Path) -> dict:
        saved = json.loads((out / "checkpoint" / "state.json").read_text())
        saved["state"].pop("elapsed_s")                # wall time, summed over the runs
        return saved

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(args(tmp_path / "full"), check=True, cwd=ROOT, env=env, capture_output=True)
    steps = state(tmp_path / "full")["state"]["step"]
    out = tmp_path / "killed"
    for k in (2, steps // 2, steps - 1):       # the rerun redoes step k from step k - 1's save
        killed_at(args(out), env, SHIYU_KILL_AFTER_STEP=k)
        assert state(out)["state"]["step"] == k - 1
    subprocess.run(args(out), check=True, cwd=ROOT, env=env, capture_output=True)
    for name in ("best.safetensors", "checkpoint/model.safetensors",
                 "checkpoint/optim.safetensors"):
        a, b = load_file(str(tmp_path / "full" / name)), load_file(str(out / name))
        assert a.keys() == b.keys() and all(torch_equal(a[k], b[k]) for k in a), name
    assert state(out) == state(tmp_path / "full")


def torch_equal(a, b) -> bool:
    import torch
    return a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a, b))
