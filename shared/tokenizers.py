"""Tokenizers with one interface: encode / decode / specials / vocab_size / save / load.

* `CharTokenizer`   — one token per character (poems).
* `SentencePieceTokenizer` — a unigram/BPE model trained from an iterator of texts (chat).
* `RegexTokenizer`  — tokens are the matches of a task-defined regular expression (tunes).

Every tokenizer reserves the same four ids: <pad>=0, <unk>=1, <bos>=2, <eos>=3, followed by the
task's extra special tokens (e.g. `<qijue>`), which are recognised verbatim inside text.
Symbols outside the vocabulary become <unk>; nothing raises on odd input.
Saved as JSON (SentencePiece's model proto is stored base64-encoded), never pickled.
"""
from __future__ import annotations

import base64
import collections
import hashlib
import json
import re
from pathlib import Path
from typing import Iterable

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
BASE_SPECIALS = (PAD, UNK, BOS, EOS)
FORMAT_VERSION = 1


class Tokenizer:
    """Shared machinery: special tokens, an id table, JSON save/load."""

    kind = "base"

    def __init__(self, tokens: list[str], specials: Iterable[str] = ()):
        specials = list(BASE_SPECIALS) + [s for s in specials if s not in BASE_SPECIALS]
        self.specials = specials
        self.itos: list[str] = specials + [t for t in tokens if t not in specials]
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        extra = sorted(specials[len(BASE_SPECIALS):], key=len, reverse=True)
        # Splits text around user specials so "<qijue>明月" encodes as [<qijue>, 明, 月].
        self._special_re = re.compile("(" + "|".join(map(re.escape, extra)) + ")") if extra else None

    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def special_id(self, token: str) -> int:
        if token not in self.stoi or token not in self.specials:
            raise ValueError(f"{token!r} is not a special token of this tokenizer")
        return self.stoi[token]

    # -- subclasses implement these two on plain text (no specials inside) -------------------
    def _encode_plain(self, text: str) -> list[int]:
        raise NotImplementedError

    def _decode_plain(self, ids: list[int]) -> str:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        if self._special_re is None:
            return self._encode_plain(text)
        ids: list[int] = []
        for part in self._special_re.split(text):
            if part in self.stoi and part in self.specials:
                ids.append(self.stoi[part])
            elif part:
                ids.extend(self._encode_plain(part))
        return ids

    def decode(self, ids: Iterable[int], skip_specials: bool = True) -> str:
        out, run = [], []
        for i in ids:
            i = int(i)
            if i < 0 or i >= len(self.itos):
                i = self.unk_id
            if i in (self.pad_id, self.bos_id, self.eos_id) or (
                    self.itos[i] in self.specials and i != self.unk_id):
                if not skip_specials:
                    out.append(self._decode_plain(run)) if run else None
                    run = []
                    out.append(self.itos[i])
                continue
            run.append(i)
        if run:
            out.append(self._decode_plain(run))
        return "".join(out)

    # -- persistence -----------------------------------------------------------------------
    def _payload(self) -> dict:
        return {}

    def to_json(self) -> dict:
        return {"kind": self.kind, "version": FORMAT_VERSION, "specials": self.specials,
                "itos": self.itos, **self._payload()}

    def fingerprint(self) -> str:
        """sha256 of the saved form: equal tokenizers, equal fingerprints (cache keys)."""
        text = json.dumps(self.to_json(), ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=0),
                              encoding="utf-8")

    @staticmethod
    def from_json(data: dict) -> "Tokenizer":
        kinds = {c.kind: c for c in (CharTokenizer, SentencePieceTokenizer, RegexTokenizer)}
        if data.get("kind") not in kinds:
            raise ValueError(f"unknown tokenizer kind {data.get('kind')!r}")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"tokenizer format version {data.get('version')} is not supported")
        return kinds[data["kind"]]._from_json(data)

    @staticmethod
    def load(path: str | Path) -> "Tokenizer":
        return Tokenizer.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


class CharTokenizer(Tokenizer):
    kind = "char"

    @classmethod
    def train(cls, texts: Iterable[str], specials: Iterable[str] = (), min_freq: int = 1,
              max_size: int | None = None) -> "CharTokenizer":
        """Vocabulary = characters seen at least `min_freq` times, most frequent first."""
        counts = collections.Counter()
        for text in texts:
            counts.update(text)
        chars = [c for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                 if n >= min_freq]
        return cls(chars[:max_size] if max_size else chars, specials)

    def _encode_plain(self, text: str) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        return [get(c, unk) for c in text]

    def _decode_plain(self, ids: list[int]) -> str:
        return "".join(self.itos[i] for i in ids)

    @classmethod
    def _from_json(cls, data: dict) -> "CharTokenizer":
        n = len(data["specials"])
        return cls(data["itos"][n:], data["specials"][len(BASE_SPECIALS):])


class RegexTokenizer(Tokenizer):
    """Tokens are the non-overlapping matches of `pattern`; text between matches is <unk>."""

    kind = "regex"

    def __init__(self, pattern: str, tokens: list[str], specials: Iterable[str] = ()):
        super().__init__(tokens, specials)
        self.pattern = pattern
        self._re = re.compile(pattern)

    @classmethod
    def train(cls, pattern: str, texts: Iterable[str], specials: Iterable[str] = (),
              min_freq: int = 1) -> "RegexTokenizer":
        rx = re.compile(pattern)
        counts = collections.Counter()
        for text in texts:
            counts.update(rx.findall(text))
        toks = [t for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                if n >= min_freq]
        return cls(pattern, toks, specials)

    def split(self, text: str) -> list[str]:
        """Matches of the pattern, with any unmatched stretch kept as one piece."""
        pieces, pos = [], 0
        for m in self._re.finditer(text):
            if m.start() > pos:
                pieces.append(text[pos:m.start()])
            if m.end() > m.start():
                pieces.append(m.group())
            pos = m.end()
        if pos < len(text):
            pieces.append(text[pos:])
        return pieces

    def _encode_plain(self, text: str) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        return [get(p, unk) for p in self.split(text)]

    def _decode_plain(self, ids: list[int]) -> str:
        return "".join(self.itos[i] for i in ids)

    def _payload(self) -> dict:
        return {"pattern": self.pattern}

    @classmethod
    def _from_json(cls, data: dict) -> "RegexTokenizer":
        n = len(data["specials"])
        return cls(data["pattern"], data["itos"][n:], data["specials"][len(BASE_SPECIALS):])


class SentencePieceTokenizer(Tokenizer):
    """Wraps a SentencePiece model; our ids = 4 base specials + extras + SentencePiece pieces."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, specials: Iterable[str] = ()):
        import sentencepiece as spm
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self._proto = model_proto
        pieces = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
        super().__init__(pieces, specials)
        # SentencePiece's own <unk>/<s>/</s> ids map onto ours by piece name.
        self._sp_to_ours = [self.stoi.get(p, self.unk_id) for p in pieces]
        self._sp_to_ours[self._sp.unk_id()] = self.unk_id
        self._ours_to_sp = {o: s for s, o in enumerate(self._sp_to_ours)}

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, specials: Iterable[str] = (),
              model_type: str = "unigram", character_coverage: float = 0.9995
              ) -> "SentencePieceTokenizer":
        import io

        import sentencepiece as spm
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=(t for t in texts if t), model_writer=buf,
            vocab_size=vocab_size, model_type=model_type, character_coverage=character_coverage,
            pad_id=-1, bos_id=-1, eos_id=-1, unk_id=0, hard_vocab_limit=False,
            byte_fallback=False, normalization_rule_name="identity", minloglevel=2)
        return cls(buf.getvalue(), specials)

    def _encode_plain(self, text: str) -> list[int]:
        return [self._sp_to_ours[i] for i in self._sp.encode(text)]

    def _decode_plain(self, ids: list[int]) -> str:
        unk = self._sp.unk_id()
        return self._sp.decode([self._ours_to_sp.get(i, unk) for i in ids])

    def _payload(self) -> dict:
        return {"model_proto": base64.b64encode(self._proto).decode("ascii")}

    @classmethod
    def _from_json(cls, data: dict) -> "SentencePieceTokenizer":
        return cls(base64.b64decode(data["model_proto"]),
                   data["specials"][len(BASE_SPECIALS):])
