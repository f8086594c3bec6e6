"""Every shipped model's recipe runs end to end at toy size (--smoke), resumes where it stopped,
and signs the cards it builds; evaluation reports regenerate from their JSON."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared import report
from shared.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.toml"))


def test_every_recipe_loads_and_names_its_data_licences():
    assert {p.stem for p in RECIPES} >= {"tune", "poem", "chat"}
    for p in RECIPES:
        r = Recipe.load(p)
        assert r.models and r.data_licences and r.limitations and r.stages, p
        assert r.commands(smoke=True, work=Path("/w"))[0][1].count("/w/") >= 1


@pytest.mark.slow
@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_smoke_builds_signed_models_that_load(path, tmp_path):
    def run():
        return subprocess.run([sys.executable, "-m", "shared.recipe", "run", str(path),
                               "--smoke", "--work", str(tmp_path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=900)
    first = run()
    assert first.returncode == 0, first.stderr[-3000:]
    again = run()                                     # everything done: nothing runs again
    assert again.returncode == 0 and "skipped" in again.stderr and ": python" not in again.stderr
    recipe = Recipe.load(path)
    for model in recipe.models:
        folder = tmp_path / "models" / model
        card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
        assert card["recipe"] == f"recipes/{path.name}"
        assert card["data_licences"] == recipe.data_licences
        assert card["rebuild"].startswith(f"python -m shared.recipe run recipes/{path.name}")
        assert "## Training data and licences" in (folder / "README.md").read_text()
    from shared.checkpoint import load_model
    load_model(tmp_path / "models" / recipe.models[0])


def test_reports_regenerate_from_their_json(tmp_path):
    result = {"task": "x", "speed": {"p50_s": 0.25}, "by": {"a": {"n": 1}, "b": {"n": 2}}}
    md = report.write(result, "python -m x --report r.md", tmp_path / "r.md")
    text = md.read_text()
    assert "`python -m x --report r.md`" in text and "| p50_s | 0.25 |" in text
    assert report.regenerate(tmp_path, check=True) == []
    md.write_text(text.replace("0.25", "0.5"))               # a table edited by hand
    assert report.regenerate(tmp_path, check=True) == [md]
