"""A Redis and a PostgreSQL that one test owns, so that it can stop and restart them.

Both listen on 127.0.0.1 on a free port and keep their files in a temporary
folder. They are never the machine's own servers, which other tests share.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import redis

from tests.services.durability.processes import free_port

START_SECONDS = 30.0


def redis_server() -> str | None:
    """Return the path of redis-server, or None when it is not installed."""
    return shutil.which("redis-server")


def postgres_bin() -> Path | None:
    """Return the folder of initdb and pg_ctl (newest PostgreSQL first), or None."""
    folders = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        folders.append(Path(on_path).resolve().parent)
    for folder in folders:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def postgres_unavailable_reason() -> str | None:
    """Return why a private PostgreSQL cannot be started here, or None when it can."""
    if postgres_bin() is None:
        return "initdb and pg_ctl were not found (install PostgreSQL's server binaries)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "initdb refuses to run as root, and there is no postgres user to run it"
        if shutil.which("runuser") is None:
            return "initdb refuses to run as root, and runuser is missing"
    return None


class PrivateRedis:
    """A redis-server without persistence: a restart empties its queues, as a crash would."""

    def __init__(self, folder: Path) -> None:
        server = redis_server()
        assert server is not None, "redis-server is not installed"
        self.server = server
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            self.server,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
            "--logfile",
            str(self.folder / "redis.log"),
        ]
        self.process = subprocess.Popen(command)
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


class PrivatePostgres:
    """A PostgreSQL cluster made with initdb in a temporary folder, run by pg_ctl.

    As root, initdb and pg_ctl run as the ``postgres`` user, because initdb refuses
    to run as root. fsync is off: the tests restart the server cleanly, never the machine.
    """

    def __init__(self) -> None:
        bin_folder = postgres_bin()
        assert bin_folder is not None, postgres_unavailable_reason()
        self.bin = bin_folder
        self.folder = Path(tempfile.mkdtemp(prefix="steep-postgres-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/steep"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off"
        )
        self._pg_ctl("-o", options, "-l", str(self.folder / "postgres.log"), "start")

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")

    def create_database(self) -> None:
        admin = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute('CREATE DATABASE "steep"')

    def remove(self) -> None:
        """Stop the server if it runs and delete its folder."""
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def _pg_ctl(self, *arguments: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", str(int(START_SECONDS)), *arguments)

    def _run(self, program: str, *arguments: str) -> None:
        command = [*self.run_as, str(self.bin / program), *arguments]
        finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if finished.returncode != 0:
            raise RuntimeError(
                f"{program} failed with exit code {finished.returncode}: "
                f"{finished.stdout}{finished.stderr}"
            )
