"""Fixtures for the Python MCP client tests: a real IdP, a real HTTP backend, the real gateway.

Everything here is a real process or server on 127.0.0.1:

* ``idp``      -- ``node tests/idp/idp.mjs`` (npm ``oidc-provider``), or the already running IdP
                  whose JSON line is in ``PORTCULLIS_TEST_IDP``.
* ``backend``  -- a small ``http.server`` API in a thread: ``POST /echo``, ``GET /items/{id}``,
                  ``GET /fail`` (503). It records every request it receives.
* ``gateway``  -- the ``portcullis`` binary (``PORTCULLIS_BIN``, default
                  ``target/debug/portcullis``) with a generated config and a targets folder
                  holding one HTTP target, ``backend``, that points at the backend above.

The gateway's stderr goes to a file; it is attached to the report of every failed test.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
IDP_SCRIPT = REPO_ROOT / "tests" / "idp" / "idp.mjs"

MCP_CLIENT_ID = "mcp-client"
MCP_CLIENT_SECRET = "mcp-client-secret"
# Upper bounds for start-up; each is a deadline on a polled condition, not a wait.
STARTUP_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 15.0
# How much of the gateway's output a failed test's report shows (the whole file stays on disk).
GATEWAY_LOG_LINES = 200

# The target the gateway serves in every test (DESIGN 2.3). Tools appear as backend___<tool>.
TARGET_NAME = "backend"
ECHO_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "maxLength": 200},
        "count": {"type": "integer", "minimum": 0},
    },
    "required": ["text"],
    "additionalProperties": False,
}
GET_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "string", "minLength": 1}},
    "required": ["id"],
    "additionalProperties": False,
}
FAIL_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
FAIL_BODY = "backend is down for maintenance (test fixture)"


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_process(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=SHUTDOWN_TIMEOUT_S)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


# --------------------------------------------------------------------------------------------
# IdP
# --------------------------------------------------------------------------------------------


@dataclass
class Idp:
    issuer: str
    kid: str

    def token(self, resource: str, scope: str = "mcp") -> str:
        """An access token (RS256 JWT, aud = resource) from the client_credentials grant."""
        response = httpx2.post(
            f"{self.issuer}/token",
            auth=(MCP_CLIENT_ID, MCP_CLIENT_SECRET),
            data={"grant_type": "client_credentials", "scope": scope, "resource": resource},
            timeout=30.0,
        )
        assert response.status_code == 200, f"IdP token endpoint: {response.status_code} {response.text}"
        body = response.json()
        assert body.get("token_type", "").lower() == "bearer", body
        return body["access_token"]


@pytest.fixture(scope="session")
def idp(tmp_path_factory: pytest.TempPathFactory):
    shared = os.environ.get("PORTCULLIS_TEST_IDP")
    if shared:
        info = json.loads(shared)
        yield Idp(issuer=info["issuer"], kid=info["kid"])
        return

    if not (REPO_ROOT / "tests" / "idp" / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the test IdP's dependencies are missing: run `npm ci --prefix tests/idp`")
    log_path = tmp_path_factory.mktemp("idp") / "idp.stderr.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["node", str(IDP_SCRIPT)],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, "IDP_PORT": "0"},
        )
    try:
        # idp.mjs prints exactly one JSON line once it listens. Read it on a thread so that a
        # hung IdP fails the session at the deadline instead of blocking it.
        lines: queue.Queue[bytes] = queue.Queue()
        reader = threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True)
        reader.start()
        try:
            line = lines.get(timeout=STARTUP_TIMEOUT_S)
        except queue.Empty:
            line = b""
        if not line.strip():
            pytest.fail(
                f"the IdP printed no ready line (exit code {proc.poll()}); its stderr:\n"
                + log_path.read_text(errors="replace")
            )
        info = json.loads(line)
        yield Idp(issuer=info["issuer"], kid=info["kid"])
    finally:
        # The IdP exits when its stdin closes; terminate covers a stuck one.
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _stop_process(proc)
        if proc.stdout:
            proc.stdout.close()


# --------------------------------------------------------------------------------------------
# Backend: a real HTTP API for the gateway's HTTP target
# --------------------------------------------------------------------------------------------


@dataclass
class ReceivedRequest:
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Backend:
    base_url: str
    _requests: list[ReceivedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)


class _BackendHandler(BaseHTTPRequestHandler):
    server_version = "portcullis-test-backend/1"
    backend: Backend  # set on the subclass made per fixture

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep pytest's output clean; requests are recorded instead

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _receive(self) -> ReceivedRequest:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = ReceivedRequest(
            method=self.command,
            raw_path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        self.backend.record(request)
        return request

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        request = self._receive()
        if urllib.parse.urlsplit(request.raw_path).path == "/echo":
            try:
                received = json.loads(request.body) if request.body else None
            except ValueError:
                self._send(400, b"body is not JSON", "text/plain")
                return
            self._send_json(200, {"received": received})
            return
        self._send(404, b"no such route", "text/plain")

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        request = self._receive()
        path = urllib.parse.urlsplit(request.raw_path).path
        if path == "/fail":
            self._send(503, FAIL_BODY.encode(), "text/plain; charset=utf-8")
            return
        segments = path.split("/")
        # ["", "items", "<id>"]: exactly one segment after /items/, raw as it arrived.
        if len(segments) == 3 and segments[1] == "items" and segments[2]:
            self._send_json(200, {"id": urllib.parse.unquote(segments[2]), "rawPath": request.raw_path})
            return
        self._send(404, b"no such route", "text/plain")

    def do_PUT(self) -> None:  # noqa: N802
        self._receive()
        self._send(405, b"method not allowed", "text/plain")

    do_DELETE = do_PATCH = do_PUT


@pytest.fixture(scope="session")
def backend():
    backend = Backend(base_url="")
    handler = type("Handler", (_BackendHandler,), {"backend": backend})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    backend.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="test-backend", daemon=True)
    thread.start()
    try:
        yield backend
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=SHUTDOWN_TIMEOUT_S)


# --------------------------------------------------------------------------------------------
# Gateway
# --------------------------------------------------------------------------------------------


@dataclass
class Gateway:
    public_url: str
    stderr_path: Path
    process: subprocess.Popen[bytes]

    @property
    def mcp_url(self) -> str:
        return f"{self.public_url}/mcp"

    @property
    def resource_metadata_url(self) -> str:
        return f"{self.public_url}/.well-known/oauth-protected-resource/mcp"

    def stderr(self, last_lines: int | None = None) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError as e:
            return f"<cannot read {self.stderr_path}: {e}>"
        if last_lines is not None:
            lines = text.splitlines()
            if len(lines) > last_lines:
                text = f"[... {len(lines) - last_lines} earlier lines in {self.stderr_path}]\n" + "\n".join(lines[-last_lines:])
        return text


def target_file(backend: Backend) -> dict[str, Any]:
    return {
        "$schema": str(REPO_ROOT / "schemas" / "target.schema.json"),
        "name": TARGET_NAME,
        "description": "Python test backend (tests/python/conftest.py)",
        "http": {"baseUrl": backend.base_url, "timeoutMs": 10000},
        "tools": [
            {
                "name": "echo",
                "description": "POST the arguments as JSON to /echo; the backend sends them back.",
                "inputSchema": ECHO_SCHEMA,
                "http": {"method": "POST", "path": "/echo"},
            },
            {
                "name": "get_item",
                "description": "GET /items/{id}.",
                "inputSchema": GET_ITEM_SCHEMA,
                "http": {"method": "GET", "path": "/items/{id}"},
            },
            {
                "name": "fail",
                "description": "GET /fail, which always answers 503.",
                "inputSchema": FAIL_SCHEMA,
                "http": {"method": "GET", "path": "/fail"},
            },
        ],
    }


def _gateway_binary() -> Path:
    configured = os.environ.get("PORTCULLIS_BIN")
    path = Path(configured) if configured else Path("target/debug/portcullis")
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file():
        pytest.fail(f"gateway binary {path} not found: run `cargo build` or set PORTCULLIS_BIN")
    return path


@pytest.fixture(scope="session")
def gateway(idp: Idp, backend: Backend, tmp_path_factory: pytest.TempPathFactory):
    binary = _gateway_binary()
    root = tmp_path_factory.mktemp("gateway")
    targets = root / "targets"
    targets.mkdir()
    (targets / f"{TARGET_NAME}.json").write_text(json.dumps(target_file(backend), indent=2))
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    config = root / "portcullis.toml"
    config.write_text(
        "\n".join(
            [
                "[server]",
                f'listen = "127.0.0.1:{port}"',
                f'public_url = "{public_url}"',
                f'data_dir = "{root / "data"}"',
                "[inbound]",
                f'discovery_url = "{idp.issuer}/.well-known/openid-configuration"',
                f'allowed_audiences = ["{public_url}/mcp"]',
                'allowed_scopes = ["mcp"]',
                "[targets]",
                f'dir = "{targets}"',
                "watch = true",
                "",
            ]
        )
    )
    stderr_path = root / "gateway.stderr.log"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [str(binary), "serve", "--config", str(config)],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            env={**os.environ, "NO_COLOR": "1"},
        )
    gw = Gateway(public_url=public_url, stderr_path=stderr_path, process=proc)
    _GATEWAYS.append(gw)
    try:
        _wait_ready(gw)
        yield gw
    finally:
        _stop_process(proc)


def _wait_ready(gw: Gateway) -> None:
    """Poll GET /readyz until it answers 200 (JWKS loaded), the process dies, or the deadline."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last = "no answer yet"
    with httpx2.Client(timeout=5.0) as client:
        while True:
            code = gw.process.poll()
            if code is not None:
                pytest.fail(f"the gateway exited with {code} before it was ready; its output:\n{gw.stderr()}")
            try:
                response = client.get(f"{gw.public_url}/readyz")
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text}"
            except httpx2.TransportError as e:
                last = repr(e)
            if time.monotonic() > deadline:
                pytest.fail(f"the gateway was not ready within {STARTUP_TIMEOUT_S}s ({last}); its output:\n{gw.stderr()}")
            time.sleep(0.05)  # polling interval for the readiness condition above


_GATEWAYS: list[Gateway] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for gw in _GATEWAYS:
            report.sections.append((f"gateway output ({gw.stderr_path})", gw.stderr(last_lines=GATEWAY_LOG_LINES)))


@pytest.fixture(scope="session")
def token(idp: Idp, gateway: Gateway) -> str:
    """A valid bearer for the gateway: aud = <public_url>/mcp, scope mcp."""
    return idp.token(resource=gateway.mcp_url)
