"""Helpers for tests: the real services on 127.0.0.1 (HTTP file server, moto S3, MLflow server) and the
commands a user runs (specgan, specgan-kfp, dvc) in subprocesses."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


@dataclass
class FileServer:
    """Serves in-memory files over HTTP with Range support and scripted failures."""

    files: dict[str, bytes] = field(default_factory=dict)
    fail_503: dict[str, int] = field(default_factory=dict)   # path -> remaining 503 answers
    drop_after: dict[str, int] = field(default_factory=dict)  # path -> bytes to send before one drop
    drip: dict[str, float] = field(default_factory=dict)  # path -> seconds between 100-byte writes
    redirects: dict[str, str] = field(default_factory=dict)  # path -> path (or absolute URL) it redirects to
    ignore_if_range: set[str] = field(default_factory=set)  # paths whose Range is honoured even if If-Range fails
    silent: set[str] = field(default_factory=set)  # paths whose request is accepted and never answered
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"


@contextlib.contextmanager
def serve_files() -> Iterator[FileServer]:
    """A threaded HTTP server on 127.0.0.1 over a FileServer's in-memory files."""
    state = FileServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.lstrip("/").split("?", 1)[0]  # a presigned URL's query names the same file
            state.requests.append((path, self.headers.get("Range")))
            if state.fail_503.get(path, 0) > 0:
                state.fail_503[path] -= 1
                self.send_error(503, "try again")
                return
            if path in state.silent:
                time.sleep(120)  # accepted, never answered (a hung server): the client's deadline must end it
                return
            if path in state.redirects:
                target = state.redirects[path]
                self.send_response(302)
                self.send_header("Location", target if "://" in target else "/" + target)
                self.end_headers()
                return
            if path not in state.files:
                self.send_error(404)
                return
            data = state.files[path]
            etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
            start = 0
            rng = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            if rng and if_range is not None and if_range != etag and path not in state.ignore_if_range:
                rng = None  # RFC 9110: the file changed, send all of the new one
            if rng and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
                if start >= len(data):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", etag)
            self.end_headers()
            if path in state.drip:
                for i in range(0, len(body), 100):
                    self.wfile.write(body[i:i + 100])
                    self.wfile.flush()
                    time.sleep(state.drip[path])
                return
            cut = state.drop_after.pop(path, None)
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:  # clients that hang up early are fine
            pass

    server = Server(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def start_moto_server() -> Iterator[str]:
    """moto's real S3 HTTP API on 127.0.0.1; sets the AWS_* environment for boto3 and DVC while it runs."""
    port = free_port()
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": url, "MLFLOW_S3_ENDPOINT_URL": url}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        wait_http(url + "/moto-api/", 30)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def start_mlflow_server(home: Path, artifacts_destination: str) -> Iterator[str]:
    """A real `mlflow server` process with sqlite on 127.0.0.1; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{home}/mlflow.db", "--artifacts-destination", artifacts_destination],
        stdout=open(home / "server.log", "wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", 90)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def run_command(tool: str, *args: str, cwd: Path | None = None, env: dict | None = None,
                check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run one of the installed console scripts as a user would; ``check`` fails the test on a non-zero exit."""
    proc = subprocess.run([str(BIN / tool), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def run_cli(*args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """The `specgan` command."""
    return run_command("specgan", *args, timeout=timeout, **kw)


def run_kfp(*args: str, timeout: float = 900, **kw) -> subprocess.CompletedProcess:
    """The `specgan-kfp` command (compile, run)."""
    return run_command("specgan-kfp", *args, timeout=timeout, **kw)


def copy_project(dest: Path, extra: tuple[str, ...] = ()) -> Path:
    """A temporary git repo holding the project's dvc.yaml, params.yaml, data.dvc and DVC config."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "params.yaml", "data.dvc", ".dvcignore", *extra):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / ".dvc", dest / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache", "config.local"))
    shutil.copytree(ROOT / "specgan", dest / "specgan", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], cwd=dest, check=True)
    return dest


def run_dvc(*args: str, cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / "dvc"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    if check and proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc
