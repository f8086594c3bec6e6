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
    return [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]


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
    used to kill the whole poem batch with a traceback. A line that is JSON but no object is
    plain text, a theme, as any other line (["明月"] has 明月 in it; true has no Chinese)."""
    from poetry.poems import PoemWriter
    from poetry.poems.cli import batch
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(['{"theme": 123}', '["明月"]', '{"a": 1}', "true",
                              '{"theme": "明月", "form": ["wujue"]}', '{"theme": "明月"}']),
                   encoding="utf-8")
    batch(PoemWriter.load(poem_model_dir), src, out, form="wujue", progress=False)
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["index"] for r in rows] == list(range(6))
    assert [("error" in r) for r in rows] == [True, False, True, True, True, False]
    assert "must be text" in rows[0]["error"] and "unknown form" in rows[4]["error"]


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
