"""Run an ``invoke`` command in this process, as the command line would."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def invoke_in_process(capsys, *args: str) -> tuple[int, str, str]:
    """``invoke ARGS`` parsed and run by invoke's own Program in this process: the same parser, the
    same tasks and the same error handling as the command line, without starting Python again.
    Returns (exit code, stdout, stderr)."""
    from invoke import Collection, Program

    spec = importlib.util.spec_from_file_location("project_tasks", REPO / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    program = Program(namespace=Collection.from_module(module), binary="invoke")
    capsys.readouterr()
    try:
        program.run(["invoke", *args])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err
