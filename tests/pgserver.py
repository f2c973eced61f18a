"""A throw-away PostgreSQL server for the test suite.

``start()`` runs ``initdb`` into a fresh directory under /tmp, starts the server on a free TCP port of
127.0.0.1 (trust authentication, the unix socket in the same directory, the server's defaults
otherwise: fsync stays on) and waits until it accepts connections; ``PostgresServer.stop()`` stops it
with ``pg_ctl stop -m fast`` and removes the directory.

A hot standby: ``start_primary()`` starts a server set up for streaming replication (and, given
``synchronous_standby``, synchronous replication to the standby of that name);
``primary.standby(name)`` copies it with ``pg_basebackup -R`` into a directory of its own, starts
the copy on another free port as a hot standby streaming from the primary, and waits until the
primary sees it streaming (as a synchronous standby when it is one). ``kill()`` stops a server
as a crash would (``pg_ctl stop -m immediate``: no shutdown checkpoint, sessions cut);
``promote()`` makes a standby a primary and waits until it takes writes; ``start_again()`` starts a
killed server on its port again. ``multi_host_url()`` is
the URL that names both, for a service to follow the primary.

PostgreSQL refuses to run as root: when the tests run as root, the binaries run as the ``postgres``
system user through ``runuser``; otherwise they run as the current user.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "postgres"
HOST = "127.0.0.1"
_REQUIRED = ("initdb", "pg_ctl", "postgres")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresNotFound(RuntimeError):
    """No PostgreSQL server binaries (initdb, pg_ctl, postgres) on this machine."""


class PostgresStartError(RuntimeError):
    """The binaries are there but the server could not be set up or started."""


def _has_binaries(bindir: str | os.PathLike[str]) -> bool:
    return all(os.access(Path(bindir, name), os.X_OK) for name in _REQUIRED)


def _version_key(path: str) -> tuple[int, ...]:
    # /usr/lib/postgresql/15/bin -> (15,): the newest version first.
    return tuple(int(part) for part in re.findall(r"\d+", Path(path).parent.name))


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres.

    $OMS_PG_BINDIR when it is set (and then only it); else, in order, ``pg_config --bindir``,
    /usr/lib/postgresql/*/bin (newest first), the directory of ``initdb`` on $PATH.
    """
    override = os.environ.get("OMS_PG_BINDIR")
    if override:
        if not _has_binaries(override):
            raise PostgresNotFound(f"OMS_PG_BINDIR={override} does not hold initdb, pg_ctl and postgres.")
        return Path(override)
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(out.stdout.strip())
    candidates.extend(sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    for candidate in candidates:
        if candidate and _has_binaries(candidate):
            return Path(candidate)
    raise PostgresNotFound(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; looked in: "
        + (
            ", ".join(dict.fromkeys(c for c in candidates if c))
            or "pg_config --bindir, /usr/lib/postgresql/*/bin, PATH"
        )
        + ". Install the PostgreSQL server (e.g. apt-get install postgresql) or set OMS_PG_BINDIR."
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    """The temporary directory: the data directory, the unix socket and the server log."""
    port: int
    run_as: str | None
    """The system user the binaries run as (root cannot run PostgreSQL); None: the current user."""
    settings: dict[str, str] = field(default_factory=dict)
    """Server settings besides the address, port and socket directory (postgresql.auto.conf)."""

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq/asyncpg connection string."""
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{dbname}"

    def url(self, dbname: str = "postgres") -> str:
        """The URL the application takes (``oms.db.open_database``)."""
        return f"postgresql+asyncpg://{SUPERUSER}@{HOST}:{self.port}/{dbname}"

    async def create_database_async(self, name: str) -> str:
        """Create an empty database; returns its URL."""
        import asyncpg

        if not _IDENTIFIER.match(name):
            raise ValueError(f"not a plain lower-case identifier: {name!r}")
        conn = await asyncpg.connect(self.dsn("postgres"))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    def create_database(self, name: str) -> str:
        """Create an empty database (from synchronous code); returns its URL."""
        return asyncio.run(self.create_database_async(name))

    async def drop_database_async(self, name: str) -> None:
        import asyncpg

        if not _IDENTIFIER.match(name):
            raise ValueError(f"not a plain lower-case identifier: {name!r}")
        conn = await asyncpg.connect(self.dsn("postgres"))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    def drop_database(self, name: str) -> None:
        asyncio.run(self.drop_database_async(name))

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return _run(self.run_as, [str(self.bindir / args[0]), *args[1:]], timeout=timeout)

    def standby(self, name: str = "standby1", *, attempts: int = 3, timeout: float = 60.0) -> PostgresServer:
        """A hot standby of this server (started with ``start_primary``), streaming from it: a copy by
        ``pg_basebackup -R`` in a directory of its own, started on another free port. Returns once the
        primary sees it streaming, as a synchronous standby if its ``synchronous_standby_names`` is
        ``name``. The caller must ``stop()`` it."""
        if not os.access(self.bindir / "pg_basebackup", os.X_OK):
            raise PostgresNotFound(f"no pg_basebackup in {self.bindir}")
        root = _private_directory(self.run_as)
        try:
            standby = PostgresServer(self.bindir, root, 0, self.run_as)
            copied = standby._run(
                "pg_basebackup",
                "-D",
                str(standby.datadir),
                "-d",
                f"host={HOST} port={self.port} user={SUPERUSER} application_name={name}",
                "-X",
                "stream",
                "-R",  # standby.signal, and primary_conninfo (written again by _configure below)
                "-c",
                "fast",  # checkpoint now, not at the next scheduled one
                "--no-sync",
            )
            if copied.returncode != 0:
                raise PostgresStartError(
                    f"pg_basebackup failed ({copied.returncode}):\n{copied.stdout}\n{copied.stderr}"
                )
            # The copy holds the primary's postgresql.auto.conf: _configure writes the standby's own.
            # No synchronous_standby_names: promoted, it has no standby of its own, and with the
            # setting it would make every commit wait for one.
            settings = {k: v for k, v in self.settings.items() if k != "synchronous_standby_names"}
            settings["primary_conninfo"] = f"host={HOST} port={self.port} user={SUPERUSER} application_name={name}"
            settings["hot_standby"] = "on"
            standby.settings = settings
            _start_on_a_free_port(standby, attempts)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        try:
            sync = self.settings.get("synchronous_standby_names") == name
            self._wait(
                "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'"
                + (" AND sync_state = 'sync'" if sync else ""),
                name,
                timeout=timeout,
                what=f"standby {name} streaming" + (" synchronously" if sync else ""),
            )
        except BaseException:
            standby.stop()
            raise
        return standby

    def promote(self, timeout: float = 60.0) -> None:
        """Promote this standby (``pg_ctl promote``) and wait until it is out of recovery: it takes writes."""
        promoted = self._run("pg_ctl", "promote", "-D", str(self.datadir), "-w", "-t", str(int(timeout)))
        if promoted.returncode != 0:
            raise PostgresStartError(f"pg_ctl promote failed:\n{promoted.stdout}\n{promoted.stderr}\n{self.log_tail()}")
        self._wait("SELECT count(*) FROM (SELECT WHERE NOT pg_is_in_recovery()) AS out_of_recovery", timeout=timeout,
                   what="out of recovery")  # fmt: skip

    def kill(self) -> None:
        """Stop the server as a crash would (``pg_ctl stop -m immediate``: sessions cut, no shutdown
        checkpoint); its directory stays until ``stop()``."""
        result = self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", "immediate", "-w", "-t", "30")
        if result.returncode != 0:
            raise PostgresStartError(f"pg_ctl stop -m immediate failed:\n{result.stdout}\n{result.stderr}")

    def start_again(self) -> None:
        """Start a server that was stopped (``kill()``) on its port again (a standby: still a standby)."""
        started = self._run("pg_ctl", "start", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60")
        if started.returncode != 0:
            raise PostgresStartError(f"pg_ctl start failed:\n{started.stdout}\n{started.stderr}\n{self.log_tail()}")
        _wait_until_ready(self)

    async def fetch_async(self, dbname: str, sql: str, *args: object) -> list[dict[str, object]]:
        """The rows of a query on this server alone (not through a service)."""
        import asyncpg

        conn = await asyncpg.connect(self.dsn(dbname), timeout=10)
        try:
            return [dict(row) for row in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    def fetch(self, dbname: str, sql: str, *args: object) -> list[dict[str, object]]:
        return asyncio.run(self.fetch_async(dbname, sql, *args))

    def _wait(self, count_sql: str, *args: object, timeout: float, what: str) -> None:
        """Wait until ``count_sql`` (on the postgres database) counts at least one row."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                rows = self.fetch("postgres", count_sql, *args)
                if rows and int(str(rows[0]["count"])) > 0:
                    return
                last = "not yet"
            except (TimeoutError, OSError) as exc:
                last = repr(exc)
            except Exception as exc:  # asyncpg's errors: a server still starting, and the like
                last = repr(exc)
            if time.monotonic() > deadline:
                raise PostgresStartError(f"{what}: not within {timeout} s ({last})\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended) and remove its directory."""
        try:
            if (self.datadir / "postmaster.pid").exists():
                result = self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", "fast", "-w", "-t", "60")
                if result.returncode != 0:
                    self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", "immediate", "-w", "-t", "30")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _run(run_as: str | None, argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    if run_as is not None:
        argv = ["runuser", "-u", run_as, "--", *argv]
    # The server inherits neither our working directory (root's may not be readable by postgres) nor
    # stdin; its output goes to the log file (pg_ctl -l), never to pytest's captured pipes.
    return subprocess.run(
        argv,
        cwd="/",
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "LC_ALL": "C", "LANG": "C"},
    )


def _system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    if shutil.which("runuser") is None:
        raise PostgresStartError(
            "the tests run as root, and PostgreSQL cannot: `runuser` is needed to drop to postgres"
        )
    return SUPERUSER


def start(bindir: Path | None = None, *, attempts: int = 3, settings: dict[str, str] | None = None) -> PostgresServer:
    """initdb a fresh cluster in a temporary directory and start it; the caller must ``stop()`` it.
    ``settings``: server settings besides the address, port and socket directory."""
    bindir = bindir or find_bindir()
    run_as = _system_user()
    root = _private_directory(run_as)
    try:
        server = PostgresServer(bindir, root, 0, run_as, dict(settings or {}))
        init = server._run(
            "initdb",
            "-D",
            str(server.datadir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            # initdb's own fsync of the new files: the cluster is thrown away after the run anyway.
            # The server keeps its default fsync=on.
            "--no-sync",
        )
        if init.returncode != 0:
            raise PostgresStartError(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")
        _start_on_a_free_port(server, attempts)
        return server
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def start_primary(
    bindir: Path | None = None, *, synchronous_standby: str | None = None, attempts: int = 3
) -> PostgresServer:
    """A server set up for streaming replication to standbys on 127.0.0.1 (``standby()``); given
    ``synchronous_standby``, a commit returns only once the standby of that name has it on disk
    (``synchronous_standby_names``, ``synchronous_commit = on``)."""
    settings = {"wal_level": "replica", "max_wal_senders": "10", "wal_keep_size": "256MB"}
    if synchronous_standby is not None:
        if not _IDENTIFIER.match(synchronous_standby):
            raise ValueError(f"not a plain lower-case identifier: {synchronous_standby!r}")
        settings |= {"synchronous_standby_names": synchronous_standby, "synchronous_commit": "on"}
    server = start(bindir, attempts=attempts, settings=settings)
    try:
        # initdb's pg_hba.conf has this line already; a primary must not depend on it.
        hba = server.datadir / "pg_hba.conf"
        line = f"host replication {SUPERUSER} {HOST}/32 trust"
        if line.split() not in [row.split() for row in hba.read_text().splitlines()]:
            with hba.open("a") as out:
                out.write(line + "\n")
            reloaded = server._run("pg_ctl", "reload", "-D", str(server.datadir))
            if reloaded.returncode != 0:
                raise PostgresStartError(f"pg_ctl reload failed:\n{reloaded.stdout}\n{reloaded.stderr}")
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def replicated(
    bindir: Path, *, standby_name: str, synchronous: bool
) -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """A primary of its own (``start_primary``) and its hot standby ``standby_name``, replicating
    synchronously or not; both stopped after the block, the primary first (a standby whose primary
    is gone stops at once, not after a restartpoint)."""
    primary = start_primary(bindir, synchronous_standby=standby_name if synchronous else None)
    standby: PostgresServer | None = None
    try:
        standby = primary.standby(standby_name)
        yield primary, standby
    finally:
        try:
            primary.stop()
        finally:
            if standby is not None:
                standby.stop()


def multi_host_url(servers: Sequence[PostgresServer], dbname: str, target_session_attrs: str = "read-write") -> str:
    """The URL naming every one of ``servers`` (``host=a,b``), connections going to the first that
    matches ``target_session_attrs`` (``read-write``: the primary, whichever it is now)."""
    hosts = ",".join(f"{HOST}:{server.port}" for server in servers)
    return f"postgresql+asyncpg://{SUPERUSER}@{hosts}/{dbname}?target_session_attrs={target_session_attrs}"


def _private_directory(run_as: str | None) -> Path:
    """A new directory under /tmp, owned by (and private to) the server's user: /tmp is
    world-traversable."""
    root = Path(tempfile.mkdtemp(prefix="oms-pg-", dir="/tmp"))
    if run_as is not None:
        import pwd

        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    os.chmod(root, 0o700)
    return root


def _start_on_a_free_port(server: PostgresServer, attempts: int) -> None:
    last_error = ""
    for _ in range(attempts):
        server.port = _free_port()
        _configure(server)
        started = server._run("pg_ctl", "start", "-D", str(server.datadir), "-l", str(server.logfile), "-w", "-t", "60")
        if started.returncode == 0:
            _wait_until_ready(server)
            return
        # Most likely another process took the port between _free_port() and the bind: try another.
        last_error = f"{started.stdout}\n{started.stderr}\n{server.log_tail()}"
    raise PostgresStartError(f"pg_ctl start failed {attempts} times:\n{last_error}")


def _configure(server: PostgresServer) -> None:
    # postgresql.auto.conf is read last: these settings win over postgresql.conf. Rewritten per attempt.
    settings = {
        "listen_addresses": HOST,
        "port": str(server.port),
        "unix_socket_directories": str(server.root),
        "max_connections": "200",
        **server.settings,
    }
    conf = "".join(f"{key} = '{value}'\n" for key, value in settings.items())
    path = server.datadir / "postgresql.auto.conf"
    path.write_text(conf)
    if server.run_as is not None:
        import pwd

        entry = pwd.getpwnam(server.run_as)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _wait_until_ready(server: PostgresServer, timeout: float = 30.0) -> None:
    """pg_ctl -w already waited for the postmaster; make sure a TCP connection gets through too."""
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(server.dsn("postgres"), timeout=5)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(probe())
            return
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            if time.monotonic() > deadline:
                raise PostgresStartError(f"server did not accept connections: {exc!r}\n{server.log_tail()}") from exc
            time.sleep(0.1)
