"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

* Training state (`save_training_state` / `load_training_state`): model, AdamW moments, step,
  data position, RNG states — written to a temp folder and renamed, so a kill mid-write leaves the
  previous checkpoint intact.
* Released models (`export_model` / `load_model`): weights in bf16 by default, `config.json`,
  `tokenizer.json`, and `card.json` listing every file's sha256; loading verifies each hash.
A missing or damaged file raises `ModelFileError`, which names the file and how to rebuild it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import from_dict
from .model import Seq2Seq, Seq2SeqConfig
from .tokenizers import Tokenizer


class ModelFileError(ValueError):
    """A model or checkpoint file is missing, damaged or does not match its card."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_dir(final: Path):
    """Context: yields a temp dir next to `final`, which replaces `final` on success."""
    class _Ctx:
        def __enter__(self):
            self.tmp = final.with_name(final.name + ".tmp")
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir(parents=True)
            return self.tmp

        def __exit__(self, exc_type, *_):
            if exc_type is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                return False
            old = final.with_name(final.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            if final.exists():
                os.rename(final, old)
            os.rename(self.tmp, final)     # atomic on one filesystem
            shutil.rmtree(old, ignore_errors=True)
            return False
    return _Ctx()


def recover_dir(final: Path) -> None:
    """After a kill between the two renames of `_atomic_dir`, `final` is gone and `final.old`
    holds the previous complete save: put it back. `final.tmp`, perhaps half-written, is
    never read (the next save clears it)."""
    old = final.with_name(final.name + ".old")
    if not final.exists() and old.is_dir():
        try:
            os.rename(old, final)
        except FileNotFoundError:             # another DDP rank put it back first
            pass


def _read_json(path: Path, rebuild: str) -> Any:
    if not path.exists():
        raise ModelFileError(f"missing file {path}; {rebuild}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"damaged file {path} ({e.__class__.__name__}); {rebuild}") from None


def _read_tensors(path: Path, rebuild: str) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise ModelFileError(f"missing file {path}; {rebuild}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"damaged file {path} ({e}); {rebuild}") from None


def unique_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """state_dict without aliases (a shared source/target embedding is stored once)."""
    seen, out = set(), {}
    for k, v in model.state_dict().items():
        if v.data_ptr() in seen:
            continue
        seen.add(v.data_ptr())
        out[k] = v.detach().contiguous()
    return out


def load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of `unique_state`: aliases are filled through the module they share."""
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    aliases = set(model.state_dict()) - set(unique_state(model))
    if unexpected or set(missing) - aliases:
        raise RuntimeError(f"missing keys {sorted(set(missing) - aliases)}, "
                           f"unexpected keys {sorted(unexpected)}")


# -- training state ---------------------------------------------------------------------------
def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors = {f"state.{i}.{k}": v.contiguous() for i, st in sd["state"].items()
               for k, v in st.items() if torch.is_tensor(v)}
    return tensors, {"param_groups": sd["param_groups"]}


def save_training_state(path: str | Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
                        state: dict, config: dict) -> None:
    """state: JSON-able trainer state (step, epoch, batch index, RNG for python, ...)."""
    path = Path(path)
    with _atomic_dir(path) as tmp:
        save_file(unique_state(model), str(tmp / "model.safetensors"))
        opt_tensors, opt_meta = _optimizer_tensors(opt)
        opt_tensors["torch_rng"] = torch.get_rng_state()
        save_file(opt_tensors, str(tmp / "optim.safetensors"))
        (tmp / "state.json").write_text(json.dumps(
            {"state": state, "optimizer": opt_meta, "config": config}, indent=1))


def load_training_state(path: str | Path, model: torch.nn.Module,
                        opt: torch.optim.Optimizer) -> dict:
    """Restores model, optimiser and torch RNG in place; returns the saved JSON payload."""
    path = Path(path)
    rebuild = f"delete {path} to start the training afresh"
    meta = _read_json(path / "state.json", rebuild)
    load_state(model, _read_tensors(path / "model.safetensors", rebuild))
    tensors = _read_tensors(path / "optim.safetensors", rebuild)
    torch.set_rng_state(tensors.pop("torch_rng"))
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    return meta


# -- released models --------------------------------------------------------------------------
def export_model(out_dir: str | Path, model: Seq2Seq, tokenizer: Tokenizer, card: dict,
                 dtype: torch.dtype = torch.bfloat16,
                 extra_files: dict[str, str | Path] | None = None) -> dict:
    """Write weights (in `dtype`), config, tokenizer, `extra_files` (name -> source path, e.g.
    task rule data) and a card with each file's sha256. `card` should hold corpus, counts,
    metrics, hardware and `rebuild` (the command)."""
    out_dir = Path(out_dir)
    with _atomic_dir(out_dir) as tmp:
        weights = {k: v.to(dtype).contiguous() for k, v in unique_state(model).items()}
        save_file(weights, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(vars(model.cfg), indent=1))
        tokenizer.save(tmp / "tokenizer.json")
        for name, src in (extra_files or {}).items():
            shutil.copyfile(src, tmp / name)
        card = dict(card)
        card["parameters"] = model.num_parameters()
        card["weights_dtype"] = str(dtype).replace("torch.", "")
        card["files"] = {p.name: sha256(p) for p in sorted(tmp.iterdir())}
        (tmp / "card.json").write_text(json.dumps(card, indent=1, ensure_ascii=False))
    return card


def add_files(model_dir: str | Path, *names: str) -> None:
    """Files written beside an exported model (its critic, a task's tables) join the card's
    list, with their sha256, so loading verifies them as it does the weights."""
    model_dir = Path(model_dir)
    card_file = model_dir / "card.json"
    card = json.loads(card_file.read_text(encoding="utf-8"))
    files = dict(card.get("files", {}))
    files.update({n: sha256(model_dir / n) for n in names})
    card["files"] = dict(sorted(files.items()))
    tmp = card_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(card, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(card_file)


def load_model(model_dir: str | Path, verify: bool = True
               ) -> tuple[Seq2Seq, Tokenizer, dict]:
    """Load an exported model in fp32 eval mode. Verifies every file against the card."""
    model_dir = Path(model_dir)
    card = _read_json(model_dir / "card.json",
                      "the model folder is incomplete; re-export or retrain it")
    rebuild = "rebuild it with: " + card.get("rebuild", "the training command in the README")
    if verify:
        for name, digest in card.get("files", {}).items():
            p = model_dir / name
            # a mismatch does not tell which of the two is damaged: both are named
            where = model_dir / "card.json"
            if not p.exists():
                raise ModelFileError(f"missing file {p}, which {where} lists; {rebuild}")
            if sha256(p) != digest:
                raise ModelFileError(f"damaged file {p} or {where} (the file's sha256 differs "
                                     f"from the card's); {rebuild}")
    try:
        cfg = from_dict(Seq2SeqConfig, _read_json(model_dir / "config.json", rebuild))
    except ValueError as e:
        if isinstance(e, ModelFileError):
            raise
        raise ModelFileError(f"bad config {model_dir / 'config.json'}: {e}; {rebuild}") from None
    try:
        tok = Tokenizer.from_json(_read_json(model_dir / "tokenizer.json", rebuild))
    except (KeyError, ValueError) as e:
        if isinstance(e, ModelFileError):
            raise
        raise ModelFileError(f"bad tokenizer {model_dir / 'tokenizer.json'}: {e}; {rebuild}") from None
    model = Seq2Seq(cfg)
    weights = _read_tensors(model_dir / "model.safetensors", rebuild)
    try:
        load_state(model, {k: v.float() for k, v in weights.items()})
    except RuntimeError as e:
        raise ModelFileError(f"weights in {model_dir / 'model.safetensors'} do not fit "
                             f"config.json ({str(e).splitlines()[0]}); {rebuild}") from None
    if tok.vocab_size != cfg.tgt_vocab:
        raise ModelFileError(f"tokenizer.json has {tok.vocab_size} tokens but the model expects "
                             f"{cfg.tgt_vocab}; {rebuild}")
    return model.eval(), tok, card
