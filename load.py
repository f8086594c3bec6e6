"""Load test of the app as people run it: start `python app.py` on a free port, time its cold
start (until the page is served), then run N concurrent clients for a bounded time, each
calling chat (/reply), poems (/write_poems) and tunes (/write_tunes) in turn through
gradio_client, and print requests/s, p50/p95 latency per task, errors and the server's
memory (RSS) after the run. `--rounds N` runs the clients N times against the same server and
prints, after each round, its requests, errors, p95, the server's RSS and what the app keeps in
the temp folder (Gradio's cache and the tune scratch folders): a sustained-load check.

    python load.py [--clients 16] [--seconds 60] [--rounds 1] [--app-args "..."] [--json]

Exit status 1 when any request failed. Nothing here needs the network beyond this machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent
CALLS = {   # task -> (endpoint, keyword arguments): the documented default requests
    "chat": ("/reply", {"conversation": ["hi! how was your weekend?"]}),
    "poem": ("/write_poems", {"theme": "明月"}),
    "tune": ("/write_tunes", {}),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, app_args: list[str] = (), timeout: float = 120
              ) -> tuple[subprocess.Popen, float]:
    """`python app.py` on `port`; returns the process and seconds until GET / answered 200."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port),
                             *app_args],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    tail: list[str] = []

    def drain():                                # its log, the last lines kept for a failure
        for line in proc.stderr:
            tail[:] = (tail + [line.rstrip()])[-5:]
    threading.Thread(target=drain, daemon=True).start()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with status {proc.returncode} before serving:\n"
                             + "\n".join(tail))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                if r.status == 200:
                    return proc, time.perf_counter() - t0
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise SystemExit(f"the app did not serve its page within {timeout:.0f} s")


def rss_mb(pid: int) -> float:
    """Resident memory of the process and its children, MB (from /proc)."""
    def one(p: int) -> int:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0
    kids = Path(f"/proc/{pid}/task/{pid}/children")
    children = [int(c) for c in kids.read_text().split()] if kids.exists() else []
    return (one(pid) + sum(one(c) for c in children)) / 1024


def client_loop(url: str, k: int, seconds: float, start: threading.Barrier, log: list,
                lock: threading.Lock, downloads: str) -> None:
    """One client: connect, wait for the others, then call the tasks in turn for `seconds`.
    What it fetches (every audio and download file, as a browser would) goes to `downloads`,
    not to gradio_client's default /tmp/gradio: the temp-folder figure is the server's alone."""
    from gradio_client import Client
    try:
        client = Client(url, verbose=False, download_files=downloads)
    except Exception as e:                      # noqa: BLE001  (counted, then reported)
        client = None
        with lock:
            log.append(("connect", 0.0, f"{type(e).__name__}: {e}"))
    start.wait()                                # the clock starts when all are connected
    if client is None:
        return
    until = time.perf_counter() + seconds
    tasks = list(CALLS)
    i = k                                       # clients start on different tasks
    while time.perf_counter() < until:
        task = tasks[i % len(tasks)]
        api, kwargs = CALLS[task]
        t0 = time.perf_counter()
        error = None
        try:
            out = client.predict(**kwargs, api_name=api)
            if not out:
                error = "empty result"
        except Exception as e:                  # noqa: BLE001
            error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        with lock:
            log.append((task, time.perf_counter() - t0, error))
        i += 1
    client.close()


def temp_mb(since: float) -> float:
    """What the app keeps in the temp folder: its Gradio folder (shiyu-gradio-*, or
    GRADIO_TEMP_DIR when set) and its scratch folder (shiyu-*), made since `since`."""
    tmp = Path(tempfile.gettempdir())
    roots = ([Path(os.environ["GRADIO_TEMP_DIR"])] if os.environ.get("GRADIO_TEMP_DIR") else []) \
        + [r for r in tmp.glob("shiyu-*") if r.stat().st_ctime >= since]
    return sum(f.stat().st_size for r in roots if r.exists()
               for f in ([r] if r.is_file() else r.rglob("*")) if f.is_file()) / 1e6


def one_round(url: str, clients: int, seconds: float, downloads: str) -> tuple[list, float]:
    """`clients` concurrent clients for `seconds`: the log of (task, latency, error), wall time."""
    log: list = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    threads = [threading.Thread(target=client_loop,
                                args=(url, k, seconds, start, log, lock, downloads))
               for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return log, time.perf_counter() - t0


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rounds", type=int, default=1, help="load rounds against one server")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    ap.add_argument("--app-args", default="",
                    help="options for app.py, e.g. \"--concurrency 2 --threads 1\"")
    args = ap.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.rounds < 1:
        ap.error("--clients and --rounds must be at least 1 and --seconds positive")

    port = free_port()
    started = time.time()
    proc, cold = start_app(port, shlex.split(args.app_args))
    url = f"http://127.0.0.1:{port}/"
    print(f"cold start: page served {cold:.2f} s after `python app.py` began", flush=True)
    rss_idle = rss_mb(proc.pid)
    log, wall, rounds = [], 0.0, []
    downloads = tempfile.mkdtemp(prefix="load-downloads-")
    try:
        for r in range(args.rounds):
            part, dt = one_round(url, args.clients, args.seconds, downloads)
            log += part
            wall += dt
            rss = rss_mb(proc.pid)
            ok = [t for _, t, e in part if not e]
            rounds.append({"round": r + 1, "requests": len(part),
                           "errors": sum(1 for *_, e in part if e),
                           "p95_s": round(percentile(ok, 0.95), 3), "rss_mb_after": round(rss),
                           "temp_mb_after": round(temp_mb(started), 1)})
            if args.rounds > 1:
                print(f"round {r + 1}: {len(part)} requests, {rounds[-1]['errors']} errors, "
                      f"p95 {rounds[-1]['p95_s']:.2f} s, RSS {rss:.0f} MB, temp folder "
                      f"{rounds[-1]['temp_mb_after']:.1f} MB", flush=True)
        alive = proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(downloads, ignore_errors=True)

    errors = [e for _, _, e in log if e]
    res = {"clients": args.clients, "app_args": args.app_args, "seconds": round(wall, 1),
           "requests": len(log), "requests_per_s": round(len(log) / wall, 2), "errors": len(errors),
           "cold_start_s": round(cold, 2), "rss_mb_idle": round(rss_idle),
           "rss_mb_after": round(rss), "server_alive": alive, "rounds": rounds, "tasks": {}}
    print(f"{args.clients} clients for {wall:.0f} s: {len(log)} requests "
          f"({res['requests_per_s']} /s), {len(errors)} errors")
    for task in CALLS:
        lat = [t for name, t, e in log if name == task and not e]
        n_err = sum(1 for name, _, e in log if name == task and e)
        res["tasks"][task] = {"requests": len(lat) + n_err, "errors": n_err,
                              "p50_s": round(percentile(lat, 0.5), 3),
                              "p95_s": round(percentile(lat, 0.95), 3)}
        print(f"  {task:5s} {len(lat) + n_err:4d} requests, p50 {percentile(lat, 0.5):6.2f} s, "
              f"p95 {percentile(lat, 0.95):6.2f} s, {n_err} errors")
    every = [t for _, t, e in log if not e]
    res["p50_s"], res["p95_s"] = round(percentile(every, 0.5), 3), round(percentile(every, 0.95), 3)
    print(f"  all   p50 {res['p50_s']:.2f} s, p95 {res['p95_s']:.2f} s")
    print(f"server memory (RSS): {rss_idle:.0f} MB before the load, {rss:.0f} MB after; "
          f"server {'still up' if alive else 'DOWN'}")
    for e in sorted(set(errors))[:5]:
        print(f"  error: {e}")
    if args.json:
        print(json.dumps(res))
    return 1 if errors or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
