"""A model folder's README.md, written from its card.json for a reader (Hugging Face's model
card sections: what it is, intended use, training data and licences, size, training,
evaluation, limitations, how to rebuild it).

    python -m shared.modelcard data/models/tune      # (re)write data/models/tune/README.md
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVAL = {"chat": "chat", "chat-backward": "chat", "tune": "tune", "poem": "poem"}


def render(card: dict, folder_name: str) -> str:
    m, t = card.get("model", {}), card.get("train", {})
    val = card.get("validation", {})
    lines = [f"# {folder_name}", "", card.get("about", f"The {card.get('task', '')} model."), ""]
    if card.get("use"):
        lines += ["## Intended use", "", card["use"], ""]
    lines += ["## Training data and licences", "", card.get("corpus", ""), ""]
    lines += [f"- {x}" for x in card.get("data_licences", [])] + [""]
    enc = f"{m.get('enc_layers')}-layer {'bidirectional ' if m.get('bidirectional') else ''}"
    lines += ["## Model", "",
              f"{str(m.get('cell', '?')).upper()} encoder-decoder without attention: {enc}"
              f"encoder, {m.get('dec_layers')}-layer decoder, embeddings {m.get('emb_dim')}, "
              f"hidden {m.get('hidden')}, vocabulary {m.get('tgt_vocab')}; "
              f"{card.get('parameters', 0):,} parameters, stored as "
              f"{card.get('weights_dtype', 'float32')}.", ""]
    if card.get("source"):
        lines += [f"Input and output: {card['source']}.", ""]
    history = card.get("history", [])
    epochs = len(history) or t.get("epochs")
    lines += ["## Training", "",
              f"{epochs} epoch(s), {card.get('steps', 0):,} steps of batch "
              f"{t.get('batch_size')}, learning rate {t.get('lr')}, "
              f"{card.get('train_wall_time_min', '?')} minutes on {card.get('hardware', '?')}.",
              ""]
    if val:
        lines += ["## Evaluation", "",
                  f"Validation perplexity {val.get('ppl', float('nan')):.2f} per target token "
                  f"({val.get('tokens', 0):,} tokens; {val.get('note', '')})."]
        task = EVAL.get(card.get("task", ""))
        if task and (ROOT / "docs" / "eval" / f"{task}.md").exists():
            lines += [f"Held-out evaluation: [docs/eval/{task}.md](../../../docs/eval/{task}.md)."]
        lines += [""]
    if card.get("limitations"):
        lines += ["## Limitations", ""] + [f"- {x}" for x in card["limitations"]] + [""]
    lines += ["## Rebuild", ""]
    if card.get("provenance"):
        lines += [f"These weights: {card['provenance']}.", ""]
    lines += ["```sh", card.get("rebuild", ""), "```", ""]
    return "\n".join(lines)


def write_readme(folder: Path, card: dict | None = None) -> Path:
    folder = Path(folder)
    if card is None:
        card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    out = folder / "README.md"
    out.write_text(render(card, folder.name), encoding="utf-8")
    return out


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["--help"]:
        if arg.startswith("-"):
            print(__doc__)
            sys.exit(0 if arg in ("-h", "--help") else 2)
        print(write_readme(Path(arg)))
