"""``python -m llmops_nb.workspace serve --home DIR [...]``: run the local workspace."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmops_nb.workspace")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the local workspace server in the foreground")
    s.add_argument("--home", required=True, type=Path)
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--fake", action="store_true", help="deterministic responder, /_fake/ admin")
    s.add_argument("--fake-latency-ms", type=float, default=0.0)
    s.add_argument("--fake-ready-seconds", type=float, default=0.3)
    s.add_argument("--token", default=os.environ.get("LLMOPS_WORKSPACE_TOKEN"))
    s.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    args = parser.parse_args(argv)
    from llmops_nb.workspace.server import serve

    serve(
        args.home,
        port=args.port,
        host=args.host,
        fake=args.fake,
        token=args.token or None,
        tracking_uri=args.tracking_uri,
        fake_latency_ms=args.fake_latency_ms,
        fake_ready_seconds=args.fake_ready_seconds,
    )


if __name__ == "__main__":
    main()
