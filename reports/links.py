"""Links from the report to the MLflow UI."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from harness.storage import split_credentials
from reports import collect
from reports.errors import ReportError


def ui_base(tracking_uri: str, ui_url: str | None = None) -> str | None:
    """The MLflow UI address run ids link to: ``ui_url``, else the tracking URI when it is an MLflow
    server (http(s), whose address is also its UI's; credentials are dropped: the page is shared),
    else None (a file or database store has no UI until ``invoke ui`` serves one)."""
    if ui_url:
        parts = urlsplit(ui_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ReportError(f"--ui-url must be an http(s) address such as http://127.0.0.1:5000, got {ui_url!r}")
        return urlunsplit(urlsplit(split_credentials(ui_url)[0])._replace(fragment="")).rstrip("/")
    if urlsplit(tracking_uri).scheme in ("http", "https"):
        bare = urlsplit(split_credentials(tracking_uri)[0])
        return urlunsplit(bare._replace(query="", fragment="")).rstrip("/")
    return None


def run_url(ui: str, experiment_id: str, run_id: str) -> str:
    """A run's page in the MLflow 3 UI (a hash-routed single-page app: ``/#/experiments/<id>/runs/<id>``,
    the address MLflow itself prints as "View run ... at")."""
    return f"{ui}/#/experiments/{experiment_id}/runs/{run_id}"


def _with_links(frame: pd.DataFrame, study: collect.StudyRuns, ui: str | None) -> pd.DataFrame:
    if ui and study.experiment_id is not None and len(frame):
        return frame.assign(run_url=[run_url(ui, study.experiment_id, r) for r in frame["run_id"]])
    return frame
