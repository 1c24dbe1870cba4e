"""Real databases for the ledger's tests: a SQLite file, and a PostgreSQL server of Debian's package.

The PostgreSQL server is started once per session in a temporary directory, on loopback, with
`initdb` and `pg_ctl`; it refuses to run as root, so as root it runs as the `postgres` user (the
package creates it). Each test gets a database of its own. Without PostgreSQL the PostgreSQL cases
are skipped, except when `CI=true`, where they fail (`.ci/run` installs it).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .fakes import closed_port

USER = "postgres"


def postgres_bin() -> Path | None:
    def version(path: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path))

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=version)
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).resolve().parent if pg_ctl else None


@dataclass
class PostgresServer:
    bin: Path
    port: int
    run_as: list[str]

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = f"ledger_{uuid.uuid4().hex[:12]}"
        command = [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name]
        subprocess.run(command, check=True, capture_output=True, timeout=30)
        return self.url(name)


def run_postgres(bin: Path) -> Iterator[PostgresServer]:
    # Not under pytest's own tmp dir: its parents are closed to other users.
    directory = Path(tempfile.mkdtemp(prefix="oai2ollama-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        entry = pwd.getpwnam(USER)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
        run_as = ["runuser", "-u", USER, "--"]
    data, log = directory / "data", directory / "server.log"
    port = closed_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {directory} -c fsync=off -c full_page_writes=off"
    try:
        subprocess.run(
            [*run_as, str(bin / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        started = subprocess.run(
            [*run_as, str(bin / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"],
            capture_output=True,
            timeout=90,
        )
        if started.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {started.stderr!r} {log.read_text(errors='replace')}")
        yield PostgresServer(bin, port, run_as)
    finally:
        subprocess.run(
            [*run_as, str(bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(directory, ignore_errors=True)
