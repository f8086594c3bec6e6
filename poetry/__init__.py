"""Poems (poetry/poems/: 绝句, 律诗) and folk tunes (poetry/tunes/: ABC), each a task package with
the same files for the same jobs (format, data, rules, train, writer, cli, evaluate).
`python -m poetry poem|tune ...` runs either; `python -m poetry.evaluate poem|tune` evaluates."""
