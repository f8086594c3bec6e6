"""Classical Chinese poems (绝句, 律诗): theme + form -> poem, character level.

    format.py   form tokens and the source text (what training and generation share)
    verse.py    forms, rhyme groups (中华新韵), common readings, tones, 平仄 patterns, checks
    repetition.py  repetition in a poem: real-poem rates and the limits the rules take from them
    novelty.py  LineIndex: every Tang and Song line, hashed, for the novelty rule
    themes.py   theme classifier (evaluation) and theme associations (ranking)
    data.py     the corpus: npm chinese-poetry -> cache/poems splits  (python -m poetry.poems.data)
    rules.py    the poem constraint: lines, punctuation, acrostic, rhyme, tones, novelty, repetition
    train.py    train and export data/models/poem                     (python -m poetry.poems.train)
    writer.py   PoemWriter: load, write, stream, rank by score + theme relevance
    cli.py      python -m poetry poem ...
    evaluate.py held-out perplexity, rules on/off, speed             (python -m poetry.evaluate poem)
"""
from .writer import MAX_N, PoemWriter

__all__ = ["MAX_N", "PoemWriter"]
