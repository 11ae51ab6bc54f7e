"""Checks on the raw command line, before jsonargparse applies it: mistakes it would apply without a word.

jsonargparse applies the arguments in order, so ``--key+=value`` before a ``--config`` (``-c``) that sets
``key`` is silently dropped by that config (``--data.rollout.rewards+=myreward.f --config demo.yaml``):
:func:`check_appends_follow_configs` refuses it in one line.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml


def config_file_at(argv: list[str], i: int) -> str | None:
    """The path that ``argv[i]`` gives as a config file (``--config P``, ``--config=P``, ``-c P``, ``-c=P``,
    ``-cP``), or None when ``argv[i]`` names none."""
    arg = argv[i]
    if arg in ("--config", "-c"):
        return argv[i + 1] if i + 1 < len(argv) else None
    if arg.startswith("--config="):
        return arg[len("--config="):]
    if arg.startswith("-c") and not arg.startswith("--") and len(arg) > 2:
        return arg[3:] if arg[2] == "=" else arg[2:]
    return None


def check_appends_follow_configs(argv: list[str]) -> None:
    """Exit with status 2 and one line for ``--key+=value`` before a config file that sets ``key``."""
    appends: list[str] = []
    for i, arg in enumerate(argv):
        if arg.startswith("--") and "+=" in arg.split("=", 1)[0] + "=":
            appends.append(arg)
            continue
        path = config_file_at(argv, i)
        for appended in appends if path else []:
            key = appended[2:].split("+=", 1)[0]
            if config_sets(path, key):
                print(
                    f"error: {appended} comes before --config {path}, which sets {key} again and would silently "
                    "drop what it adds: put it after the --config files",
                    file=sys.stderr, flush=True,
                )
                raise SystemExit(2)


def config_sets(path: str, key: str) -> bool:
    """Whether the YAML file at ``path`` sets the dotted ``key`` (``init_args`` levels skipped); False when unreadable."""
    try:
        with open(path) as handle:
            node: Any = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError):
        return False  # the parser reports a config it cannot read
    for part in key.split("."):
        if isinstance(node, dict) and part not in node and isinstance(node.get("init_args"), dict):
            node = node["init_args"]
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
