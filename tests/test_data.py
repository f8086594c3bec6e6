import json

import pytest

from shared.data import load, make_splits, split_of, tokenize
from shared.tokenizers import CharTokenizer

RECORDS = [{"id": f"c{i}", "text": "春眠不觉晓"[: 1 + i % 5]} for i in range(400)]


def test_split_is_stable_and_roughly_proportional():
    assert split_of("abc") == split_of("abc")
    ds = make_splits(RECORDS, key=lambda r: r["id"], percents=(80, 10, 10))
    ds_again = make_splits(reversed(RECORDS), key=lambda r: r["id"], percents=(80, 10, 10))
    assert sorted(ds["test"]["id"]) == sorted(ds_again["test"]["id"])
    assert 280 < len(ds["train"]) < 360
    assert not set(ds["train"]["id"]) & set(ds["test"]["id"])


def test_bad_input():
    with pytest.raises(ValueError, match="empty"):
        make_splits([], key=str)
    with pytest.raises(ValueError, match="sum"):
        split_of("x", (50, 50, 50))
    with pytest.raises(ValueError, match="no such file"):
        load("./does-not-exist")


def test_local_folder_loads_through_the_hub_call_and_tokenization_is_cached(tmp_path):
    for split in ("train", "validation", "test"):
        (tmp_path / f"{split}.jsonl").write_text(
            "\n".join(json.dumps(r, ensure_ascii=False) for r in RECORDS[:20]))
    ds = load(tmp_path)
    assert set(ds) == {"train", "validation", "test"} and len(ds["train"]) == 20
    tok = CharTokenizer.train(r["text"] for r in RECORDS)
    fn = lambda r: {"ids": tok.encode(r["text"])}
    out = tokenize(ds["train"], fn, tmp_path / "cache", fingerprint="v1")
    assert out[3]["ids"] == tok.encode(RECORDS[3]["text"])
    assert list((tmp_path / "cache").glob("tok-*.arrow"))
    again = tokenize(ds["train"], fn, tmp_path / "cache", fingerprint="v1")
    assert again["ids"] == out["ids"]
