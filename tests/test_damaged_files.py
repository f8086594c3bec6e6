"""Damaged model folders: every file a writer loads from every shipped folder (data/models:
chat, chat-backward, chat-zh, chat-zh-backward, poem, tune) — weights, tokenizer, config, card
and the extras beside them (the retrieval indexes, the novelty lines, the planner, limits,
theme table, season lexicon, the poem and tune critics and the reply selector, tune windows) — truncated, corrupted, swapped with another file or deleted gives
one ModelFileError that names the file and says how to rebuild it. A sibling folder that is
absent is a stated fallback (chatbot/bot.py): no chat-backward, replies rank by the forward
score; no chat-zh, the joint bot answers Chinese too; no chat-zh-backward, the Chinese bot
borrows chat-backward."""
import json
import shutil
from pathlib import Path

import pytest

from shared.checkpoint import ModelFileError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "data" / "models"
# the folder each writer is loaded from, and the folders that load brings in
WRITERS = {"chat": ("chatbot.bot", "Bot"), "poem": ("poetry.poems", "PoemWriter"),
           "tune": ("poetry.tunes", "TuneWriter")}
LOADED_BY = {"chat": "chat", "chat-backward": "chat", "chat-zh": "chat",
             "chat-zh-backward": "chat", "poem": "poem", "tune": "tune"}


def load(writer: str, root: Path):
    import importlib
    module, name = WRITERS[writer]
    return getattr(importlib.import_module(module), name).load(root / writer)


def loaded_files(folder: Path) -> list[str]:
    """What loading reads from a model folder: its card and every file the card lists."""
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    return sorted({"card.json", *card.get("files", {})})


@pytest.fixture(scope="module")
def models(poem_model_dir, chat_rerank_dir, tune_model_dir, tmp_path_factory):
    """data/models in miniature: the tiny models under the shipped folder names, the Chinese
    bot (own index) and its backward model beside the chat pair."""
    from chatbot.retrieval import Retrieval
    from chatbot.train import default_model_config
    from shared.checkpoint import load_model
    from tests.helpers import export_tiny
    root = tmp_path_factory.mktemp("models")
    for name in ("chat", "chat-backward"):
        shutil.copytree(chat_rerank_dir.parent / name, root / name)
    _critic(root / "chat", pair=True)                # the reply selector
    shutil.copytree(poem_model_dir, root / "poem")
    _poem_extras(root / "poem")
    shutil.copytree(tune_model_dir, root / "tune")
    _critic(root / "tune")
    _, tok, _ = load_model(root / "chat")
    extra = tmp_path_factory.mktemp("zh_index")
    Retrieval.build([("你好", "你好！朋友"), ("谢谢", "不客气")], tok).save(extra / "retrieval.npz")
    export_tiny(root / "chat-zh", tok, default_model_config, {"rebuild": "tests/conftest.py"},
                seed=2, extra_files={"retrieval.npz": extra / "retrieval.npz"})
    export_tiny(root / "chat-zh-backward", tok, default_model_config,
                {"rebuild": "tests/conftest.py"}, seed=3)
    return root


def _poem_extras(folder: Path) -> None:
    """The files written beside the poem model after its export: the season lexicon and the
    critic, listed in its card as the shipped ones are."""
    from poetry.poems.scenes import Seasons
    from shared.checkpoint import add_files
    Seasons({"桃": "春", "叶": "秋"}).save(folder / "seasons.json")
    add_files(folder, "seasons.json")
    _critic(folder)


def _critic(folder: Path, pair: bool = False) -> None:
    """A tiny critic beside a model, listed in its card as the shipped ones are."""
    from shared import critic as core
    from shared.checkpoint import load_model
    model, _, _ = load_model(folder)
    core.save(core.Critic(core.CriticConfig(vocab=model.cfg.tgt_vocab, emb_dim=8, hidden=8,
                                            head=4, pair=pair)), folder, {"task": folder.name})


def test_the_miniature_has_every_shipped_folder_and_file(models):
    shipped = sorted(p.name for p in SHIPPED.iterdir() if (p / "card.json").exists())
    assert shipped == sorted(LOADED_BY) == sorted(p.name for p in models.iterdir())
    for name in shipped:
        assert loaded_files(models / name) == loaded_files(SHIPPED / name), name


def donor(models: Path, folder: str, name: str) -> Path:
    """A file to swap in for folder/name: the same file of another folder where it differs,
    else another file of this folder (a mix-up within the folder)."""
    same = [models / f / name for f in sorted(LOADED_BY) if f != folder]
    others = [p for p in sorted((models / folder).iterdir()) if p.name != name]
    mine = (models / folder / name).read_bytes()
    return next(p for p in same + others if p.exists() and p.read_bytes() != mine)


def damage(path: Path, how: str, other: Path) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif how == "corrupted":
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes(b ^ 0x5A for b in data[mid:mid + 16]) + data[mid + 16:])
    elif how == "swapped":
        path.write_bytes(other.read_bytes())
    else:
        path.unlink()


@pytest.mark.parametrize("how", ["truncated", "corrupted", "swapped", "deleted"])
@pytest.mark.parametrize("folder", sorted(LOADED_BY))
def test_every_file_damaged_is_named(models, folder, how, tmp_path):
    names = loaded_files(models / folder)
    assert {"card.json", "model.safetensors", "tokenizer.json", "config.json"} <= set(names)
    checked = []
    for name in names:
        work = tmp_path / f"{folder}-{name}"
        shutil.copytree(models, work)
        damage(work / folder / name, how, donor(work, folder, name))
        with pytest.raises(ModelFileError) as err:
            load(LOADED_BY[folder], work)
        message = str(err.value)        # the card's rebuild command, or (card unreadable) how
        assert str(work / folder / name) in message and any(w in message for w in (
            "tests/conftest.py", "re-export or retrain")), message        # to make it again
        checked.append(name)
        shutil.rmtree(work)
    assert checked == names


def test_absent_siblings_are_the_stated_fallbacks(models, tmp_path):
    from chatbot.bot import Bot
    shutil.copytree(models, tmp_path / "m")
    root = tmp_path / "m"
    full = Bot.load(root / "chat")
    assert full.backward is not None and full.zh is not None and full.zh.backward is not None
    assert full.zh.backward is not full.backward and len(full.zh.index) == 2

    shutil.rmtree(root / "chat-zh-backward")         # the Chinese bot borrows chat-backward
    bot = Bot.load(root / "chat")
    assert bot.zh is not None and bot.zh.backward is bot.backward is not None

    shutil.rmtree(root / "chat-zh")                  # no Chinese bot: the joint one answers
    bot = Bot.load(root / "chat")
    assert bot.zh is None and bot.for_turns(["你好"]) is bot and bot.replies("你好", seed=1)

    shutil.rmtree(root / "chat-backward")            # the forward score alone
    bot = Bot.load(root / "chat")
    assert bot.backward is None and bot.zh is None
    assert all(r["backward"] == 0.0 for r in bot.replies("hi", n=3, seed=1))


@pytest.mark.parametrize("folder", ["chat-backward", "chat-zh", "chat-zh-backward"])
def test_an_emptied_sibling_folder_is_an_error_not_a_fallback(models, folder, tmp_path):
    """A sibling folder that is there but holds no model is damage to report, not a reason to
    load a worse bot quietly."""
    shutil.copytree(models, tmp_path / "m")
    for p in (tmp_path / "m" / folder).iterdir():
        p.unlink()
    with pytest.raises(ModelFileError, match=str(tmp_path / "m" / folder / "card.json")):
        load("chat", tmp_path / "m")
