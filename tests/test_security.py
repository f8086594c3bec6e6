"""What SECURITY.md promises that is a property of the source, checked on the source."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("shared", "chatbot", "poetry", "server")
           for p in (ROOT / d).rglob("*.py")] + [ROOT / "app.py"]


PATTERNS = (r"^\s*import pickle", r"pickle\.loads?\(", r"allow_pickle\s*=\s*True",
            r"torch\.load\((?![^)]*weights_only\s*=\s*True)",
            r"(?<![.\w])(?<!def )eval\(", r"(?<![.\w])exec\(")


def test_no_pickle_anywhere():
    """Model files are safetensors, JSON and numpy arrays read with allow_pickle=False."""
    bad = []
    for p in SOURCES:
        text = p.read_text(encoding="utf-8")
        for pattern in PATTERNS:
            bad += [f"{p.relative_to(ROOT)}: {m.group(0)}"
                    for m in re.finditer(pattern, text, re.M)]
    assert not bad, bad


def test_every_test_security_md_names_exists():
    """Each promise names its test: `tests/file.py::test_name`, or `::test_name` for the file
    named before it on the same line, or a whole file."""
    import ast
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    named = 0
    for line in text.splitlines():
        current = None
        for path, name in re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", line):
            current = path or current
            if not (path or name):
                continue
            assert current and (ROOT / current).is_file(), (current, line)
            if name:
                tree = ast.parse((ROOT / current).read_text(encoding="utf-8"))
                names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
                assert name in names, f"{current}::{name}"
            named += 1
    assert named >= 15
