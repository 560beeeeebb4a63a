"""A throw-away PostgreSQL server on 127.0.0.1 for the multi-worker tests.

Uses the Debian server binaries (``/usr/lib/postgresql/<version>/bin``). ``initdb`` refuses to
run as root, so as root every server command runs as the ``postgres`` user (which the Debian
package creates) in a data folder that user owns. Clients connect over TCP with a password
(scram-sha-256), as the harness would on another machine; the superuser is only reachable
through the unix socket in the server's own folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SERVER_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries (or no user to run them as) on this machine."""


def find_bin_dir() -> Path:
    """The newest installed PostgreSQL server's ``bin`` folder."""
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
    )
    for folder in reversed(found):
        if (folder / "pg_ctl").exists() and (folder / "postgres").exists():
            return folder
    raise PostgresUnavailable("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    """A running server; ``url(db)`` is a client URL with the test role's password in it."""

    root: Path
    port: int
    user: str
    password: str = field(repr=False)  # kept out of test failure reports
    bin_dir: Path

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        _admin_sql(self, f'CREATE DATABASE "{name}" OWNER "{self.user}"')
        return self.url(name)

    def stop(self) -> None:
        _as_server_user([self.bin_dir / "pg_ctl", "-D", self.root / "data", "-m", "fast", "-w", "stop"], check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def start(databases: tuple[str, ...] = ()) -> PostgresServer:
    """Initialise and start a server on a free port with a password role owning ``databases``."""
    bin_dir = find_bin_dir()
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise PostgresUnavailable(f"running as root and no {SERVER_USER!r} user to run the server as") from None
    # Not pytest's tmp_path: its parents are private to root and the server user could not enter them.
    root = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    (root / "socket").mkdir()
    if os.geteuid() == 0:
        for path in (root, root / "socket"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    server = PostgresServer(
        root=root, port=free_port(), user="harness", password=secrets.token_hex(12), bin_dir=bin_dir
    )
    try:
        _as_server_user(
            [
                bin_dir / "initdb",
                "-D",
                root / "data",
                "-U",
                SERVER_USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        )
        settings = (
            f"-c listen_addresses=127.0.0.1 -c port={server.port} -c unix_socket_directories={server.socket_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )  # durability is pointless for a server that lives one test session
        _as_server_user(
            [
                bin_dir / "pg_ctl",
                "-D",
                root / "data",
                "-l",
                root / "server.log",
                "-o",
                settings,
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        _admin_sql(server, f"CREATE ROLE \"{server.user}\" LOGIN PASSWORD '{server.password}'")
        for name in databases:
            server.create_database(name)
    except BaseException:
        log = root / "server.log"
        detail = log.read_text()[-2000:] if log.exists() else ""
        server.stop()
        if detail:
            print(f"PostgreSQL server log:\n{detail}")
        raise
    return server


def _as_server_user(command: list, check: bool = True) -> subprocess.CompletedProcess:
    command = [str(c) for c in command]
    if os.geteuid() == 0:
        command = ["runuser", "-u", SERVER_USER, "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def _admin_sql(server: PostgresServer, statement: str) -> None:
    """Run one statement as the superuser through the server's unix socket."""
    import psycopg2

    deadline = time.monotonic() + 30
    while True:
        try:
            connection = psycopg2.connect(
                host=str(server.socket_dir), port=server.port, user=SERVER_USER, dbname="postgres"
            )
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()
