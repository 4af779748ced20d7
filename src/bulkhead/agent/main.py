"""`bulkhead-agent`: run the agent, run one pass, or show its state (exit codes: 0 ok, 1 bug, 2 user error)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path

from . import support
from .config import load_config
from .errors import AgentError, ConfigError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bulkhead-agent", description="The Bulkhead device agent.")
    ap.add_argument("--config", type=Path, default=Path("/etc/bulkhead/agent.toml"))
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="run forever: poll, converge, report")
    sub.add_parser("once", help="one pass (enroll, poll, converge, report), then exit")
    sub.add_parser("status", help="print the persisted update state")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = load_config(args.config)
        from .agent import Agent

        if args.cmd == "status":
            print(_status(cfg.data_dir))
            return 0
        agent = Agent(cfg)
        if args.cmd == "once":
            agent.updater.resume_after_start()
            agent.run_once()
        else:
            agent.run()
        return 0
    except ConfigError as e:
        print(f"bulkhead-agent: configuration error: {e}", file=sys.stderr)
        return 2
    except AgentError as e:
        print(f"bulkhead-agent: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def _status(data_dir: Path) -> str:
    """The persisted update state, the product's support period and the pending security update as the server last
    said them."""
    path = data_dir / "update-state.json"
    text = path.read_text() if path.exists() else json.dumps({"phase": "idle"})
    kept = support.read_status(data_dir / support.FILE_NAME)
    pending = support.read_security(data_dir / support.FILE_NAME)
    if kept is None and pending is None:
        return text
    try:
        state = json.loads(text)
    except ValueError:
        return text
    if not isinstance(state, dict):
        return text
    if kept is not None:
        state["support"] = support.describe(kept, dt.date.today())
    if pending is not None:
        state["security_update"] = pending
    return json.dumps(state)


if __name__ == "__main__":
    sys.exit(main())
