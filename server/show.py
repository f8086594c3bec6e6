"""How the page shows results: a poem's title and verses (the text that is copied and saved),
and the details beside the text: a poem's plan, score and rules that gave way, a tune's
rhythm, form and score."""
from __future__ import annotations

import html

from poetry.poems.rules import RULES
from poetry.poems.verse import get_form, is_cjk


def poem_title(theme, poem: dict) -> str:
    """A poem's title line, 明月 · 七绝: the theme's Chinese characters as given (the writer
    reads at most its first 10, and says so; the title keeps the whole theme), else the
    writer's theme."""
    given = "".join(c for c in str(theme or "") if is_cjk(c))
    return f"{given or poem['theme']} · {get_form(poem['form']).zh}"


def poem_text(title: str, text: str) -> str:
    """The title line, then one verse a line: the poem as the page shows it, copies and saves
    it (poems.txt), whole or as far as it is written."""
    for mark in "，。":
        text = text.replace(mark, mark + "\n")
    return f"{title}\n{text.rstrip()}"


def _lines(numbers: list[int]) -> str:
    return ("line " if len(numbers) == 1 else "lines ") + ", ".join(map(str, numbers))


def poem_details(poems: list[dict], said: list[str]) -> str:
    """What is known about each poem, under it: its plan (keywords), its score and each rule
    that gave way, by line; then the writer's notes about the request."""
    out = []
    for i, p in enumerate(poems, 1):
        facts = [f"关键词 {' '.join(p['keywords'])}"] if p.get("keywords") else []
        facts.append(f"score {p['score']:.3f}")
        head = f"**Poem {i}**: " if len(poems) > 1 else ""
        out.append(head + " · ".join(facts))
        gave = {}
        for rule, line in p.get("relaxed", []):
            gave.setdefault(rule, []).append(line)
        out += [f"⚠ {RULES[rule]} gave way in {_lines(at)}: no character there kept every "
                f"rule" for rule, at in gave.items()]
    out += [f"⚠ {m}" for m in said]
    return "\n\n".join(out)


def tune_details(i: int, tune: dict, n: int) -> str:
    """The line above tune i's score (of n): its number where there are several, its rhythm,
    form and score, and which one the player plays."""
    name = f"<b>Tune {i}</b> · " if n > 1 else ""
    heard = " · the one you hear" if n > 1 and i == 1 else ""
    form = "free form" if tune["form"] == "free" else tune["form"]
    return (f"<p>{name}{html.escape(tune['rhythm'])} · {html.escape(form)} · "
            f"score {tune['score']:.3f}{heard}</p>")
