"""``python -m harness.dashboard``: optuna-dashboard on the harness's Optuna storage, the server
process that ``invoke dashboard`` runs (in a process group of its own, see ``harness.processes``).

The storage comes in the environment (``HARNESS_DASHBOARD_STORAGE``), not the command line, so a
database password never shows in ``ps``."""

from __future__ import annotations

import os
import sys

STORAGE_VARIABLE = "HARNESS_DASHBOARD_STORAGE"


def main(host: str, port: int) -> None:
    from optuna_dashboard import run_server

    from harness.storage import open_optuna_storage

    run_server(open_optuna_storage(os.environ.get(STORAGE_VARIABLE) or None), host=host, port=port)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
