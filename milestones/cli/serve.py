"""``serve``: the local page for drawing digits and uploading images."""

from __future__ import annotations

import argparse
from pathlib import Path

DEMO_RUN = "runs/demo-lenet5-digits"  # where 'make demo' trains its LeNet-5


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serve import create_app, is_loopback, load_runs, make_server

    if not 0 <= args.port <= 65535:  # before the runs load
        from ..errors import ConfigError

        raise ConfigError(f"--port must be 0 to 65535 (0: any free port), got {args.port}")
    paths = args.runs
    if not paths and Path(DEMO_RUN).is_dir():
        paths = [DEMO_RUN]
    runs = load_runs(paths)
    server, sock, url = make_server(create_app(runs), args.host, args.port)
    for r in runs:
        print(f"loaded {r.id}: {r.meta['model']} on {r.data.get('full_name', r.data['name'])}")
    if not any(r.drawable for r in runs):
        print(f"no LeNet-5 digit run loaded: 'make demo' trains one into {DEMO_RUN}")
    if not is_loopback(args.host):
        print(f"warning: listening on {args.host}, reachable from other machines; the page has no login")
    print(f"serving on {url} (Ctrl-C stops)", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def add_serve(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("serve", help="a local page: draw a digit for LeNet-5, upload images for any run",
                       description="Serve the page and its JSON API (see the README) for the runs given (default: "
                       f"{DEMO_RUN} if it exists). Binds 127.0.0.1 unless --host says otherwise.")
    s.set_defaults(handler=cmd_serve)
    s.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run directories (or .safetensors checkpoints)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")


PARSERS = {"serve": add_serve}
