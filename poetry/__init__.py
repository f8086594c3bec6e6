"""Poems (绝句, 律诗) and folk tunes: corpora, rules as decoding constraints, writers, CLIs."""
