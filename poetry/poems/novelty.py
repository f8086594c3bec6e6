"""Every 5- and 7-character line of the Tang and Song corpus, compactly, for the novelty rule.

A line is stored as (hash of all but its last character, its last character): a 26-bit
blake2b hash of the prefix and the last character (basic-block CJK, a 16-bit code point),
sorted by (hash, character). `completions(prefix)` is then two binary searches: the last
characters that would complete a corpus line. On disk (lines.npz.xz: an .npz of plain arrays,
xz-compressed, read without pickle) the hashes are deltas and the characters ranks by frequency:
about 2.3 bytes per line, 5.9 MB for the 2.56 M Tang and Song lines.

False positives: a prefix that no corpus line has matches a stored hash with probability
(distinct stored prefixes) / 2^26 — 2.5 M / 67 M, about 1 line ending in 27 — and then bans
the one or two last characters stored under that hash (of thousands allowed there): a rare,
harmless over-ban, the price of the size. Nothing is missed: a corpus line always matches.
"""
from __future__ import annotations

import hashlib
import io
import lzma
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np

from .format import prepared

HASH_BITS = 26


def prefix_hash(text: str) -> int:
    h = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=4).digest(), "little")
    return h >> (32 - HASH_BITS)


class LineIndex:
    def __init__(self, lines: Iterable[str] = ()):
        keys = {(prefix_hash(x[:-1]), ord(x[-1])) for x in (s.strip() for s in lines)
                if len(x) > 1 and ord(x[-1]) < 65536}
        arr = np.array(sorted(keys), dtype=np.int64).reshape(-1, 2)
        self.hashes = arr[:, 0].astype(np.uint32)       # (lines,) sorted prefix hashes
        self.last = arr[:, 1].astype(np.uint16)         # (lines,) last characters

    @classmethod
    def from_arrays(cls, hashes: np.ndarray, last: np.ndarray) -> "LineIndex":
        out = cls()
        out.hashes, out.last = hashes, last
        return out

    def save(self, path: str | Path) -> None:
        freq = Counter(self.last.tolist())
        chars = np.array(sorted(freq, key=lambda c: (-freq[c], c)), dtype=np.uint16)
        rank = np.zeros(65536, dtype=np.uint16)
        rank[chars] = np.arange(len(chars), dtype=np.uint16)
        deltas = np.diff(self.hashes.astype(np.int64), prepend=0)
        buf = io.BytesIO()
        np.savez(buf, deltas=deltas.astype(np.uint32), chars=chars, ranks=rank[self.last])
        Path(path).write_bytes(lzma.compress(buf.getvalue(), preset=9))

    @classmethod
    def load(cls, path: str | Path) -> "LineIndex":
        path = prepared(path)
        try:
            raw = lzma.decompress(path.read_bytes())
        except lzma.LZMAError as e:
            raise ValueError(f"{path} is damaged ({e}); rebuild it with `python -m "
                             f"poetry.poems.data prepare --force`") from None
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            hashes = np.cumsum(z["deltas"], dtype=np.uint64).astype(np.uint32)
            return cls.from_arrays(hashes, z["chars"][z["ranks"]])

    def __len__(self) -> int:
        return len(self.hashes)

    def completions(self, prefix: str) -> str:
        """Characters c such that prefix + c is a corpus line (up to hash collisions)."""
        h = np.uint32(prefix_hash(prefix))    # a Python int would make numpy convert the
        lo = int(self.hashes.searchsorted(h, "left"))   # whole array per call (~6 ms)
        hi = int(self.hashes.searchsorted(h, "right"))
        return "".join(map(chr, self.last[lo:hi].tolist()))

    def __contains__(self, line: str) -> bool:
        return len(line) > 1 and line[-1] in self.completions(line[:-1])
