"""The project's batch convention, shared by every task's CLI.

Input: one item per line — plain text (the main field, e.g. a theme) or a JSON object with
per-item options. Output: JSONL, exactly one line per input item, in input order:
    {"index": i, "input": <item>, "<results key>": [...]}   or   {"index": i, "input": ..., "error": "..."}
Item i is generated with `item_seed(item, seed, i)`, so the output does not depend on
chunking, resuming or sharding. A rerun resumes after the last complete line; a
torn last line (a kill mid-write) is cut off and redone. Nothing is lost or written twice.

Under `torchrun` (RANK / WORLD_SIZE set) the items are sharded: rank r takes items i with
i % WORLD_SIZE == r and writes them to `OUTPUT.rank<r>-of-<W>` (resumable the same way); after a
barrier rank 0 appends them to OUTPUT in input order and removes the shards, so the output is
the one process's, line for line.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm import tqdm

from .cli import check_strings
from .decoding import derive_seed


def read_lines(path: str | Path) -> list[str]:
    """The file's lines that hold anything, as the batch reads them: split at line ends (\\n,
    \\r\\n or \\r) only, never at U+2028, \\x0c or \\x85 inside an item; a UTF-8 byte-order mark
    is ignored; a file that is not UTF-8 text is a ValueError."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{Path(path).name} is not UTF-8 text (byte {e.start}): give one item per "
                         f"line, plain text or JSON") from None
    return [raw for raw in text.split("\n") if raw]


def read_items(path: str | Path, text_field: str) -> list[dict]:
    """Each line that is not empty -> one item (a line of only spaces is an item too, which
    fails alone: one output line per input line that holds anything). A plain line becomes
    {text_field: line}; one that starts with { or [ must be a JSON object, and one that does
    not parse, is not an object, nests too deep, holds a number too long to read or text that
    is not valid Unicode (a lone surrogate escape), like a line of control characters only, is
    kept as {"_error": ..., "_raw": line} so that item alone fails, its output line echoing the
    line as it was."""
    items = []
    for raw in read_lines(path):
        line = raw.strip().lstrip("\ufeff")
        if not line:
            items.append({"_error": "the line is blank", "_raw": raw})
        elif line.startswith(("{", "[")):
            items.append(_parse(line))
        elif not any(c.isprintable() and not c.isspace() for c in line):
            items.append({"_error": "the line holds only control characters", "_raw": raw})
        else:
            items.append({text_field: line})
    return items


def _parse(line: str) -> dict:
    try:
        obj = json.loads(line)
    except RecursionError:
        return {"_error": "JSON nested too deep", "_raw": line}
    except ValueError as e:      # JSONDecodeError, or a number over Python's digit limit
        why = str(e) if isinstance(e, json.JSONDecodeError) else str(e).split(";")[0]
        return {"_error": f"invalid JSON ({why})", "_raw": line}
    if not isinstance(obj, dict):
        return {"_error": "a line that starts with { or [ must be a JSON object, {...}",
                "_raw": line}
    try:
        check_strings(obj, "the item")
    except ValueError as e:
        return {"_error": str(e), "_raw": line}
    return obj


def echo(item: dict):
    """What an output line stores as the item's "input": the item, or a bad line as it was."""
    return item["_raw"] if "_error" in item else item


def completed_lines(path: Path) -> int:
    """Count complete lines of `path`, truncating a torn (unterminated or unparsable) tail."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    lines = data[:keep].splitlines()
    while lines:                      # a line cut inside a multi-byte char or JSON is dropped
        try:
            json.loads(lines[-1])
            break
        except (json.JSONDecodeError, UnicodeDecodeError):
            keep -= len(lines.pop()) + 1
    if keep != len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)
    return len(lines)


def item_seed(item: dict, seed: int, i: int) -> int:
    """Item i's seed: its own `seed` if it has one, else derived from (run seed, i), so that
    batching, resuming and sharding cannot change what item i gets."""
    if "seed" not in item:
        return derive_seed(seed, i)
    own = item["seed"]
    if not isinstance(own, int) or isinstance(own, bool):
        raise ValueError(f"the item's seed must be a whole number, got {own!r}")
    return derive_seed(own, 0)


def shard() -> tuple[int, int]:
    """(rank, world size) under torchrun, else (0, 1)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def shard_path(output: Path, rank: int, world: int) -> Path:
    return output.with_name(f"{output.name}.rank{rank}-of-{world}")


def _lines_by_index(path: Path) -> dict[int, bytes]:
    """A shard's complete lines by item index (a torn tail is cut off first). Split at b"\\n"
    only: an item may hold U+2028 or \\x85, which str.splitlines would break on."""
    if completed_lines(path) == 0:
        return {}
    return {json.loads(x)["index"]: x for x in path.read_bytes().split(b"\n") if x}


def run_batch(items: Sequence[dict], output: str | Path, key: str,
              make_job: Callable[[int, dict], Any], generate: Callable[[list], list],
              known_keys: set[str], finish: Callable[[int, Any], Any] = lambda i, r: r,
              chunk: int = 16, progress: bool = True) -> dict:
    """Process `items[i]` for every i not yet in `output`, `chunk` items at a time:
    `make_job(i, item)` validates one item (a ValueError or TypeError fails that item alone),
    `generate(jobs)` runs all valid jobs of the chunk in one batched call, and
    `finish(i, result)` turns a result into what the output line stores under `key`.
    Under torchrun each rank does its share (see the module's doc)."""
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = completed_lines(out)
    if done > len(items):
        raise ValueError(f"{out} has {done} lines but the input has only {len(items)} items; "
                         f"is it the output of another input?")
    _check_resumable(out, items, done)
    rank, world = shard()
    todo, dest = list(range(done, len(items))), out
    if world > 1:
        _join()                                   # every rank in the group from the start
        dest = shard_path(out, rank, world)
        have = _lines_by_index(dest)
        todo = [i for i in todo if i % world == rank and i not in have]
    errors = 0
    bar = tqdm(total=len(items), initial=len(items) - len(todo), unit="item",
               disable=not progress or rank > 0)
    # SHIYU_KILL_AFTER=k (tests/test_kill.py): SIGKILL this process right after the file it
    # writes (the output, or this rank's shard) holds k lines, for a kill at a known point
    kill_after = int(os.environ.get("SHIYU_KILL_AFTER") or 0)
    held = done if world == 1 else len(have)
    with open(dest, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), chunk):
            batch = [(i, items[i]) for i in todo[start:start + chunk]]
            results: list = [None] * len(batch)
            jobs, where = [], []
            for k, (i, item) in enumerate(batch):
                try:
                    if "_error" in item:
                        raise ValueError(item["_error"])
                    unknown = set(item) - known_keys
                    if unknown:
                        raise ValueError(f"unknown item keys {sorted(unknown)}; "
                                         f"known: {sorted(known_keys)}")
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")   # per-item repairs: not worth a line
                        jobs.append(make_job(i, item))
                    where.append(k)
                except (ValueError, TypeError) as e:
                    results[k] = ValueError(str(e))
            for k, res in zip(where, generate(jobs) if jobs else []):
                results[k] = finish(batch[k][0], res)
            for (i, item), res in zip(batch, results):
                rec = {"index": i, "input": echo(item)}
                if isinstance(res, Exception):
                    rec["error"] = str(res)
                    errors += 1
                else:
                    rec[key] = res
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                held += 1
                if held == kill_after:
                    f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
            f.flush()
            os.fsync(f.fileno())
            bar.update(len(batch))
    bar.close()
    if world > 1:
        _merge(out, items, rank, world)
    print(f"wrote {out}: {len(items)} items ({errors} with errors), resumed after {done}"
          + (f" (rank {rank} of {world})" if world > 1 else ""), file=sys.stderr)
    return {"items": len(items), "resumed_after": done, "errors": errors}


def _check_resumable(out: Path, items: Sequence[dict], done: int) -> None:
    """A rerun resumes only the output of this input: each stored line's index and input must
    be the item's, else the run stops before writing (it would keep another input's results)."""
    if not done:
        return
    with open(out, "rb") as f:
        for i, line in zip(range(done), f):
            rec = json.loads(line)
            if not isinstance(rec, dict) or rec.get("index") != i or \
                    rec.get("input") != echo(items[i]):
                raise ValueError(f"{out} holds the results of another input (its line {i + 1} "
                                 f"is not item {i}'s); give another --output, or delete it to "
                                 f"start over")


def _join() -> None:
    """The ranks' process group for the merge: gloo, whatever the device (the batch never
    puts a rank on a GPU of its own), with a day's timeout (shards may end far apart)."""
    import datetime
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=1))


def _merge(out: Path, items: Sequence[dict], rank: int, world: int) -> None:
    """After every rank's shard is complete, rank 0 appends them to `out` in input order."""
    import torch.distributed as dist
    dist.barrier()
    if rank == 0:
        shards = [shard_path(out, r, world) for r in range(world)]
        lines: dict[int, bytes] = {}
        for path in shards:
            lines.update(_lines_by_index(path))
        done = completed_lines(out)               # as every rank saw it: no one else writes it
        missing = [i for i in range(done, len(items)) if i not in lines]
        if missing:
            raise RuntimeError(f"items {missing[:5]} are in no shard of {out}")
        stale = [i for i in range(done, len(items))
                 if json.loads(lines[i])["input"] != echo(items[i])]
        if stale:
            raise ValueError(f"the shards of {out} hold other items than the input (item "
                             f"{stale[0]}): delete {out.name}.rank*-of-{world} and run again")
        with open(out, "ab") as f:
            for i in range(done, len(items)):
                f.write(lines[i] + b"\n")
            f.flush()
            os.fsync(f.fileno())
        for path in shards:
            path.unlink()
    dist.barrier()
