"""The Models tab: every model's card (/model_info), as one table of facts a column per model,
and its training curves (validation perplexity per epoch, gradient norm per step)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from chatbot.bot import Bot
from server import handlers      # handlers.model_dirs(), read at each call


def _card(task: str) -> dict:
    """The task's model card (card.json in its model folder), or an error where it has none."""
    p = Path(handlers.model_dirs()[task] or handlers.WRITERS[task].default_dir()) / "card.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else \
        {"error": f"{p} is missing"}


def model_info():
    """Every shipped model's card; the Chinese chat bot's (chat-zh, beside chat) after chat's."""
    cards = {}
    for task in handlers.WRITERS:
        cards[task] = _card(task)
        if task == "chat":
            zh = Bot.zh_dir(Path(handlers.model_dirs()[task] or Bot.default_dir())) / "card.json"
            if zh.exists():
                cards["chat (Chinese)"] = json.loads(zh.read_text(encoding="utf-8"))
    return cards


SCROLL_HINT = "The table is wider than the screen: swipe it sideways to see every model →"


def _count(n, word: str) -> str:
    """1 epoch, 2 epochs, 1,870 steps; ? where the card does not say."""
    if not isinstance(n, int):
        return f"? {word}s"
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _training(card: dict) -> str:
    """How long the model trained: the epochs its curve has (early stopping can end training
    before the epochs asked for, which are then named too), steps, batch, time, machine."""
    t, history = card.get("train", {}), card.get("history") or []
    planned = t.get("epochs")
    done = len(history) or planned
    epochs = _count(done, "epoch")
    if isinstance(planned, int) and history and done < planned:
        epochs += f" (stopped early; {planned} planned)"
    if card.get("fine_tuned_from"):
        epochs += " of fine-tuning"
    steps = card.get("steps")
    minutes = card.get("train_wall_time_min")
    hardware = re.sub(r"\b(\d+) torch thread\(s\)",
                      lambda m: _count(int(m.group(1)), "torch thread"), card.get("hardware", ""))
    done = (f"{epochs}, {_count(steps, 'step')} of {t.get('batch_size', '?')}, "
            f"{'?' if minutes is None else minutes} min")
    return f"{done}; {hardware}" if hardware else done


def _rebuild(card: dict) -> str:
    """The command that rebuilds the model."""
    command = card.get("rebuild") or (f"python -m shared.recipe run {card['recipe']}"
                                      if card.get("recipe") else "")
    return f"`{command}`" if command else ""


def _provenance(card: dict) -> str:
    """The card's word on where the weights came from (its recipe's run, or a longer road, so
    that the recipe gives a model of the same design), less any aside naming a card field
    (snake_case: "fine_tuned_from names the run ...")."""
    return re.sub(r"\s*\([^()]*\b[a-z]+_[a-z_]+\b[^()]*\)", "", str(card.get("provenance", "")))


def _facts(card: dict) -> dict[str, str]:
    """A model card's facts, as the rows of the Models table show them."""
    if "error" in card:
        return {"corpus": card["error"]}
    m = card.get("model", {})
    val = card.get("validation", {})
    facts = {
        "corpus": card.get("corpus", ""),
        "how it works": card.get("source", ""),
        "network": f"{m.get('cell', '?').upper()} seq2seq, emb {m.get('emb_dim')}, hidden "
                   f"{m.get('hidden')}, {m.get('enc_layers')}-layer "
                   f"{'bidirectional ' if m.get('bidirectional') else ''}encoder, "
                   f"{m.get('dec_layers')}-layer decoder, vocabulary {m.get('tgt_vocab')}",
        "parameters": f"{card.get('parameters', 0):,} ({card.get('weights_dtype', '')})",
        "training": _training(card),
        "validation perplexity": f"{val.get('ppl', float('nan')):.1f} per token",
        "rebuild": _rebuild(card),
        "provenance": _provenance(card)}
    return {row: text for row, text in facts.items() if text or row != "provenance"}


def models_table(cards: dict) -> str:
    """Every model card in one readable table: a column per model, a row per fact (what it
    learned from, its size, how well it does, how to rebuild it)."""
    facts = {task: _facts(card) for task, card in cards.items()}
    rows = dict.fromkeys(k for f in facts.values() for k in f)

    def cell(x: str) -> str:       # a card's text, never markup: <form> stays visible
        return x.replace("|", "/").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")
    head = "| | " + " | ".join(f"**{t}**" for t in facts) + " |\n|---" + "|---" * len(facts) + "|"
    body = "\n".join(f"| {r} | " + " | ".join(cell(f.get(r, "")) for f in facts.values()) + " |"
                     for r in rows)
    return f"{head}\n{body}"


def curves(cards: dict) -> tuple:
    """Validation perplexity per epoch and the gradient norm before clipping per step, of
    every model whose card has them, as data frames for gr.LinePlot."""
    import pandas as pd
    val = [{"epoch": r["epoch"] + 1, "perplexity": r["val_ppl"], "model": task}
           for task, c in cards.items() for r in c.get("history", []) if "val_ppl" in r]
    grad = [{"step": r["step"], "gradient norm": r["grad_norm"], "model": task}
            for task, c in cards.items() for r in c.get("curve", []) if "grad_norm" in r]
    return (pd.DataFrame(val, columns=["epoch", "perplexity", "model"]),
            pd.DataFrame(grad, columns=["step", "gradient norm", "model"]))

