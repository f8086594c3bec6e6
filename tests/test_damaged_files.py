"""Damaged model folders (issue 13): every file a writer loads — weights, tokenizer, config, card
and the extras beside them (the retrieval index, the novelty lines, the planner, limits, theme
table, tune windows) — truncated, corrupted, swapped with another model's or deleted gives one
ModelFileError that names the file and says how to rebuild it."""
import shutil

import pytest

from shared.checkpoint import ModelFileError

LOADERS = {"poem": ("poetry.poems", "PoemWriter"), "chat": ("chatbot.bot", "Bot"),
           "tune": ("poetry.tunes", "TuneWriter")}


def load(task, folder):
    import importlib
    module, name = LOADERS[task]
    return getattr(importlib.import_module(module), name).load(folder)


def damage(path, how, other):
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


@pytest.fixture()
def folders(poem_model_dir, chat_rerank_dir, tune_model_dir):
    return {"poem": poem_model_dir, "chat": chat_rerank_dir, "tune": tune_model_dir}


@pytest.mark.parametrize("how", ["truncated", "corrupted", "swapped", "deleted"])
@pytest.mark.parametrize("task", list(LOADERS))
def test_every_file_damaged_is_named(task, how, folders, tmp_path):
    source = folders[task]
    others = [folders[t] for t in LOADERS if t != task]
    names = sorted(p.name for p in source.iterdir() if p.is_file())
    assert "model.safetensors" in names and "tokenizer.json" in names
    checked = 0
    for name in names:
        work = tmp_path / f"{task}-{name}"
        shutil.copytree(source, work)
        if task == "chat":                   # the backward model lives beside the chat folder
            shutil.copytree(source.parent / "chat-backward", tmp_path / "chat-backward",
                            dirs_exist_ok=True)
            work = work.rename(tmp_path / "chat")
        other = next((o / name for o in others if (o / name).exists()
                      and (o / name).read_bytes() != (source / name).read_bytes()), None)
        if how == "swapped" and other is None:
            shutil.rmtree(work)
            continue
        damage(work / name, how, other)
        with pytest.raises(ModelFileError) as err:
            load(task, work)
        message = str(err.value)        # the card's rebuild command, or (card unreadable) how
        assert name in message and any(w in message for w in (   # to make the folder again
            "tests/conftest.py", "re-export or retrain")), message
        checked += 1
        shutil.rmtree(work)
    assert checked >= 2
