"""The batch convention on hostile input: one output line per input line, each bad item failing
alone with a message, never the whole batch."""
import json
from pathlib import Path

import pytest

from shared.batch import item_seed, read_items, run_batch


def run(tmp_path, text: bytes):
    src, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    src.write_bytes(text)
    items = read_items(src, "theme")
    run_batch(items, out, "results", lambda i, it: (it["theme"], item_seed(it, 0, i)),
              lambda jobs: [[t] for t, _ in jobs], known_keys={"theme", "seed"}, progress=False)
    return [json.loads(x) for x in out.read_text(encoding="utf-8").split("\n") if x]


def test_bom_blank_deep_and_bad_seed_fail_alone(tmp_path):
    deep = "{\"a\":" + "[" * 100_000 + "]" * 100_000 + "}"
    lines = ['\ufeff{"theme": "明月"}', "   ", deep, '{"theme": "春", "seed": "x"}',
             '{"theme": "秋", "seed": 1.5}', '{"theme": "冬", "seed": 3}', "plain"]
    rows = run(tmp_path, "\n".join(lines).encode("utf-8"))
    assert [r["index"] for r in rows] == list(range(7))
    assert rows[0]["results"] == ["明月"]                       # the BOM is not part of the JSON
    assert "blank" in rows[1]["error"] and "deep" in rows[2]["error"]
    assert "whole number" in rows[3]["error"] and "whole number" in rows[4]["error"]
    assert rows[5]["results"] == ["冬"] and rows[6]["results"] == ["plain"]


def test_a_binary_file_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not UTF-8"):
        run(tmp_path, b"\x89PNG\r\n\x1a\n\xff\xfe")


def test_wrong_typed_items_fail_alone(tmp_path, poem_model_dir):
    """Items of the wrong JSON type (a number theme, an object without a theme, a list form)
    used to kill the whole poem batch with a traceback. A line that starts with [ must be a JSON
    object too (["明月"] is not); "true" is plain text, a theme with no Chinese."""
    from poetry.poems import PoemWriter
    from poetry.poems.cli import batch
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(['{"theme": 123}', '["明月"]', '{"a": 1}', "true",
                              '{"theme": "明月", "form": ["wujue"]}', '{"theme": "明月"}']),
                   encoding="utf-8")
    batch(PoemWriter.load(poem_model_dir), src, out, form="wujue", progress=False)
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["index"] for r in rows] == list(range(6))
    assert [("error" in r) for r in rows] == [True, True, True, True, True, False]
    assert "must be text" in rows[0]["error"] and "unknown form" in rows[4]["error"]
    assert "must be a JSON object" in rows[1]["error"]


@pytest.mark.slow
def test_torchrun_shards_a_batch_into_the_one_process_output(poem_model_dir, tmp_path):
    """Two processes under torchrun split the items by rank and merge them in input order:
    the output equals one process's line for line, and no shard is left behind."""
    import os
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "themes.txt"
    src.write_text("\n".join(["明月", "春", "{\"theme\": 5}", "秋思", "送\u2028别"] * 5) + "\n",
                   encoding="utf-8")        # U+2028 inside an item is no line break
    args = ["-m", "poetry", "poem", "--input", str(src), "--model", str(poem_model_dir),
            "--form", "wujue", "--seed", "7", "--output"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, *args, str(tmp_path / "one.jsonl")], check=True, cwd=root,
                   env=env, capture_output=True)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", *args, str(tmp_path / "two.jsonl")], cwd=root,
                         env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    one = (tmp_path / "one.jsonl").read_text(encoding="utf-8")
    assert (tmp_path / "two.jsonl").read_text(encoding="utf-8") == one
    assert one.count("\n") == 25 and "\"error\"" in one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.jsonl", "themes.txt", "two.jsonl"]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["chat", "tune"])
def test_torchrun_resumes_a_killed_batch_from_its_shards(task, request, tmp_path):
    """Two ranks killed mid-batch (SHIYU_KILL_AFTER=3: a rank SIGKILLs itself once its shard
    holds 3 lines, and torchrun stops the other), then the same command again: each rank
    resumes its shard, keeping the lines it holds, and the merged output is one process's
    line for line, with no shard left behind."""
    import os
    import subprocess
    import sys
    from tests.test_kill import TASKS, command
    root = Path(__file__).resolve().parents[1]
    model = request.getfixturevalue(f"{task}_model_dir")
    src = tmp_path / "items.txt"
    src.write_text("\n".join(TASKS[task][1] * 3) + "\n", encoding="utf-8")     # 12 items
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    subprocess.run(command(task, model, src, one), check=True, cwd=root, env=env,
                   capture_output=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2", *command(task, model, src, two)[1:]]
    killed = subprocess.run(torchrun, cwd=root, env={**env, "SHIYU_KILL_AFTER": "3"},
                            capture_output=True, text=True)
    assert killed.returncode != 0, killed.stderr[-2000:]
    shards = sorted(tmp_path.glob("two.jsonl.rank*-of-2"))
    held = {p: [x for x in p.read_bytes().split(b"\n") if x] for p in shards}
    assert 3 in [len(v) for v in held.values()] and max(len(v) for v in held.values()) == 3
    assert not two.exists() or two.read_bytes() == b""
    # a mark in a line a shard holds: the rerun keeps that line rather than writing it anew
    shard = next(p for p, v in held.items() if len(v) == 3)
    rows = [json.loads(x) for x in held[shard]]
    mark = rows[1]["index"]
    rows[1][next(k for k in rows[1] if k not in ("index", "input"))] = "kept from the shard"
    shard.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                     encoding="utf-8")
    again = subprocess.run(torchrun, cwd=root, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    got = two.read_text(encoding="utf-8").splitlines()
    want = one.read_text(encoding="utf-8").splitlines()
    assert len(got) == len(want) == 12
    assert [x for i, x in enumerate(got) if i != mark] == [x for i, x in enumerate(want)
                                                            if i != mark]
    assert "kept from the shard" in got[mark] and json.loads(got[mark])["index"] == mark
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.txt", "one.jsonl", "two.jsonl"]


def test_lines_that_python_cannot_read_fail_alone(tmp_path):
    """A number over Python's 4,300-digit limit or a lone surrogate escape used to refuse the
    whole file or stop the batch at that item on every rerun; now each fails alone and its
    output line echoes the line as it was."""
    lines = ['{"theme": "明月", "seed": 1' + "0" * 5000 + "}", '{"theme": "\\ud800明月"}',
             '{"\\udcff": 1}', "秋\u2028\x0c\x85夜", '{"theme": "春"}']
    rows = run(tmp_path, "\n".join(lines).encode("utf-8"))
    assert [r["index"] for r in rows] == list(range(5))
    assert "invalid JSON (Exceeds the limit (4300 digits)" in rows[0]["error"]
    assert "invalid character" in rows[1]["error"] and "invalid character" in rows[2]["error"]
    assert [r["input"] for r in rows[:3]] == lines[:3]
    assert rows[3]["results"] == ["秋\u2028\x0c\x85夜"] and rows[4]["results"] == ["春"]


def test_a_rerun_on_another_input_is_refused(tmp_path):
    """An output written for input A is never resumed for input B: it would keep A's
    results as B's first items."""
    src, out = tmp_path / "in.txt", tmp_path / "out.jsonl"

    def go(text):
        src.write_text(text, encoding="utf-8")
        return run_batch(read_items(src, "theme"), out, "results",
                         lambda i, it: (it["theme"], 0), lambda jobs: [[t] for t, _ in jobs],
                         known_keys={"theme"}, progress=False)
    go("明月\n秋夜\n春\n")
    before = out.read_bytes()
    with pytest.raises(ValueError, match="another input .*line 1"):
        go("江雪\n秋夜\n春\n冬\n")
    assert out.read_bytes() == before
    assert go("明月\n秋夜\n春\n冬\n")["resumed_after"] == 3          # the same input grown


@pytest.mark.parametrize("cli", ["chatbot", "poetry poem", "poetry tune"])
def test_cli_paths_that_cannot_be_read_or_written_exit_2(cli, tmp_path, chat_model_dir,
                                                         poem_model_dir, tune_model_dir):
    """--input a folder, --output a folder or under a file, --out-dir under /dev/null, a
    message that is not UTF-8: one line on stderr and exit status 2, never a traceback."""
    import subprocess
    import sys
    model = {"chatbot": chat_model_dir, "poetry poem": poem_model_dir,
             "poetry tune": tune_model_dir}[cli]
    src = tmp_path / "in.txt"
    src.write_text("6/8 Dmaj jig\n" if "tune" in cli else "明月\n", encoding="utf-8")
    (tmp_path / "file").write_text("x")
    cases = [["--input", str(tmp_path), "--output", str(tmp_path / "o.jsonl")],
             ["--input", str(src), "--output", str(tmp_path)],
             ["--input", str(src), "--output", str(tmp_path / "file" / "o.jsonl")]]
    if "tune" in cli:
        cases.append(["--meter", "6/8", "--key", "D", "--out-dir", "/dev/null/x"])
    if cli == "chatbot":
        cases.append(["--message", "hi \udcff"])       # as Python reads the byte 0xff
    for args in cases:
        p = subprocess.run([sys.executable, "-m", *cli.split(), "--model", str(model), *args],
                           capture_output=True, text=True, timeout=120, errors="replace",
                           cwd=Path(__file__).resolve().parents[1])
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.startswith("error: ") and "Traceback" not in p.stderr, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, (args, p.stderr)


def test_an_output_longer_than_its_input_is_refused_untouched(tmp_path):
    """A rerun resumes after the output's last line; an output with more lines than the input
    has items belongs to another input: refused with one line, and the file is left as it was."""
    run(tmp_path, "明月\n春\n秋\n".encode("utf-8"))           # out.jsonl: 3 lines
    src, out = tmp_path / "shorter.txt", tmp_path / "out.jsonl"
    src.write_text("明月\n春\n", encoding="utf-8")
    before = out.read_bytes()
    with pytest.raises(ValueError, match="has 3 lines but the input has only 2 items") as e:
        run_batch(read_items(src, "theme"), out, "results", lambda i, it: (it["theme"], 0),
                  lambda jobs: [[t] for t, _ in jobs], known_keys={"theme"}, progress=False)
    assert "\n" not in str(e.value) and out.read_bytes() == before


def test_lines_that_look_like_json_or_hold_no_text_fail_alone(tmp_path):
    """`[1,2`, a JSON list and a line of control characters are errors of their own lines, not
    messages for the bot; a plain line beside them is an item."""
    from shared.batch import read_items
    path = tmp_path / "items.txt"
    path.write_text('[1,2\n\x01\x02\x03\n["a"]\nhi there\n', encoding="utf-8")
    items = read_items(path, "message")
    assert [("_error" in i) for i in items] == [True, True, True, False]
    assert items[3] == {"message": "hi there"}
    assert "invalid JSON" in items[0]["_error"] and "line 1 column" in items[0]["_error"]
    assert items[1]["_error"] == "the line holds only control characters"
    assert "must be a JSON object" in items[2]["_error"]
