"""Promises of README.md and SECURITY.md checked where a user meets them: the address the real
server listens on, the memory it hands back, the folder Gradio keeps files in and its cap, the
poem the app streams, and how the CI entry point treats a machine it cannot fully set up."""
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket process `pid` listens on, read from /proc: its file
    descriptors' socket inodes, looked up in /proc/net/tcp and tcp6 (state 0A = LISTEN)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
        except OSError:                     # closed meanwhile
            continue
        if m:
            inodes.add(m.group(1))
    out = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in inodes:
                continue
            addr, port = cols[1].split(":")
            raw = bytes.fromhex(addr)       # 32-bit words in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            out.add((socket.inet_ntop(family, raw), int(port, 16)))
    return out


def start_app(models: dict, log: Path, *extra: str):
    """`python app.py --port 0` with the tiny models: (process, host, port) once it listens."""
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    args = [f"--{task}-model={folder}" for task, folder in models.items()]
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "app.py", "--port", "0", "--threads", "1",
                                 *args, *extra], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        m = re.search(r"Shiyu is at http://(\S+):(\d+)/", log.read_text(errors="replace"))
        if m:
            return proc, m.group(1), int(m.group(2))
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(log.read_text(errors="replace")[-3000:])


def wait_for(host: str, port: int, seconds: float = 60) -> None:
    """Until a connection to host:port is accepted (the server prints its address before
    its first accept)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection((host, port), timeout=5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
def test_the_server_listens_on_this_machine_only(chat_rerank_dir, poem_model_dir,
                                                 tune_model_dir, tmp_path):
    """SECURITY.md: the app binds 127.0.0.1 unless told otherwise. What the server prints and
    every socket the process listens on (read from the kernel, so a second listener or a
    hard-coded 0.0.0.0 is seen) are loopback, on the printed port."""
    models = {"chat": chat_rerank_dir, "poem": poem_model_dir, "tune": tune_model_dir}
    proc, host, port = start_app(models, tmp_path / "server.log")
    try:
        assert host == "127.0.0.1"
        wait_for(host, port)
        assert listening_sockets(proc.pid) == {("127.0.0.1", port)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_there_is_no_share_option(capsys, monkeypatch):
    """SECURITY.md: no share link, and no option for one: `--share` is an unknown option,
    refused with exit status 2 before anything starts."""
    import app

    def started(**options):
        raise AssertionError("the server started")
    monkeypatch.setattr(app, "server", started)
    with pytest.raises(SystemExit) as e:
        app.main(["--share", "--port", "0"])
    assert e.value.code == 2 and "unrecognized arguments: --share" in capsys.readouterr().err


def ci_run(tmp_path: Path, ci: bool, apt: str | None, script: Path = ROOT / ".ci" / "run"):
    """.ci/run on a machine without chromium: PATH holds only what it needs, an apt-get that
    exits with `apt` ("0", "100"; None: no apt-get at all) and a `make` that notes it ran."""
    import shutil
    bin_ = tmp_path / "bin"
    bin_.mkdir(parents=True)
    for tool in ("dirname", "id"):
        (bin_ / tool).symlink_to(shutil.which(tool))
    scripts = {"make": f'#!/bin/sh\necho "$@" > {tmp_path / "made"}\n',
               "sudo": '#!/bin/sh\nexec "$@"\n'}
    if apt is not None:
        scripts["apt-get"] = f"#!/bin/sh\nexit {apt}\n"
    for name, text in scripts.items():
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    env = {"PATH": str(bin_), "HOME": str(tmp_path), **({"CI": "true"} if ci else {})}
    r = subprocess.run(["/bin/bash", str(script)], env=env, capture_output=True, text=True,
                       timeout=60)
    made = tmp_path / "made"
    return r.returncode, r.stderr, made.read_text().strip() if made.exists() else None


@pytest.mark.parametrize("apt", ["100", None])
def test_ci_stops_loudly_when_chromium_cannot_be_installed(tmp_path, apt):
    """Under CI a failed (or impossible) apt install of chromium ends the run with an error
    before the suite, so the browser tests cannot quietly skip."""
    rc, err, made = ci_run(tmp_path, ci=True, apt=apt)
    assert rc != 0 and "error: could not install chromium" in err and made is None, err


def test_ci_runs_the_suite_after_installing_chromium_and_warns_elsewhere(tmp_path):
    assert ci_run(tmp_path / "a", ci=True, apt="0") == (0, "", "test")
    rc, err, made = ci_run(tmp_path / "b", ci=False, apt="100")
    assert rc == 0 and made == "test" and "warning: no chromium" in err, err


def test_the_server_hands_freed_memory_back_on_schedule(monkeypatch):
    """`trim_memory_every` calls glibc's malloc_trim(0) again and again on its interval (a
    thread that only exists, or trims once, fails here)."""
    import ctypes
    import threading

    from server import memory
    calls, called = [], threading.Event()

    class Libc:
        def malloc_trim(self, pad):
            calls.append(pad)
            if len(calls) >= 3:
                called.set()
                threading.Event().wait()     # seen enough: the daemon thread rests for good
            return 1
    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    before = {t.ident for t in threading.enumerate()}
    memory.trim_memory_every(0.01)
    assert called.wait(10) and set(calls) == {0}
    new = [t for t in threading.enumerate() if t.ident not in before]
    assert [(t.name, t.daemon) for t in new] == [("malloc-trim", True)]


@pytest.mark.slow
def test_gradio_keeps_its_files_in_the_apps_capped_folder(tmp_path):
    """The app's own folder is the one Gradio reads at import for uploads and its cache, and
    making a download prunes it by size with the scratch folders: the oldest file goes, a
    fresh one stays (in a process of its own: the folder is chosen once, at import)."""
    code = """
import os, time, json
from pathlib import Path
import app
from server import files
import gradio.route_utils, gradio.utils
own = str(files.GRADIO_FOLDER)
seen = [gradio.route_utils.DEFAULT_TEMP_DIR, gradio.utils.get_upload_folder()]
old, fresh = Path(own) / "a" / "old.wav", Path(own) / "b" / "fresh.wav"
for f, age in ((old, 3600), (fresh, 0)):
    f.parent.mkdir(parents=True)
    f.write_bytes(b"x" * 700_000)
    os.utime(f, (time.time() - age, time.time() - age))
files.TEMP_CAP_MB = 1
files.scratch("tunes.abc")
print(json.dumps([own, seen, old.exists(), old.parent.exists(), fresh.exists()]))
"""
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    import json
    own, seen, old, old_dir, fresh = json.loads(r.stdout.strip().splitlines()[-1])
    assert "shiyu-gradio-" in own and seen == [own, own]
    assert (old, old_dir, fresh) == (False, False, True)


def test_the_app_streams_a_poem_as_it_is_written(poem_model_dir, monkeypatch):
    """The poem tab shows the poem growing as the writer writes it, a step at a time, and ends
    on that same poem, one verse a line (six copies of the finished poem fail here)."""
    from poetry.poems import PoemWriter
    from server import handlers
    monkeypatch.setitem(handlers.MODEL_DIRS, "poem", poem_model_dir)
    shown = [text for text, _, _ in handlers.write_poems("秋思", "wujue", 1, "春夏秋冬", "", True,
                                                          False, 0.8, "3")]
    *partials, final = shown
    streamed = list(PoemWriter.load(poem_model_dir).stream(
        "秋思", form="wujue", acrostic="春夏秋冬", temperature=0.8, seed=3))
    assert [p.split("\n", 1)[1].replace("\n", "") for p in partials] == streamed
    assert len(partials) >= 20 and all(b.startswith(a) and b != a
                                       for a, b in zip(partials, partials[1:]))
    title, *verses = final.split("\n")
    assert title == "秋思 · 五绝" and len(verses) == 4 and partials[-1] == final
    assert verses[0].startswith("春")


@pytest.mark.slow
def test_under_ci_a_missing_browser_fails_the_browser_tests(tmp_path):
    """tests/test_browser.py without its chromium: skipped, saying why, on a developer's
    machine; under CI a failure, so a run cannot pass without them."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["SHIYU_CHROMIUM"] = str(tmp_path / "no-chromium")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
               "tests/test_browser.py"]
    here = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    # exit status 5: the module skipped, so no test ran
    assert here.returncode in (0, 5) and "skipped" in here.stdout and \
        "no-chromium" in here.stdout, here.stdout[-2000:]
    ci = subprocess.run(command, cwd=ROOT, env={**env, "CI": "true"}, capture_output=True,
                        text=True, timeout=300)
    assert ci.returncode not in (0, 5) and "under CI the browser tests must run" in ci.stdout, \
        ci.stdout[-2000:]
