"""Fixtures for the identity API tests: two real IdPs, the real gateway, real AWS clients.

Everything is a real process or server on 127.0.0.1:

* ``inbound``    -- the IdP that issues users' JWTs (``node tests/idp/idp.mjs``, or the one
                    whose JSON line is in ``PORTCULLIS_TEST_IDP``).
* ``downstream`` -- a second ``tests/idp/idp.mjs``: the OAuth provider the agents want tokens
                    for (client ``downstream-app``), like tests/support/downstream.rs.
* ``gateway``    -- the ``portcullis`` binary (``PORTCULLIS_BIN``) with a generated config:
                    ``consent_binding = "app"``, workloads ``agent-a`` and ``agent-b`` (both may
                    use the downstream provider and the API key) and ``agent-c`` (may use
                    nothing), two access keys (one limited to ``agent-b``), signatures for
                    ``us-east-1`` only, the downstream provider and an API key.

The ``bedrock-agentcore`` SDK reads its endpoint from ``BEDROCK_AGENTCORE_DP_ENDPOINT`` when it
is imported, so the gateway's port is chosen and the AWS environment is set here, at import
time, before any test module imports the SDK.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import queue
import secrets
import socket
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
IDP_SCRIPT = REPO_ROOT / "tests" / "idp" / "idp.mjs"
STARTUP_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 15.0
GATEWAY_LOG_LINES = 200

REGION = "us-east-1"
ACCESS_KEY_ID = "AKIAPORTCULLISTEST01"
SECRET_ACCESS_KEY = "portcullis-test-secret-" + "x" * 17
# A key that may act for agent-b only (like an IAM policy scoped to one workload identity).
B_ACCESS_KEY_ID = "AKIAPORTCULLISTESTB1"
B_SECRET_ACCESS_KEY = "portcullis-test-secret-b-" + "y" * 15
API_KEY_NAME = "weather"
API_KEY_VALUE = "wk-test-0123456789"
VAULT_KEY = "c2VjcmV0LXZhdWx0LWtleS0zMi1ieXRlcy1sb25nISE="  # base64 of 32 bytes

MCP_CLIENT_ID = "mcp-client"
MCP_CLIENT_SECRET = "mcp-client-secret"
MCP_REDIRECT_URI = "http://127.0.0.1/callback"
DOWNSTREAM_CLIENT_ID = "downstream-app"
DOWNSTREAM_CLIENT_SECRET = "downstream-app-secret"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


GATEWAY_PORT = free_port()
GATEWAY_URL = f"http://127.0.0.1:{GATEWAY_PORT}"
# The apps' return endpoints: the browser is stopped before it reaches them, so nothing listens.
APP_A_RETURN_URL = f"http://127.0.0.1:{free_port()}/agent-a/callback"
APP_B_RETURN_URL = f"http://127.0.0.1:{free_port()}/agent-b/callback"

# The SDK's documented overrides (bedrock_agentcore/_utils/endpoints.py), and credentials
# through the standard AWS environment: nothing may reach AWS or the instance metadata service.
os.environ.update(
    {
        "BEDROCK_AGENTCORE_DP_ENDPOINT": GATEWAY_URL,
        "BEDROCK_AGENTCORE_CP_ENDPOINT": GATEWAY_URL,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
)
os.environ.pop("AWS_SESSION_TOKEN", None)
os.environ.pop("AWS_PROFILE", None)


def _stop_process(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=SHUTDOWN_TIMEOUT_S)


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, unverified (for assertions about who a token is for)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# --------------------------------------------------------------------------------------------
# A scripted browser (like tests/support/browser.rs)
# --------------------------------------------------------------------------------------------


def _origin(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return (parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))


def _expires_now(attribute: str) -> bool:
    attribute = attribute.strip().lower()
    if attribute.startswith("expires="):
        return "1970" in attribute
    if attribute.startswith("max-age="):
        try:
            return int(attribute[len("max-age=") :]) <= 0
        except ValueError:
            return False
    return False


@dataclass
class Browser:
    """Follows redirects one by one with a cookie jar per origin; at a test IdP's ``/auth`` it
    adds ``login_hint=<account>`` (the IdP then signs that account in and consents)."""

    accounts: dict[tuple[str, int], str] = field(default_factory=dict)
    jars: dict[tuple[str, int], dict[str, str]] = field(default_factory=dict)
    trail: list[str] = field(default_factory=list)

    def account(self, issuer: str, account: str) -> "Browser":
        self.accounts[_origin(issuer)] = account
        return self

    def _store(self, origin: tuple[str, int], set_cookie: str) -> None:
        first, *attributes = set_cookie.split(";")
        if "=" not in first:
            return
        name, value = (p.strip() for p in first.split("=", 1))
        expired = any(_expires_now(a) for a in attributes)
        jar = self.jars.setdefault(origin, {})
        jar.pop(name, None)
        if value and not expired:
            jar[name] = value

    def walk(self, url: str, stop: Callable[[str], bool]) -> str:
        """GETs ``url`` and its redirects until the next URL satisfies ``stop`` (which is not
        requested) and returns that URL. Any non-redirect answer before that fails the test."""
        for _ in range(40):
            parts = urllib.parse.urlsplit(url)
            origin = _origin(url)
            account = self.accounts.get(origin)
            query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
            if account and parts.path.endswith("/auth") and not any(k == "login_hint" for k, _ in query):
                query.append(("login_hint", account))
                parts = parts._replace(query=urllib.parse.urlencode(query))
                url = urllib.parse.urlunsplit(parts)
            if stop(url):
                return url
            self.trail.append(url)
            headers = {}
            jar = self.jars.get(origin)
            if jar:
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
            connection = http.client.HTTPConnection(origin[0], origin[1], timeout=30)
            try:
                target = parts.path + (f"?{parts.query}" if parts.query else "")
                connection.request("GET", target or "/", headers=headers)
                response = connection.getresponse()
                body = response.read()
                for value in response.headers.get_all("Set-Cookie") or []:
                    self._store(origin, value)
                location = response.getheader("Location")
            finally:
                connection.close()
            if 300 <= response.status < 400 and location:
                url = urllib.parse.urljoin(url, location)
                continue
            raise AssertionError(
                f"the browser stopped at {response.status} {url}: {body[:1000]!r}\ntrail: {self.trail}"
            )
        raise AssertionError(f"too many redirects: {self.trail}")


# --------------------------------------------------------------------------------------------
# IdPs
# --------------------------------------------------------------------------------------------


@dataclass
class Idp:
    issuer: str

    def _post_form(self, path: str, form: dict[str, str], basic: tuple[str, str]) -> dict[str, Any]:
        parts = urllib.parse.urlsplit(self.issuer)
        auth = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            connection.request(
                "POST",
                path,
                body=urllib.parse.urlencode(form),
                headers={"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {auth}"},
            )
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        assert response.status == 200, f"{self.issuer}{path}: {response.status} {body!r}"
        return json.loads(body)

    def user_token(self, user: str, resource: str, scope: str = "mcp") -> str:
        """A user's access token (RS256 JWT, aud = resource) from the authorization-code flow
        with PKCE, signed in as ``user`` through ``login_hint``."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(16)
        query = urllib.parse.urlencode(
            {
                "client_id": MCP_CLIENT_ID,
                "response_type": "code",
                "redirect_uri": MCP_REDIRECT_URI,
                "state": state,
                "scope": scope,
                "resource": resource,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        browser = Browser().account(self.issuer, user)
        landed = browser.walk(f"{self.issuer}/auth?{query}", lambda u: u.startswith(MCP_REDIRECT_URI))
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(landed).query))
        assert params.get("state") == state and "code" in params, landed
        tokens = self._post_form(
            "/token",
            {
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": MCP_REDIRECT_URI,
                "code_verifier": verifier,
                "resource": resource,
            },
            (MCP_CLIENT_ID, MCP_CLIENT_SECRET),
        )
        return tokens["access_token"]


def _spawn_idp(log_path: Path) -> tuple[subprocess.Popen[bytes], Idp]:
    if not (REPO_ROOT / "tests" / "idp" / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the test IdP's dependencies are missing: run `npm ci --prefix tests/idp`")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["node", str(IDP_SCRIPT)],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, "IDP_PORT": "0"},
        )
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=STARTUP_TIMEOUT_S)
    except queue.Empty:
        line = b""
    if not line.strip():
        _stop_process(proc)
        pytest.fail(f"the IdP printed no ready line; its stderr:\n{log_path.read_text(errors='replace')}")
    return proc, Idp(issuer=json.loads(line)["issuer"])


def _close_idp(proc: subprocess.Popen[bytes]) -> None:
    # The IdP exits when its stdin closes; terminate covers a stuck one.
    if proc.stdin:
        proc.stdin.close()
    try:
        proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _stop_process(proc)
    if proc.stdout:
        proc.stdout.close()


@pytest.fixture(scope="session")
def inbound(tmp_path_factory: pytest.TempPathFactory):
    shared = os.environ.get("PORTCULLIS_TEST_IDP")
    if shared:
        yield Idp(issuer=json.loads(shared)["issuer"])
        return
    proc, idp = _spawn_idp(tmp_path_factory.mktemp("inbound") / "idp.stderr.log")
    try:
        yield idp
    finally:
        _close_idp(proc)


@pytest.fixture(scope="session")
def downstream(tmp_path_factory: pytest.TempPathFactory):
    proc, idp = _spawn_idp(tmp_path_factory.mktemp("downstream") / "idp.stderr.log")
    try:
        yield idp
    finally:
        _close_idp(proc)


# --------------------------------------------------------------------------------------------
# Gateway
# --------------------------------------------------------------------------------------------


@dataclass
class Gateway:
    url: str
    stderr_path: Path
    process: subprocess.Popen[bytes]
    inbound: Idp
    downstream: Idp

    @property
    def audience(self) -> str:
        return f"{self.url}/mcp"

    def user_token(self, user: str) -> str:
        """A JWT for ``user`` that the gateway's inbound rules accept."""
        return self.inbound.user_token(user, resource=self.audience)

    def browser(self, downstream_account: str) -> Browser:
        return Browser().account(self.downstream.issuer, downstream_account)

    def stderr(self, last_lines: int | None = None) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError as e:
            return f"<cannot read {self.stderr_path}: {e}>"
        lines = text.splitlines()
        if last_lines is not None and len(lines) > last_lines:
            return "\n".join(lines[-last_lines:])
        return text


_GATEWAYS: list[Gateway] = []


def _gateway_binary() -> Path:
    configured = os.environ.get("PORTCULLIS_BIN")
    path = Path(configured) if configured else REPO_ROOT / "target" / "debug" / "portcullis"
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file():
        pytest.fail(f"gateway binary {path} not found: run `cargo build` or set PORTCULLIS_BIN")
    return path


def _write_private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


@pytest.fixture(scope="session")
def gateway(inbound: Idp, downstream: Idp, tmp_path_factory: pytest.TempPathFactory):
    binary = _gateway_binary()
    root = tmp_path_factory.mktemp("gateway")
    (root / "targets").mkdir()
    _write_private(root / "vault.key", VAULT_KEY)
    _write_private(root / "downstream.secret", DOWNSTREAM_CLIENT_SECRET)
    _write_private(root / "key-a.secret", SECRET_ACCESS_KEY)
    _write_private(root / "key-b.secret", B_SECRET_ACCESS_KEY)
    _write_private(root / "weather.key", API_KEY_VALUE)
    config = root / "portcullis.toml"
    config.write_text(
        f"""
[server]
listen = "127.0.0.1:{GATEWAY_PORT}"
public_url = "{GATEWAY_URL}"
data_dir = "data"

[inbound]
discovery_url = "{inbound.issuer}/.well-known/openid-configuration"
allowed_audiences = ["{GATEWAY_URL}/mcp"]
allowed_scopes = ["mcp"]

[targets]
dir = "targets"
watch = false

[vault]
path = "vault"
key_file = "vault.key"

[identity]
consent_binding = "app"
allowed_return_urls = ["{APP_A_RETURN_URL}"]
allowed_regions = ["{REGION}"]

[[identity.workloads]]
name = "agent-a"
allowed_return_urls = ["{APP_A_RETURN_URL}"]
providers = ["downstream"]
api_keys = ["{API_KEY_NAME}"]

[[identity.workloads]]
name = "agent-b"
allowed_return_urls = ["{APP_B_RETURN_URL}"]
providers = ["downstream"]
api_keys = ["{API_KEY_NAME}"]

# Declares nothing: deny by default.
[[identity.workloads]]
name = "agent-c"

[[identity.access_keys]]
access_key_id = "{ACCESS_KEY_ID}"
secret_access_key_file = "key-a.secret"

[[identity.access_keys]]
access_key_id = "{B_ACCESS_KEY_ID}"
secret_access_key_file = "key-b.secret"
workloads = ["agent-b"]

[providers.downstream]
vendor = "custom"
discovery_url = "{downstream.issuer}/.well-known/openid-configuration"
client_id = "{DOWNSTREAM_CLIENT_ID}"
client_secret_file = "downstream.secret"
token_auth_method = "client_secret_post"

[api_keys.{API_KEY_NAME}]
key_file = "weather.key"
"""
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
    gw = Gateway(url=GATEWAY_URL, stderr_path=stderr_path, process=proc, inbound=inbound, downstream=downstream)
    _GATEWAYS.append(gw)
    try:
        _wait_ready(gw)
        yield gw
    finally:
        _stop_process(proc)


def _wait_ready(gw: Gateway) -> None:
    """Poll GET /readyz until 200 (inbound keys loaded), the process dies, or the deadline."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last = "no answer yet"
    while True:
        code = gw.process.poll()
        if code is not None:
            pytest.fail(f"the gateway exited with {code} before it was ready; its output:\n{gw.stderr()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", GATEWAY_PORT, timeout=5)
            connection.request("GET", "/readyz")
            response = connection.getresponse()
            last = f"{response.status} {response.read()[:200]!r}"
            connection.close()
            if response.status == 200:
                return
        except OSError as e:
            last = repr(e)
        if time.monotonic() > deadline:
            pytest.fail(f"the gateway was not ready within {STARTUP_TIMEOUT_S}s ({last}):\n{gw.stderr()}")
        time.sleep(0.05)  # polling interval for the readiness condition above


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for gw in _GATEWAYS:
            report.sections.append((f"gateway output ({gw.stderr_path})", gw.stderr(last_lines=GATEWAY_LOG_LINES)))


# --------------------------------------------------------------------------------------------
# AWS clients, unmodified: only endpoint_url, region and credentials are given
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def client_factory(gateway: Gateway):
    import boto3

    def make(access_key_id: str = ACCESS_KEY_ID, secret: str = SECRET_ACCESS_KEY, region_name: str = REGION, **kwargs: Any):
        return boto3.client(
            "bedrock-agentcore",
            endpoint_url=gateway.url,
            region_name=region_name,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret,
            **kwargs,
        )

    return make


@pytest.fixture(scope="session")
def agentcore(client_factory):
    """The boto3 ``bedrock-agentcore`` client with the full-access test key."""
    return client_factory()


def authorize_in_browser(gateway: Gateway, authorization_url: str, account: str, return_url: str) -> dict[str, str]:
    """Plays the user: opens the authorization URL (which must be the gateway's own connect
    URL, never the provider's), signs in at the downstream IdP as ``account``, and follows the
    redirects until the browser is sent to the app's ``return_url``; returns that URL's query."""
    assert authorization_url.startswith(f"{gateway.url}/oauth2/connect/"), authorization_url
    landed = gateway.browser(account).walk(authorization_url, lambda u: u.startswith(return_url))
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(landed).query))


def client_error(call: Callable[[], Any]) -> tuple[str, str, int]:
    """(error code, message, HTTP status) of the botocore ClientError that ``call`` raises."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as info:
        call()
    response = info.value.response
    return response["Error"]["Code"], response["Error"].get("Message", ""), response["ResponseMetadata"]["HTTPStatusCode"]


def raw_post(
    path: str, body: bytes, sign: bool = True, service: str = "bedrock-agentcore"
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """POSTs ``body`` as is (signed with botocore's own SigV4 signer for ``service`` unless
    ``sign`` is false); returns status, lower-cased headers and the parsed JSON body."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {"Content-Type": "application/json"}
    if sign:
        request = AWSRequest(method="POST", url=f"{GATEWAY_URL}{path}", data=body, headers=headers)
        SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY), service, REGION).add_auth(request)
        headers = dict(request.headers.items())
    connection = http.client.HTTPConnection("127.0.0.1", GATEWAY_PORT, timeout=30)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()
    return response.status, answer_headers, json.loads(payload) if payload else {}
