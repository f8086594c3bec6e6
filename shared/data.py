"""A small layer over Hugging Face `datasets`: records or local JSONL/parquet in, a
DatasetDict with deterministic train/validation/test splits out, tokenization cached on disk.

Nothing here needs a network: `load(path)` reads local files; `load(name)` with a hub dataset
name goes through the same `datasets.load_dataset` call for users who have a hub connection.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import datasets

SPLITS = ("train", "validation", "test")


def split_of(key: str, percents: Sequence[int] = (96, 2, 2)) -> str:
    """Stable split by sha1 of a key: its first 8 hex digits mod 100 against the train /
    validation / test percentages. The same item lands in the same split on every machine,
    whatever the corpus order. Key by what must not leak (a conversation, a poem's opening)."""
    if len(percents) != 3 or sum(percents) != 100 or min(percents) < 0:
        raise ValueError(f"split percentages must be three whole numbers summing to 100, "
                         f"got {tuple(percents)}")
    bucket = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if bucket < percents[0] else "validation" \
        if bucket < percents[0] + percents[1] else "test"


def make_splits(records: Iterable[dict], key: Callable[[dict], str],
                percents: Sequence[int] = (96, 2, 2)) -> datasets.DatasetDict:
    parts: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for r in records:
        parts[split_of(key(r), percents)].append(r)
    if not parts["train"]:
        raise ValueError("no records: the dataset is empty")
    return datasets.DatasetDict({s: datasets.Dataset.from_list(v) for s, v in parts.items()})


def load(source: str | Path) -> datasets.DatasetDict:
    """A folder or file of JSONL/parquet (`train.*`, `validation.*`, `test.*`), or a hub name."""
    path = Path(source)
    if path.is_file():
        fmt = "parquet" if path.suffix == ".parquet" else "json"
        return datasets.load_dataset(fmt, data_files={"train": str(path)})
    if path.is_dir():
        files = {}
        for split in SPLITS:
            found = sorted(path.glob(f"{split}.jsonl")) + sorted(path.glob(f"{split}.parquet"))
            if found:
                files[split] = str(found[0])
        if not files:
            raise ValueError(f"{path} holds no train/validation/test .jsonl or .parquet files")
        fmt = "parquet" if files[next(iter(files))].endswith(".parquet") else "json"
        return datasets.load_dataset(fmt, data_files=files)
    if "/" not in str(source) or str(source).startswith((".", "/")):
        raise ValueError(f"{source}: no such file or folder")
    return datasets.load_dataset(str(source))          # a hub dataset, for users with a hub


def tokenize(ds: datasets.Dataset, fn: Callable[[dict], dict], cache_dir: str | Path,
             fingerprint: str, batched: bool = False) -> datasets.Dataset:
    """`ds.map(fn)` cached under `cache_dir`, keyed by `fingerprint` (e.g. the tokenizer's
    sha256) so a changed tokenizer never reuses stale ids. `batched=True`: `fn` takes a batch
    of columns and may return more or fewer rows (the input columns are dropped)."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(f"{ds._fingerprint}:{fingerprint}:{batched}".encode()).hexdigest()[:16]
    extra = {"batched": True, "remove_columns": ds.column_names} if batched else {}
    return ds.map(fn, cache_file_name=str(cache / f"tok-{key}.arrow"), new_fingerprint=key,
                  desc="tokenizing", **extra)


def records(batch: dict[str, list]) -> list[dict]:
    """A batch of columns (what `Dataset.map(batched=True)` passes) as a list of rows."""
    return [dict(zip(batch, row)) for row in zip(*batch.values())]


def write_text(path: str | Path, text: str) -> None:
    """Write atomically (a temporary file of its own, then a rename): no torn file after a
    crash, nor when two processes write the same path at once (the last rename wins)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)                       # mkstemp's 0600 is not what a file gets
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | Path, prepare: str) -> list[dict]:
    """Records of a prepared JSONL file; `prepare` is the command that writes it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run `{prepare}`")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
