"""What the project promises about itself: the README's commands run as written, from a clean
folder, and no tracked file narrates how the project was made (CHANGELOG.md speaks by version).

README convention: a ```bash or ```python block is run by these tests, line by line (a line
ending in a backslash continues); a ```sh block is shown to the reader only (installs, the app,
full retrainings, the test suite itself). A python line ending in `# -> VALUE` must evaluate to
VALUE.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)


def commands(body: str) -> list[str]:
    """A block's commands: lines joined where one ends in a backslash, blank lines dropped."""
    out, current = [], ""
    for line in body.splitlines():
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            if current.strip():
                out.append(current.strip())
            current = ""
    return out


SERVER = "http://127.0.0.1:7860/"


def readme_blocks(lang: str, server: bool) -> list[str]:
    return [b for kind, b in blocks(README.read_text(encoding="utf-8"))
            if kind == lang and (SERVER in b) == server]


def _env(cwd: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONUTF8="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _folder(tmp_path: Path) -> Path:
    """A clean working folder where the README's relative paths (data/, recipes/) resolve."""
    for name in ("data", "recipes"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def test_the_readme_convention_holds():
    """Every fenced block is bash, python, sh or text, and there is something to run."""
    kinds = {k for k, _ in blocks(README.read_text(encoding="utf-8"))}
    assert kinds <= {"bash", "python", "sh", "text"}, kinds
    assert readme_blocks("bash", False) and readme_blocks("python", False)
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250


@pytest.mark.slow
def test_every_shell_command_in_the_readme_runs(tmp_path):
    cwd = _folder(tmp_path)
    ran = 0
    for body in readme_blocks("bash", False):
        for command in commands(body):
            r = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=_env(cwd),
                               capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, f"{command}\n{r.stderr[-2000:]}"
            assert r.stdout.strip() or any(cwd.joinpath("out").glob("*")), command
            assert "Traceback" not in r.stderr, f"{command}\n{r.stderr[-2000:]}"
            ran += 1
    assert ran >= 10


def _python_script(body: str) -> str:
    """The block as a script; a `# -> VALUE` line asserts that its expression equals VALUE."""
    lines = []
    for line in commands(body):
        code, arrow, expected = line.partition("# -> ")
        if arrow:
            ast.literal_eval(expected.strip())           # a value a reader can read
            lines.append(f"_got = {code.strip()}\nassert _got == {expected.strip()}, "
                         f"({code.strip()!r}, _got)")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_every_python_example_in_the_readme_runs(tmp_path):
    cwd = _folder(tmp_path)
    for body in readme_blocks("python", False):
        r = subprocess.run([sys.executable, "-c", _python_script(body)], cwd=cwd, env=_env(cwd),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{body}\n{r.stderr[-2000:]}"


@pytest.mark.slow
def test_the_readme_scripts_against_the_running_app(tmp_path):
    """`make app`, then the README's gradio_client and curl lines, on the address the app
    prints (the shipped models)."""
    cwd = _folder(tmp_path)
    log = open(tmp_path / "app.log", "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", "0"],
                            cwd=ROOT, env=_env(cwd), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while not (m := re.search(r"Shiyu is at (http://127\.0\.0\.1:\d+/)",
                                  (tmp_path / "app.log").read_text())):
            assert proc.poll() is None and time.time() < deadline, \
                (tmp_path / "app.log").read_text()[-2000:]
            time.sleep(0.5)
        here = m.group(1)                      # the port the system gave the server
        scripts = readme_blocks("python", True) + readme_blocks("sh", True) \
            + readme_blocks("bash", True)
        assert len(scripts) >= 2
        for body in scripts:
            body = body.replace(SERVER, here).replace(SERVER.rstrip("/"), here.rstrip("/"))
            if "curl" in body:
                for command in commands(body):
                    r = subprocess.run(["bash", "-c", command], cwd=cwd, env=_env(cwd),
                                       capture_output=True, text=True, timeout=300)
                    assert r.returncode == 0 and '"content"' in r.stdout, (command, r.stdout)
            else:
                r = subprocess.run([sys.executable, "-c", _python_script(body)], cwd=cwd,
                                   env=_env(cwd), capture_output=True, text=True, timeout=300)
                assert r.returncode == 0, f"{body}\n{r.stderr[-2000:]}"
        assert "Traceback" not in (tmp_path / "app.log").read_text()
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


# How a development log reads; none of it belongs in the project's files. Written so that this
# file does not match itself.
NARRATION = [r"\bsession[ -]\d", r"\b(this|previous|earlier|last|next) session\b",
             r"\bwork(ing)? periods?\b", r"\b(the )?(last|previous) release\b",
             r"\brelease before\b", r"\bschedule" r"_note\b", r"\bpersona v\d",
             r"\bwe (tried|then tried|first tried)\b", r"\bas of (today|now)\b"]
TEXT = {".py", ".md", ".toml", ".txt", ".json", ".cfg", ".ini", ".yaml", ".yml", ".sh", ".css",
        ".js", ".html", ""}


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    files = [ROOT / p for p in out.stdout.decode().split("\0") if p]
    return [p for p in files if p.suffix in TEXT and p.is_file()
            and p.stat().st_size < 5_000_000 and p != Path(__file__).resolve()]


def test_no_tracked_file_narrates_the_making():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    pattern = re.compile("|".join(NARRATION), re.I)
    hits = []
    for path in tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if m := pattern.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {m.group(0)!r} in {line.strip()[:120]}")
    assert not hits, "\n".join(hits)


def test_the_narration_check_finds_narration():
    pattern = re.compile("|".join(NARRATION), re.I)
    for line in ["In session 12 the model was retrained.", "compared with the last release",
                 "see schedule" "_note", "after work period 3"]:
        assert pattern.search(line), line
    for line in ["a chat session with the bot", "release 0.12.0", "the note on the schedule"]:
        assert not pattern.search(line), line


def test_every_relative_link_in_the_docs_resolves():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    missing = []
    for path in tracked_text_files():
        if path.suffix != ".md":
            continue
        text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:|#", target):
                continue                                 # a web address or an anchor
            if not (path.parent / target.split("#")[0]).exists():
                missing.append(f"{path.relative_to(ROOT)} -> {target}")
    assert not missing, "\n".join(missing)


def test_the_evaluation_tables_are_made_from_their_json():
    """docs/eval/*.md regenerate from the JSON beside them (no figure typed by hand), and each
    names the command that made it."""
    from shared import report
    folder = ROOT / "docs" / "eval"
    docs = sorted(folder.glob("*.json"))
    assert {p.stem for p in docs} >= {"chat", "tune"}
    assert report.regenerate(folder, check=True) == []
    for p in docs:
        md = p.with_suffix(".md").read_text(encoding="utf-8")
        assert "**command**: `python -m " in md and "--report docs/eval/" in md, p
