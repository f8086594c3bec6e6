"""Classical Chinese poems (绝句, 律诗): theme + form -> poem, character level.

    format.py   form tokens and the source text (what training and generation share)
    verse.py    forms, rhyme groups (中华新韵), tones, 平仄 patterns, checks
    data.py     the corpus: npm chinese-poetry -> cache/poems splits  (python -m poetry.poems.data)
    rules.py    the poem constraint: lines, punctuation, acrostic, rhyme, tones, novelty
    train.py    train and export data/models/poem                     (python -m poetry.poems.train)
    writer.py   PoemWriter: load, write, stream
    cli.py      python -m poetry poem ...
    evaluate.py held-out perplexity, rules on/off, speed             (python -m poetry.evaluate poem)
"""
from .writer import MAX_N, PoemWriter

__all__ = ["MAX_N", "PoemWriter"]
