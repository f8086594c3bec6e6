"""From training to serving, per task: a tiny model trained for a few steps by the real training
entry point on a tiny prepared corpus, exported, loaded through the writer, run by the CLI."""
import importlib
import json
import shlex

import numpy as np
import pytest

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY = ["model.emb_dim=16", "model.hidden=32", "model.dec_layers=1", "train.batch_size=4",
        "train.warmup_steps=1", "train.log_every=1"]
POEMS = ["白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
         "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
         "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
         "红豆生南国，春来发几枝。愿君多采撷，此物最相思。"]


def write_splits(folder, rows, **extra):
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        (folder / f"{split}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (folder / "stats.json").write_text(json.dumps({"splits": {"train": len(rows)}}))
    for name, text in extra.items():
        (folder / name).write_text(text, encoding="utf-8")


def poem_corpus(folder):
    rows = []
    for i, body in enumerate(POEMS * 2):
        lines = [x for x in body.replace("。", "，").split("，") if x]
        rows.append({"id": f"p{i}", "title": ["登楼", "静夜思", "春晓", "相思"][i % 4],
                     "author": "x", "form": "wujue", "lines": lines, "body": body})
    from poetry.poems.planning import Planner
    planner = Planner.from_poems(rows, 1, 1, 1, 1)
    for r in rows:
        r["keywords"] = planner.extract(r["lines"])
    write_splits(folder, rows)
    (folder / "train_song.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:3]), encoding="utf-8")
    (folder / "keywords.json").write_text(planner.to_json(), encoding="utf-8")
    from poetry.poems.novelty import LineIndex
    from poetry.poems.repetition import Limits
    from poetry.poems.themes import Associations
    LineIndex(["白日依山尽"]).save(folder / "lines.npz.xz")
    (folder / "repetition.json").write_text(Limits.from_poems(r["lines"] for r in rows).to_json(),
                                            encoding="utf-8")
    (folder / "themes.json").write_text(Associations.from_poems(rows, min_titles=1,
                                                                min_pair=1).to_json(),
                                        encoding="utf-8")


def chat_corpus(folder):
    turns = ["hi!", "hello! how are you?", "good, thanks. and you?", "fine. 你好", "再见"]
    write_splits(folder, [{"id": f"c{i}", "source": "x", "lang": "en", "turns": turns[i % 2:]}
                          for i in range(8)])


def tune_corpus(folder):
    bodies = ["|:c2d e2f|g2a b2c':|", "|:G2A B2c|d2e f2g:|", "c2e g2e|f2a g2e|d2f e2c|]"]
    write_splits(folder, [{"meter": "6/8", "mode": "maj", "rhythm": "jig", "body": b}
                          for b in bodies * 3])
    np.save(folder / "train_windows.npy", np.array([], dtype=np.uint64), allow_pickle=False)


def run(module: str, *args) -> None:
    assert importlib.import_module(module).main(list(args)) == 0


@pytest.mark.slow
@pytest.mark.parametrize("task,corpus,train,cli", [
    ("poem", poem_corpus, "poetry.poems.train",
     ["poetry.cli", "poem", "--theme", "明月", "--form", "wujue", "--seed", "1"]),
    ("chat", chat_corpus, "chatbot.train", ["chatbot.cli", "--message", "hi!", "--seed", "1"]),
    ("tune", tune_corpus, "poetry.tunes.train",
     ["poetry.cli", "tune", "--meter", "6/8", "--key", "D", "--seed", "1"]),
])
def test_train_export_serve(tmp_path, capsys, task, corpus, train, cli):
    data, run_dir, model = tmp_path / "data", tmp_path / "run", tmp_path / "model"
    corpus(data)
    common = ["--data", str(data), "--out", str(run_dir), "--threads", "1"]
    run(train, *common, "--epochs", "2", *TINY)
    assert (run_dir / "best.safetensors").exists()
    log = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("val_ppl" in r for r in log) and any("grad_norm" in r for r in log)
    run(train, *common, "--export", str(model))
    card = json.loads((model / "card.json").read_text())
    assert card["task"] == task and card["validation"]["ppl"] > 1
    if task == "poem":                       # Tang and Song train; the planner ships, slim
        assert card["train_splits"] == ["train", "train_song"]
        shipped = json.loads((model / "keywords.json").read_text(encoding="utf-8"))
        assert shipped["df"] == {} and shipped["near"]
    capsys.readouterr()
    run(*cli, "--model", str(model))
    assert capsys.readouterr().out.strip()


@pytest.mark.slow
def test_fine_tune_starts_from_the_init_run(tmp_path, capsys):
    """--init: the new run takes the first run's tokenizer, shape and best weights (with a
    vanishing learning rate its weights stay those), reads only --splits, and its card says
    what it was fine-tuned from."""
    from safetensors.torch import load_file
    data, first, second = tmp_path / "data", tmp_path / "run", tmp_path / "tuned"
    poem_corpus(data)
    train = "poetry.poems.train"
    run(train, "--data", str(data), "--out", str(first), "--threads", "1", "--epochs", "1", *TINY)
    run(train, "--data", str(data), "--out", str(second), "--threads", "1", "--epochs", "1",
        "--init", str(first), "--splits", "train", "train.lr=1e-12", "train.warmup_steps=1",
        "model.dropout=0.25")                  # a setting, not the shape, may change
    assert (second / "tokenizer.json").read_text() == (first / "tokenizer.json").read_text()
    a, b = load_file(str(first / "best.safetensors")), load_file(str(second / "best.safetensors"))
    assert a.keys() == b.keys()
    assert all(np.allclose(a[k].float().numpy(), b[k].float().numpy(), atol=1e-6) for k in a)
    record = json.loads((second / "run.json").read_text())
    assert record["model"]["hidden"] == 32 and "--init" in record["argv"]
    assert record["model"]["dropout"] == 0.25
    run(train, "--data", str(data), "--out", str(second), "--export", str(tmp_path / "m"))
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["fine_tuned_from"]["run"] == str(first) and "--init" in card["argv"]
    # the rebuild is the fine-tune's own command, which names the run it starts from
    assert card["rebuild"].startswith("python -m poetry.poems.data prepare && "
                                      "python -m poetry.poems.train ")
    assert f"--init {first}" in card["rebuild"] and card["rebuild"].endswith(str(tmp_path / "m"))
    with pytest.raises(ValueError, match="only model.dropout may change, not model.hidden=64"):
        run(train, "--data", str(data), "--out", str(tmp_path / "wider"), "--init", str(first),
            "model.hidden=64")
    assert card["fine_tuned_from"]["history"] and card["fine_tuned_from"]["steps"] > 0
    # --repeat: records of one field value read K times (8 Tang + 3 Song records, 3 of them
    # titled 春晓, so 11 + 2 x 3 pairs)
    capsys.readouterr()
    run(train, "--data", str(data), "--out", str(tmp_path / "more"), "--threads", "1",
        "--epochs", "1", "--repeat", "title=春晓:3", *TINY)
    assert "17 training pairs" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--repeat: no training record has title = '无'"):
        run(train, "--data", str(data), "--out", str(tmp_path / "none"), "--repeat", "title=无:2")
    # --only: training and validation read the matching records alone (2 Tang + 1 Song 春晓
    # to train on; validation, the 8 Tang records' file, holds 2)
    run(train, "--data", str(data), "--out", str(tmp_path / "one"), "--threads", "1",
        "--epochs", "1", "--only", "title=春晓", *TINY)
    assert "3 training pairs, 2 validation pairs" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--only: no training record has title = '无'"):
        run(train, "--data", str(data), "--out", str(tmp_path / "none"), "--only", "title=无")
    with pytest.raises(FileNotFoundError, match="--init takes a trained run folder"):
        run(train, "--data", str(data), "--out", str(tmp_path / "x"), "--init",
            str(tmp_path / "nothing"))
    # --tokenizer: a run from scratch (its own shape) with another run's tokenizer; its card's
    # rebuild command is its own training command, then the same with --export
    other = tmp_path / "own-shape"
    args = ["--data", str(data), "--out", str(other), "--threads", "1", "--epochs", "1",
            "--tokenizer", str(first), *TINY[:1], "model.hidden=48", *TINY[2:]]
    run(train, *args)
    assert (other / "tokenizer.json").read_text() == (first / "tokenizer.json").read_text()
    assert json.loads((other / "run.json").read_text())["model"]["hidden"] == 48
    run(train, "--data", str(data), "--out", str(other), "--threads", "1", "--epochs", "2",
        *TINY[:1], "model.hidden=48", *TINY[2:])              # resumed: the card keeps the first
    run(train, "--data", str(data), "--out", str(other), "--export", str(tmp_path / "m2"))
    rebuild = json.loads((tmp_path / "m2" / "card.json").read_text())["rebuild"]
    command = f"python -m poetry.poems.train {shlex.join(args)}"
    assert rebuild == (f"python -m poetry.poems.data prepare && {command} && {command} "
                       f"--export {tmp_path / 'm2'}")
    odd = tmp_path / "odd.json"               # another tokenizer (its text differs)
    odd.write_text((first / "tokenizer.json").read_text().replace("{", '{"note": 1, ', 1))
    with pytest.raises(ValueError, match="has another tokenizer than"):
        run(train, "--data", str(data), "--out", str(other), "--tokenizer", str(odd))
    with pytest.raises(FileNotFoundError, match="give a run or model folder, or a tokenizer"):
        run(train, "--data", str(data), "--out", str(tmp_path / "y"), "--tokenizer",
            str(tmp_path / "nothing"))


@pytest.mark.slow
@pytest.mark.parametrize("task,corpus,train", [
    ("poem", poem_corpus, "poetry.poems.train"), ("chat", chat_corpus, "chatbot.train"),
    ("tune", tune_corpus, "poetry.tunes.train")])
def test_every_trainer_runs_under_torchrun(tmp_path, task, corpus, train):
    """Each task's training entry point as 2 gloo processes: it trains, validates, checkpoints
    and exports like one process (the shared Trainer's numbers under DDP are checked in
    tests/test_trainer.py). The tune corpus's last global batch has 1 item for 2 ranks: the
    second joins the all-reduce with a share that weighs 0 (it crashed on an empty share)."""
    import os
    import subprocess
    import sys
    data, run_dir = tmp_path / "data", tmp_path / "run"
    corpus(data)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", "-m", train, "--data", str(data), "--out",
                           str(run_dir), "--epochs", "2", *TINY], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum("val_ppl" in r for r in log) == 2            # rank 0 logs, once per epoch
    assert (run_dir / "best.safetensors").exists()
    run(train, "--data", str(data), "--out", str(run_dir), "--export", str(tmp_path / "m"))
    assert json.loads((tmp_path / "m" / "card.json").read_text())["steps"] > 0
