"""One recipe per shipped model: its stages, from the corpus to the folder in data/models.

    python -m shared.recipe run recipes/tune.toml            # rebuild data/models/tune
    python -m shared.recipe run recipes/tune.toml --smoke    # every stage at toy size, in a
                                                             # folder of its own (--work DIR)
    python -m shared.recipe show recipes/tune.toml           # the commands, nothing run
    python -m shared.recipe sign recipes/chat.toml --provenance TEXT   # sign the folders as
                                                             # they are, saying how they were built

A recipe (TOML) names the model folder(s) it builds (`model`: a name or a list), the licences of the data it is trained on,
and its stages, each one command (the project's own CLIs) with an optional `smoke` variant:

    model = "tune"
    about = "what the model is, in a sentence"
    use = "what it is meant for, and what not"
    limitations = ["what reads badly, plainly", ...]
    data_licences = ["music21's bundled ABC collections: BSD-3-Clause (music21) ..."]
    [[stage]]
    name = "train"
    run = "python -m poetry.tunes.train --data {cache}/tunes --out {runs}/tune --threads 1"
    smoke = "python -m poetry.tunes.train --data {cache}/tunes --out {runs}/tune --epochs 1 ..."

`{cache}`, `{runs}` and `{models}` are `cache`, `runs` and `data/models` (under --work with
--smoke); `{name}` of the recipe's `[vars]` table is that value. Stages run in order; each one
that completes is recorded in `{runs}/recipes/<model>.json` with its command, so a rerun after a
kill or any failure starts at the first stage not yet done (and a training stage resumes from
its own checkpoint). A stage whose command changed runs again, and so does every stage after it.
After the last stage the card of `{models}/<model>` gets the recipe's words (`about`, `use`,
`limitations`, `data_licences`), `recipe`, `rebuild` (this command) and `provenance` (built by
this recipe), and a README.md for readers is written beside it from the card
(`shared/modelcard.py`). `sign` does the same for folders that were trained otherwise; its
`--provenance` says how, in a sentence the card and its README show.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLACES = {"cache": "cache", "runs": "runs", "models": "data/models"}


@dataclass
class Stage:
    name: str
    run: str
    smoke: str | None = None


@dataclass
class Recipe:
    path: Path
    models: list[str]               # the folders under {models} it builds
    about: str
    use: str
    limitations: list[str]
    data_licences: list[str]
    stages: list[Stage]
    vars: dict[str, str]

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path} is not valid TOML: {e}") from None
        for key in ("model", "about", "use", "limitations", "data_licences", "stage"):
            if key not in raw:
                raise ValueError(f"{path} has no {key!r}")
        stages = []
        for i, s in enumerate(raw["stage"]):
            unknown = set(s) - {"name", "run", "smoke"}
            if unknown or not isinstance(s.get("run"), str) or not isinstance(s.get("name"), str):
                raise ValueError(f"{path}: stage {i + 1} needs a name and a run command "
                                 f"(and may have smoke){'; unknown ' + str(sorted(unknown)) if unknown else ''}")
            stages.append(Stage(s["name"], s["run"], s.get("smoke")))
        if len({s.name for s in stages}) != len(stages):
            raise ValueError(f"{path}: two stages have the same name")
        models = [raw["model"]] if isinstance(raw["model"], str) else list(raw["model"])
        return cls(path, models, raw["about"], raw["use"], list(raw["limitations"]),
                   list(raw["data_licences"]), stages,
                   {k: str(v) for k, v in raw.get("vars", {}).items()})

    @property
    def name(self) -> str:
        """The recipe as the card names it: its path from the project root."""
        try:
            return self.path.resolve().relative_to(ROOT).as_posix()
        except ValueError:
            return self.path.as_posix()

    def places(self, work: Path | None) -> dict[str, str]:
        if work is None:
            return dict(PLACES)
        return {k: str(work / k) for k in PLACES}

    def commands(self, smoke: bool = False, work: Path | None = None) -> list[tuple[str, str]]:
        """(stage name, command) in order, placeholders filled in."""
        values = {**self.vars, **self.places(work)}
        out = []
        for s in self.stages:
            text = s.smoke if smoke and s.smoke is not None else s.run
            try:
                out.append((s.name, text.format(**values)))
            except KeyError as e:
                raise ValueError(f"{self.path}: stage {s.name!r} uses {{{e.args[0]}}}, which is "
                                 f"not one of {sorted(values)}") from None
        return out


def _argv(command: str) -> list[str]:
    """A stage's command as an argument list; `python` is this interpreter (the venv's)."""
    argv = shlex.split(command)
    if argv and argv[0] == "python":
        argv[0] = sys.executable
    return argv


def state_path(recipe: Recipe, work: Path | None) -> Path:
    return Path(recipe.places(work)["runs"]) / "recipes" / f"{recipe.path.stem}.json"


def run(recipe: Recipe, smoke: bool = False, work: Path | None = None,
        log=sys.stderr) -> list[Path]:
    """Run every stage not yet done (see the module's doc); returns the model folders."""
    state_file = state_path(recipe, work)
    done = json.loads(state_file.read_text()) if state_file.exists() else {}
    steps = recipe.commands(smoke, work)
    redo = False
    for name, command in steps:
        if not redo and done.get(name, {}).get("command") == command:
            print(f"[{recipe.path.stem}] {name}: done before, skipped", file=log)
            continue
        redo = True                         # a stage that runs again: every later one too
        done.pop(name, None)
        print(f"[{recipe.path.stem}] {name}: {command}", file=log, flush=True)
        t0 = time.time()
        code = subprocess.run(_argv(command), cwd=ROOT).returncode
        if code != 0:
            raise RecipeError(f"stage {name!r} of {recipe.name} failed (exit {code}); fix it "
                              f"and run the recipe again: the stages before it are kept")
        done[name] = {"command": command, "seconds": round(time.time() - t0, 1),
                      "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(done, indent=1))
        tmp.replace(state_file)
    built = folders(recipe, work)
    for folder in built:
        sign(recipe, folder, smoke)
    return built


def folders(recipe: Recipe, work: Path | None = None) -> list[Path]:
    root = Path(recipe.places(work)["models"])
    return [root / m if root.is_absolute() else ROOT / root / m for m in recipe.models]


class RecipeError(RuntimeError):
    pass


def sign(recipe: Recipe, folder: Path, smoke: bool = False,
         provenance: str = "built by its recipe") -> None:
    """The card names its recipe, data licences, one rebuild command and how these weights were
    built; README.md follows."""
    from .modelcard import write_readme
    card_file = folder / "card.json"
    if not card_file.exists():
        raise RecipeError(f"{recipe.name} ran every stage but {card_file} is missing: its last "
                          f"stage must export the model there")
    card = json.loads(card_file.read_text(encoding="utf-8"))
    card.update({"about": recipe.about, "use": recipe.use, "limitations": recipe.limitations,
                 "recipe": recipe.name, "data_licences": recipe.data_licences,
                 "rebuild": f"python -m shared.recipe run {recipe.name}"
                            + (" --smoke" if smoke else ""),
                 "provenance": provenance})
    tmp = card_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(card_file)
    write_readme(folder, card)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m shared.recipe", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["run", "show", "sign"])
    ap.add_argument("recipe", type=Path, help="a recipes/*.toml file")
    ap.add_argument("--smoke", action="store_true", help="every stage at toy size")
    ap.add_argument("--work", type=Path, default=None,
                    help="with --smoke: the folder for its cache, runs and models "
                         "(default runs/smoke)")
    ap.add_argument("--provenance", default=None,
                    help="with sign: how the folders' weights were built, in a sentence")
    args = ap.parse_args(argv)
    if (args.action == "sign") != (args.provenance is not None):
        ap.error("sign needs --provenance (how the weights were built), and only sign takes it")
    if args.work is not None and not args.smoke:
        ap.error("--work goes with --smoke (a full run builds into cache/, runs/, data/models/)")
    recipe = Recipe.load(args.recipe)
    work = (args.work or ROOT / "runs" / "smoke").resolve() if args.smoke else None
    if args.action == "show":
        for name, command in recipe.commands(args.smoke, work):
            print(f"# {name}\n{command}")
        return 0
    try:
        if args.action == "sign":
            for folder in folders(recipe, work):
                sign(recipe, folder, args.smoke, args.provenance.strip())
                print(f"signed {folder}", file=sys.stderr)
            return 0
        built = run(recipe, args.smoke, work)
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"built {', '.join(map(str, built))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from .cli import run_cli
    run_cli(main)
