"""Bounded load test of `milestones serve` on 127.0.0.1: N requests from C concurrent clients, then it stops.

Starts `milestones serve RUN --port 0` as its own process (on 127.0.0.1 only; there is no option to aim it
elsewhere), sends a few warm-up requests, reads the server's resident memory (VmRSS from /proc), then sends the
requests from C threads, each with its own keep-alive connection, and reads the memory again. Each request is the
page's live path: POST /api/runs/ID/draw with a 280x280 PNG drawing (one of eight), which returns the scores and the
C1/C3 feature maps; `--endpoint predict` posts the same images to /predict instead. Prints requests/s, p50/p99
latency, errors (any status other than 200, or a failed connection) and memory, as a markdown row and as JSON.

    python benchmarks/serve_load.py             # a random-init lenet5_modern: the speed does not depend on weights
    python benchmarks/serve_load.py runs/demo-lenet5-digits --requests 2000 --clients 8
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HOST = "127.0.0.1"


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def drawings(n: int = 8) -> list[bytes]:
    """n PNG drawings of 280x280, white strokes on black, as the page sends them."""
    from PIL import Image, ImageDraw

    out = []
    for i in range(n):
        img = Image.new("L", (280, 280), 0)
        d = ImageDraw.Draw(img)
        if i % 2:
            d.ellipse([70 + 4 * i, 40, 210 - 2 * i, 240], outline=255, width=18)
        else:
            d.line([(140 + 5 * i, 40), (130 - 3 * i, 240)], fill=255, width=18)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def random_run(folder: Path) -> Path:
    """A run folder with a random-init lenet5_modern checkpoint for MNIST's format."""
    import torch

    from milestones.models import create_model
    from milestones.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    run = folder / "random-lenet5_modern"
    (run / "checkpoints").mkdir(parents=True)
    data = {"name": "mnist", "full_name": "mnist", "classes": list("0123456789"), "mean": [0.1307], "std": [0.3081],
            "in_chans": 1, "img_size": [28, 28], "pad": 2, "input_size": [1, 32, 32]}
    save_checkpoint(run / "checkpoints" / "best", create_model("lenet5_modern"),
                    {"model": "lenet5_modern", "model_kwargs": {}, "data": data})
    return run


def start_server(run: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "milestones.cli", "serve", str(run), "--host", HOST, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("serving on"):
            return proc, int(line.split()[2].rstrip("/").rsplit(":", 1)[1])
    proc.wait()
    raise RuntimeError(f"the server exited with status {proc.returncode} before serving")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", help="run directory (default: a random-init lenet5_modern)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--endpoint", choices=["draw", "predict"], default="draw")
    return ap


def main() -> None:
    args = build_parser().parse_args()

    tmp = tempfile.TemporaryDirectory()
    run = Path(args.run) if args.run else random_run(Path(tmp.name))
    bodies = drawings()
    proc, port = start_server(run)
    try:
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        conn.request("GET", "/api/runs")
        runs = json.loads(conn.getresponse().read())["runs"]
        path = f"/api/runs/{runs[0]['id']}/{args.endpoint}"
        for i in range(args.warmup):
            conn.request("POST", path, body=bodies[i % len(bodies)], headers={"Content-Type": "image/png"})
            conn.getresponse().read()
        conn.close()
        before = rss_mib(proc.pid)

        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        counter = iter(range(args.requests))

        def client() -> None:
            c = http.client.HTTPConnection(HOST, port, timeout=60)
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                t0 = time.perf_counter()
                try:
                    c.request("POST", path, body=bodies[i % len(bodies)], headers={"Content-Type": "image/png"})
                    res = c.getresponse()
                    res.read()
                    ok = res.status == 200
                    what = f"HTTP {res.status}"
                except (OSError, http.client.HTTPException) as e:
                    ok, what = False, f"{type(e).__name__}: {e}"
                    c.close()
                    c = http.client.HTTPConnection(HOST, port, timeout=60)
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if not ok:
                        errors.append(what)
            c.close()

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        after = rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
        tmp.cleanup()

    from milestones.machine import cpu_name

    ms = sorted(1000 * x for x in latencies)
    result = {
        "endpoint": args.endpoint, "requests": len(latencies), "clients": args.clients, "wall_s": round(wall, 2),
        "req_per_s": round(len(latencies) / wall, 1), "p50_ms": round(statistics.median(ms), 1),
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1), "errors": len(errors),
        "rss_before_mib": round(before, 1), "rss_after_mib": round(after, 1),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
    }
    print("| endpoint | requests | clients | req/s | p50 ms | p99 ms | errors | server RSS before → after (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.endpoint} | {result['requests']} | {args.clients} | {result['req_per_s']} | {result['p50_ms']} | "
          f"{result['p99_ms']} | {result['errors']} | {result['rss_before_mib']} → {result['rss_after_mib']} |")
    print(json.dumps(result))
    if errors:
        print(f"first errors: {errors[:3]}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
