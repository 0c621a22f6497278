"""Is the tracking store there? A quick probe before a command opens it, and MLflow's HTTP retries bounded.

MLflow's HTTP client retries a refused connection 7 times with exponential backoff and waits up to 120 s for
an answer (``MLFLOW_HTTP_REQUEST_*`` in ``mlflow.environment_variables``): minutes before a command that
points at a server nobody runs says anything, and then a traceback. Every command that opens the store first
asks ``require_store``, which answers within ``PROBE_SECONDS`` and raises ``StoreUnreachable`` (a
ValueError: the CLI prints its one line and exits 2). ``bound_http_retries`` lowers MLflow's own retries for
the calls made after that, in the driver and in the Ray workers that run the trials' proxies: the proxy
retries on its next poll instead (``orchestrator.run.proxy``), so a long wait inside one call only delays it.
A value the user set in the environment is kept.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

__all__ = [
    "PROBE_SECONDS", "TAG", "StoreUnreachable", "absolute_tracking_uri", "bound_http_retries", "is_unreachable_error",
    "require_store", "sqlite_path", "unreachable_reason",
]  # fmt: skip

TAG = "convsweep."  # prefix of every MLflow tag convsweep writes
PROBE_SECONDS = 3.0
# 3 retries with backoff factor 1: about 6 s on a refused connection, 20 s at most per attempt without answer
_HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


class StoreUnreachable(ValueError):
    """The tracking store cannot be opened; the message is the one line the CLI prints."""

    def __init__(self, where: str, uri: str, reason: str, todo: str | None = None) -> None:
        self.uri, self.reason = uri, reason
        super().__init__(f"convsweep: {where}: MLflow at {uri} is unreachable ({reason}); {todo or advice(uri)}")


def advice(uri: str) -> str:
    if _scheme(uri) in ("http", "https"):
        return ("start the server (mlflow server ...) or set tracking.uri to one that answers "
                "(--set tracking.uri=sqlite:///mlruns.db for a local file); nothing was submitted")
    return "set tracking.uri to a store in a folder that exists and is writable; nothing was submitted"


def bound_http_retries() -> None:
    """Bound MLflow's HTTP retries in this process (and the processes it starts), unless the user set them."""
    for key, value in _HTTP_BOUNDS.items():
        os.environ.setdefault(key, value)


def _scheme(uri: str) -> str:
    return uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else ""


def _http_reason(uri: str, timeout: float) -> str | None:
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the user's own server
            response.read(64)
        return None
    except urllib.error.HTTPError as exc:
        # 401/403/404: something answers (auth in front, another route): MLflow will say what is wrong
        return f"HTTP {exc.code} from {url}" if exc.code >= 500 else None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError):
            return "connection refused"
        if isinstance(reason, socket.gaierror):
            return f"unknown host {urlparse(uri).hostname}"
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return f"no answer within {timeout:g} s"
        return str(reason)
    except (TimeoutError, socket.timeout):
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)


def absolute_tracking_uri(uri: str, base: str | Path | None = None) -> str:
    """Pin a relative SQLite path to ``base`` (default: cwd), so processes with another cwd find the same file
    (and MLflow, which keeps one store per URI string, opens the file meant)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri.startswith(prefix + "/") or uri == prefix + ":memory:":
        return uri
    path = Path(base or Path.cwd()) / uri[len(prefix) :]
    return prefix + str(path.resolve())


def sqlite_path(uri: str) -> Path | None:
    """The absolute file of a ``sqlite:///`` store; None for any other store (or an in-memory one)."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri.split(":", 1)[1]
    if not rest.startswith("///") or rest[3:] in ("", ":memory:"):
        return None
    return Path(os.path.abspath(rest[3:]))


def _sqlite_reason(uri: str) -> str | None:
    path = sqlite_path(uri)
    if path is None:
        return None
    if path.exists():
        if not path.is_file():
            return f"{path} is not a file"
        try:
            with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=PROBE_SECONDS) as db:
                db.execute("select count(*) from sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            return None if "locked" in str(exc) else f"{path}: {exc}"  # a busy store is a working one
        except sqlite3.DatabaseError as exc:
            return f"{path}: {exc}"
        return None
    return _writable_folder_reason(path.parent)


def _writable_folder_reason(folder: Path) -> str | None:
    if not folder.is_dir():
        return f"no folder {folder}"
    try:  # os.access says yes to root on read-only mounts and /proc: try it
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return f"cannot create files in {folder}: {exc.strerror or exc}"
    return None


def unreachable_reason(uri: str, timeout: float = PROBE_SECONDS) -> str | None:
    """Why the store at ``uri`` cannot be opened (a few words), or None when it can (or cannot be told here:
    database servers and Databricks are left to MLflow)."""
    scheme = _scheme(uri)
    if scheme in ("http", "https"):
        return _http_reason(uri, timeout)
    if scheme == "sqlite":
        return _sqlite_reason(uri)
    if scheme == "file":
        path = Path(os.path.abspath(urlparse(uri).path))
        return None if path.is_dir() else _writable_folder_reason(path.parent)
    return None


def require_store(uri: str, where: str, todo: str | None = None, timeout: float = PROBE_SECONDS) -> None:
    """Raise ``StoreUnreachable`` (one line: ``where``, the URI, why, what to do) unless the store answers."""
    bound_http_retries()
    reason = unreachable_reason(uri, timeout)
    if reason is not None:
        raise StoreUnreachable(where, uri, reason, todo)


def is_unreachable_error(exc: BaseException) -> bool:
    """An error of an MLflow call that means the store is not there (as opposed to a bad request)."""
    text = str(exc).lower()
    return any(word in text for word in ("connection refused", "max retries exceeded", "failed to establish",
                                         "read timed out", "connecttimeout", "connection aborted",
                                         "remote end closed", "unable to open database file"))
