"""Replies retrieved from training conversations: BM25 over the message each reply answered.

    index = Retrieval.build(pairs, tok)          # (message, reply) texts -> index
    index.save("retrieval.npz"); Retrieval.load("retrieval.npz")
    index.search("what kind of music do you like?", k=5)   # -> [(reply, bm25 score), ...]
    index.similarity("do you like jazz?", "jazz, mostly")  # TF-IDF cosine, for re-ranking

Terms are the chat model's SentencePiece pieces of the lower-cased text (one scheme for English
and Chinese). The index
is one .npz (loaded with allow_pickle=False): for each piece, the messages containing it and
their BM25 weights (k1 = 1.2, b = 0.75, Robertson idf), plus the reply texts as one UTF-8 blob.
Pieces in more than MAX_DF of the messages are left out (they weigh little and cost most).
"""
from __future__ import annotations

import collections
import math
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

K1, B = 1.2, 0.75
MAX_DF = 0.1


class Retrieval:
    def __init__(self, indptr: np.ndarray, docs: np.ndarray, weights: np.ndarray,
                 blob: bytes, offsets: np.ndarray, tokenizer):
        self.indptr, self.docs, self.weights = indptr, docs, weights
        self.blob, self.offsets, self.tok = blob, offsets, tokenizer

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def reply(self, i: int) -> str:
        return self.blob[self.offsets[i]:self.offsets[i + 1]].decode("utf-8")

    def terms(self, text: str) -> list[int]:
        return sorted(set(i for i in self.tok.encode(text.lower()) if i < len(self.indptr) - 1))

    @classmethod
    def build(cls, pairs: Sequence[tuple[str, str]], tokenizer) -> "Retrieval":
        """pairs: (message, reply) texts; duplicates of a (message, reply) pair count once."""
        pairs = list(dict.fromkeys((m, r) for m, r in pairs if m and r))
        V = tokenizer.vocab_size
        docs = [tokenizer.encode(m.lower()) for m, _ in pairs]
        lengths = np.array([len(d) for d in docs], dtype=np.float64)
        avg = lengths.mean() if len(docs) else 1.0
        postings: list[list[tuple[int, float]]] = [[] for _ in range(V)]
        for d, ids in enumerate(docs):
            counts: dict[int, int] = {}
            for i in ids:
                counts[i] = counts.get(i, 0) + 1
            norm = K1 * (1 - B + B * lengths[d] / avg)
            for i, tf in counts.items():
                postings[i].append((d, tf * (K1 + 1) / (tf + norm)))
        n = len(docs)
        indptr, all_docs, all_w = [0], [], []
        for i in range(V):
            p = postings[i]
            if p and len(p) <= max(MAX_DF * n, 1):
                idf = math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5))
                all_docs += [d for d, _ in p]
                all_w += [w * idf for _, w in p]
            indptr.append(len(all_docs))
        texts = [r.encode("utf-8") for _, r in pairs]
        offsets = np.cumsum([0] + [len(t) for t in texts]).astype(np.int64)
        return cls(np.array(indptr, dtype=np.int64), np.array(all_docs, dtype=np.int32),
                   np.array(all_w, dtype=np.float16), b"".join(texts), offsets, tokenizer)

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, indptr=self.indptr, docs=self.docs, weights=self.weights,
                            blob=np.frombuffer(self.blob, dtype=np.uint8), offsets=self.offsets)

    @classmethod
    def load(cls, path: str | Path, tokenizer) -> "Retrieval":
        with np.load(path, allow_pickle=False) as z:
            return cls(z["indptr"], z["docs"], z["weights"].astype(np.float32),
                       z["blob"].tobytes(), z["offsets"], tokenizer)

    @cached_property
    def idf(self) -> dict[int, float]:
        """Piece idf over the indexed messages (pieces left out of the index weigh 0)."""
        n = len(self)
        df = (self.indptr[1:] - self.indptr[:-1]).tolist()
        return {i: math.log(1 + n / (1 + d)) for i, d in enumerate(df) if d}

    def similarity(self, message: str, reply: str) -> float:
        """TF-IDF cosine of the two texts' lower-cased pieces (ConvAI2's IR baseline score):
        how much a reply is about what the message says."""
        idf = self.idf
        ca = collections.Counter(self.tok.encode(message.lower()))
        cb = collections.Counter(self.tok.encode(reply.lower()))
        dot = sum(ca[t] * cb[t] * idf.get(t, 0.0) ** 2 for t in ca if t in cb)
        na = math.sqrt(sum((v * idf.get(t, 0.0)) ** 2 for t, v in ca.items()))
        nb = math.sqrt(sum((v * idf.get(t, 0.0)) ** 2 for t, v in cb.items()))
        return dot / (na * nb) if na and nb else 0.0

    def search(self, message: str, k: int = 5) -> list[tuple[str, float]]:
        """The replies to the k training messages most like `message`, best first."""
        terms = self.terms(message)
        if not terms or not len(self):
            return []
        spans = [slice(self.indptr[t], self.indptr[t + 1]) for t in terms]
        scores = np.bincount(np.concatenate([self.docs[s] for s in spans]),
                             weights=np.concatenate([self.weights[s] for s in spans]),
                             minlength=len(self)).astype(np.float32)   # one pass, in C
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.reply(int(i)), float(scores[i])) for i in top if scores[i] > 0]


# Sources whose replies never enter an index: KdConv, whose text stays out of the repository,
# and Personality Chat, whose answers speak for a bot with no name ("I don't have a name")
NOT_INDEXED = frozenset({"kdconv", "personality"})


def build_for(data: Path, model_dir: Path, lang: str | None) -> Path:
    """A model folder's index from the prepared training conversations (every source but
    NOT_INDEXED; `lang`: one language only), written and listed in the folder's card."""
    from shared.checkpoint import add_files, load_model

    from . import data as chat_data
    from .format import MAX_TGT
    _, tok, _ = load_model(model_dir)
    train = chat_data.load_split("train", data)
    pairs = [(c["turns"][i - 1], c["turns"][i]) for c in train
             if c["source"] not in NOT_INDEXED and (lang is None or c["lang"] == lang)
             for i in range(1, len(c["turns"])) if len(tok.encode(c["turns"][i])) <= MAX_TGT]
    path = Path(model_dir) / "retrieval.npz"
    Retrieval.build(pairs, tok).save(path)
    add_files(model_dir, path.name)
    return path


def main(argv=None) -> int:
    import argparse
    import sys

    from . import data as chat_data
    ap = argparse.ArgumentParser(prog="python -m chatbot.retrieval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["build"])
    ap.add_argument("--data", type=Path, default=chat_data.OUT)
    ap.add_argument("--model", type=Path, required=True, help="the model folder it serves")
    ap.add_argument("--lang", choices=["en", "zh"], default=None,
                    help="index one language's conversations only")
    args = ap.parse_args(argv)
    path = build_for(args.data, args.model, args.lang)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
