import pytest

from shared.tokenizers import (BASE_SPECIALS, CharTokenizer, RegexTokenizer,
                               SentencePieceTokenizer, Tokenizer)

TEXTS = ["床前明月光，疑是地上霜。", "hello world, hello there", "The quick brown fox 🦊 jumps."]


def make(kind):
    if kind == "char":
        return CharTokenizer.train(TEXTS, specials=["<qijue>"])
    if kind == "regex":
        return RegexTokenizer.train(r"\w+|[^\w\s]|\s", TEXTS, specials=["<qijue>"])
    return SentencePieceTokenizer.train(TEXTS * 20, vocab_size=60, specials=["<qijue>"],
                                        character_coverage=1.0)


KINDS = ["char", "regex", "sentencepiece"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("text", TEXTS + ["", "🦊", "<qijue>hello"])
def test_round_trip_inside_vocabulary(kind, text):
    tok = make(kind)
    ids = tok.encode(text)
    assert tok.decode(ids, skip_specials=False) == text
    assert all(0 <= i < tok.vocab_size for i in ids)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_symbols_become_unk(kind):
    tok = make(kind)
    ids = tok.encode("龘😀")
    assert tok.unk_id in ids
    tok.decode(ids)   # never raises
    assert tok.decode([10**6, -5]) is not None


@pytest.mark.parametrize("kind", KINDS)
def test_specials_and_save_load(kind, tmp_path):
    tok = make(kind)
    assert tok.itos[:4] == list(BASE_SPECIALS)
    assert tok.encode("<qijue>") == [tok.special_id("<qijue>")]
    tok.save(tmp_path / "tok.json")
    back = Tokenizer.load(tmp_path / "tok.json")
    assert back.itos == tok.itos
    for text in TEXTS:
        assert back.encode(text) == tok.encode(text)


def test_special_id_rejects_plain_tokens():
    with pytest.raises(ValueError):
        make("char").special_id("床")


def test_bad_tokenizer_file(tmp_path):
    (tmp_path / "t.json").write_text('{"kind": "nope", "version": 1}')
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        Tokenizer.load(tmp_path / "t.json")
