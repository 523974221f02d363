"""The gateway as the official Python MCP SDK (PyPI `mcp` 2.x) sees it, over Streamable HTTP.

Each test that talks MCP runs twice:

* ``legacy``      -- `Client(mode="legacy")`: the `initialize` handshake, revision 2025-11-25,
                     with an `Mcp-Session-Id`.
* ``2026-07-28``  -- `Client(mode="2026-07-28")`: the stateless revision, every request stamped
                     with its own `_meta` / `MCP-Protocol-Version`, no session.

`test_auto_mode_discovers_2026` also checks that `Client(mode="auto")` gets the stateless revision
through a real `server/discover` round trip.

Every request and response goes through httpx2 event hooks, so the tests can check HTTP-level
facts (status codes, `WWW-Authenticate`, `Mcp-Session-Id`) behind the SDK's back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import mcp_types as types
import pytest
from conftest import (
    ECHO_SCHEMA,
    FAIL_BODY,
    GET_ITEM_SCHEMA,
    TARGET_NAME,
    Backend,
    Gateway,
    Idp,
)
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

pytestmark = pytest.mark.anyio

ECHO = f"{TARGET_NAME}___echo"
GET_ITEM = f"{TARGET_NAME}___get_item"
FAIL = f"{TARGET_NAME}___fail"

LEGACY = "legacy"
MODERN = "2026-07-28"
# What each Client mode must end up speaking with the gateway.
EXPECTED_VERSION = {LEGACY: "2025-11-25", MODERN: "2026-07-28"}
TIMEOUT_S = 30.0


@dataclass
class Exchange:
    method: str
    url: str
    request_headers: dict[str, str]
    request_body: Any
    status: int
    response_headers: dict[str, str]


@dataclass
class Traffic:
    """What went over the wire between the SDK and the gateway."""

    exchanges: list[Exchange] = field(default_factory=list)

    def rpc_methods(self) -> list[str]:
        return [e.request_body["method"] for e in self.exchanges if isinstance(e.request_body, dict) and "method" in e.request_body]

    def statuses(self) -> list[int]:
        return [e.status for e in self.exchanges]


def _http_client(traffic: Traffic, bearer: str | None) -> httpx2.AsyncClient:
    async def on_response(response: httpx2.Response) -> None:
        request = response.request
        try:
            body = json.loads(request.content) if request.content else None
        except ValueError:
            body = None
        traffic.exchanges.append(
            Exchange(
                method=request.method,
                url=str(request.url),
                request_headers={k.lower(): v for k, v in request.headers.items()},
                request_body=body,
                status=response.status_code,
                response_headers={k.lower(): v for k, v in response.headers.items()},
            )
        )

    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    return httpx2.AsyncClient(headers=headers, timeout=TIMEOUT_S, event_hooks={"response": [on_response]})


@asynccontextmanager
async def connect(gateway: Gateway, bearer: str | None, mode: str) -> AsyncIterator[tuple[Client, Traffic]]:
    """An SDK `Client` on the gateway's /mcp with `bearer`, plus the recorded traffic."""
    traffic = Traffic()
    async with _http_client(traffic, bearer) as http:
        transport = streamable_http_client(gateway.mcp_url, http_client=http)
        async with Client(transport, mode=mode, read_timeout_seconds=TIMEOUT_S, cache=None) as client:
            yield client, traffic


@pytest.fixture(params=[LEGACY, MODERN])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def text_of(result: types.CallToolResult) -> str:
    texts = [block.text for block in result.content if isinstance(block, types.TextContent)]
    assert texts, f"no text content in {result!r}"
    return "\n".join(texts)


async def list_all_tools(client: Client) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    for _ in range(100):  # bounded: a cursor that never ends fails the test instead of hanging it
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            return tools
    pytest.fail("tools/list kept returning a next cursor")


# --------------------------------------------------------------------------------------------
# Negotiation
# --------------------------------------------------------------------------------------------


async def test_legacy_initialize_reports_portcullis(gateway: Gateway, token: str) -> None:
    async with connect(gateway, token, LEGACY) as (client, traffic):
        assert client.protocol_version == "2025-11-25"
        assert client.server_info is not None
        assert client.server_info.name == "portcullis"
        assert client.server_capabilities.tools is not None
        init = client.session.initialize_result
        assert init is not None and init.server_info.name == "portcullis"
        # The handshake opened a session: the initialize response carried Mcp-Session-Id and
        # the SDK sent it back on the next request.
        assert traffic.rpc_methods()[0] == "initialize"
        session_id = traffic.exchanges[0].response_headers.get("mcp-session-id")
        assert session_id, traffic.exchanges[0].response_headers
        await client.list_tools()
        assert traffic.exchanges[-1].request_headers.get("mcp-session-id") == session_id
        assert traffic.exchanges[-1].status == 200


async def test_auto_mode_discovers_2026(gateway: Gateway, token: str) -> None:
    """`mode="auto"` probes `server/discover`; the gateway answers it, so the stateless revision wins."""
    async with connect(gateway, token, "auto") as (client, traffic):
        assert client.protocol_version == "2026-07-28"
        discover = client.session.discover_result
        assert discover is not None
        assert "2026-07-28" in discover.supported_versions
        assert discover.capabilities.tools is not None
        assert traffic.rpc_methods() == ["server/discover"]
        assert traffic.statuses() == [200]
        # At 2026-07-28 the server names itself in the discover result's `_meta` serverInfo stamp.
        assert client.server_info is not None
        assert client.server_info.name == "portcullis"
        tools = await list_all_tools(client)
        assert ECHO in {t.name for t in tools}
        # Stateless: no session was ever handed out or sent.
        assert all("mcp-session-id" not in e.response_headers for e in traffic.exchanges)
        assert all("mcp-session-id" not in e.request_headers for e in traffic.exchanges)
        assert "initialize" not in traffic.rpc_methods()


async def test_2026_mode_is_stateless(gateway: Gateway, token: str) -> None:
    async with connect(gateway, token, MODERN) as (client, traffic):
        assert client.protocol_version == "2026-07-28"
        result = await client.call_tool(ECHO, {"text": "stateless"})
        assert result.is_error is not True, text_of(result)
        assert traffic.exchanges, "no request reached the gateway"
        for exchange in traffic.exchanges:
            assert exchange.request_headers.get("mcp-protocol-version") == "2026-07-28"
            assert "mcp-session-id" not in exchange.response_headers
            assert "mcp-session-id" not in exchange.request_headers
        assert "initialize" not in traffic.rpc_methods()


# --------------------------------------------------------------------------------------------
# tools/list and tools/call (both revisions)
# --------------------------------------------------------------------------------------------


async def test_tools_list_has_fixture_tools_with_schemas(gateway: Gateway, token: str, mode: str) -> None:
    async with connect(gateway, token, mode) as (client, _traffic):
        assert client.protocol_version == EXPECTED_VERSION[mode]
        tools = {t.name: t for t in await list_all_tools(client)}
        assert {ECHO, GET_ITEM, FAIL} <= set(tools), sorted(tools)
        assert tools[ECHO].input_schema == ECHO_SCHEMA
        assert tools[GET_ITEM].input_schema == GET_ITEM_SCHEMA
        assert tools[ECHO].description == "POST the arguments as JSON to /echo; the backend sends them back."


async def test_call_returns_structured_content_and_text(gateway: Gateway, token: str, backend: Backend, mode: str) -> None:
    arguments = {"text": f"héllo from {mode}", "count": 3}
    async with connect(gateway, token, mode) as (client, _traffic):
        before = len(backend.requests())
        result = await client.call_tool(ECHO, arguments)
    assert result.is_error is not True, text_of(result)
    assert result.structured_content == {"received": arguments}
    # The text block carries the same JSON, for clients that ignore structuredContent.
    assert json.loads(text_of(result)) == {"received": arguments}
    # The backend really got the arguments as a JSON body.
    new = backend.requests()[before:]
    echo_calls = [r for r in new if r.method == "POST" and r.raw_path == "/echo"]
    assert len(echo_calls) == 1, new
    assert json.loads(echo_calls[0].body) == arguments
    assert echo_calls[0].headers.get("content-type", "").startswith("application/json")
    # The caller's bearer is never forwarded to the target.
    assert "authorization" not in echo_calls[0].headers


async def test_path_parameter_is_percent_encoded(gateway: Gateway, token: str, backend: Backend, mode: str) -> None:
    async with connect(gateway, token, mode) as (client, _traffic):
        before = len(backend.requests())
        result = await client.call_tool(GET_ITEM, {"id": "a b"})
    assert result.is_error is not True, text_of(result)
    assert result.structured_content is not None
    assert result.structured_content["id"] == "a b"
    # On the wire the space arrived encoded inside one segment.
    assert result.structured_content["rawPath"] == "/items/a%20b"
    new = backend.requests()[before:]
    assert [r.raw_path for r in new] == ["/items/a%20b"]


@pytest.mark.parametrize("bad_id", ["a b/c", "..", "../fail"])
async def test_path_parameter_that_is_not_one_segment_is_refused(
    gateway: Gateway, token: str, backend: Backend, mode: str, bad_id: str
) -> None:
    async with connect(gateway, token, mode) as (client, _traffic):
        before = len(backend.requests())
        result = await client.call_tool(GET_ITEM, {"id": bad_id})
        assert result.is_error is True, result
        assert '"id"' in text_of(result), text_of(result)  # names the offending argument
        assert result.structured_content is None or "rawPath" not in result.structured_content
        # Refused inside the gateway: the backend saw no request at all.
        assert backend.requests()[before:] == []
        # A well-formed call on the same connection still works.
        ok = await client.call_tool(GET_ITEM, {"id": "fine"})
        assert ok.is_error is not True, text_of(ok)
        assert ok.structured_content == {"id": "fine", "rawPath": "/items/fine"}


async def test_invalid_arguments_name_pointer_and_keyword(gateway: Gateway, token: str, backend: Backend, mode: str) -> None:
    async with connect(gateway, token, mode) as (client, _traffic):
        before = len(backend.requests())

        # One line per failure: "- <JSON pointer>: <keyword>: <message>".
        wrong_type = await client.call_tool(ECHO, {"text": 5})
        assert wrong_type.is_error is True
        text = text_of(wrong_type)
        assert '- /text: type: 5 is not of type "string"' in text, text

        two_errors = await client.call_tool(ECHO, {"text": "x" * 201, "count": -1})
        assert two_errors.is_error is True
        text = text_of(two_errors)
        # Every failing pointer is named, each with its keyword.
        assert "- /text: maxLength:" in text, text
        assert "- /count: minimum:" in text, text

        missing = await client.call_tool(ECHO, {})
        assert missing.is_error is True
        text = text_of(missing)
        assert ": required:" in text and '"text"' in text, text

        # None of these reached the backend.
        assert backend.requests()[before:] == []


async def test_backend_error_status_is_a_tool_error(gateway: Gateway, token: str, backend: Backend, mode: str) -> None:
    async with connect(gateway, token, mode) as (client, _traffic):
        before = len(backend.requests())
        result = await client.call_tool(FAIL, {})
    assert result.is_error is True
    text = text_of(result)
    assert "503" in text, text
    # DESIGN 2.3: the error carries a bounded excerpt of the body.
    assert FAIL_BODY in text, text
    assert [(r.method, r.raw_path) for r in backend.requests()[before:]] == [("GET", "/fail")]


async def test_unknown_tool_is_invalid_params(gateway: Gateway, token: str, mode: str) -> None:
    async with connect(gateway, token, mode) as (client, traffic):
        with pytest.raises(MCPError) as excinfo:
            await client.call_tool(f"{TARGET_NAME}___no_such_tool", {})
        assert excinfo.value.code == types.INVALID_PARAMS == -32602
        with pytest.raises(MCPError) as excinfo:
            await client.call_tool("nosuchtarget___echo", {"text": "x"})
        assert excinfo.value.code == -32602
        # The connection is still usable afterwards.
        ok = await client.call_tool(ECHO, {"text": "still here"})
        assert ok.is_error is not True, text_of(ok)
        assert ok.structured_content == {"received": {"text": "still here"}}
    assert "tools/call" in traffic.rpc_methods()


# --------------------------------------------------------------------------------------------
# Inbound authentication, as the SDK meets it
# --------------------------------------------------------------------------------------------


def _assert_bearer_challenge(gateway: Gateway, exchange: Exchange, *, invalid_token: bool) -> None:
    assert exchange.status == 401, exchange
    challenge = exchange.response_headers.get("www-authenticate", "")
    assert challenge.lower().startswith("bearer"), challenge
    assert f'resource_metadata="{gateway.resource_metadata_url}"' in challenge, challenge
    if invalid_token:
        assert 'error="invalid_token"' in challenge, challenge


async def _refused_connect(gateway: Gateway, bearer: str | None, mode: str) -> Traffic:
    """Connect with `bearer`; the SDK must fail, and every recorded exchange must be a 401."""
    traffic = Traffic()
    try:
        async with _http_client(traffic, bearer) as http:
            transport = streamable_http_client(gateway.mcp_url, http_client=http)
            # A modern Client needs no round trip to connect, so make one.
            async with Client(transport, mode=mode, read_timeout_seconds=TIMEOUT_S, cache=None) as client:
                await client.list_tools()
    except BaseException as exc:  # noqa: BLE001 - the SDK wraps its MCPError in task-group exception groups
        error = _find_mcp_error(exc)
        if error is None:
            raise
    else:
        pytest.fail(f"the SDK connected and listed tools with bearer {bearer!r}")
    assert traffic.exchanges, "no request reached the gateway"
    return traffic


def _find_mcp_error(exc: BaseException) -> MCPError | None:
    """The MCPError inside `exc`, which anyio task groups may have wrapped in exception groups."""
    if isinstance(exc, MCPError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find_mcp_error(inner)
            if found is not None:
                return found
    return None


async def test_no_token_is_401_with_resource_metadata(gateway: Gateway, mode: str) -> None:
    traffic = await _refused_connect(gateway, None, mode)
    posts = [e for e in traffic.exchanges if e.method == "POST"]
    assert posts
    for exchange in posts:
        _assert_bearer_challenge(gateway, exchange, invalid_token=False)


async def test_token_for_another_audience_is_401(gateway: Gateway, idp: Idp, mode: str) -> None:
    other = idp.token(resource="http://127.0.0.1:9/other")
    traffic = await _refused_connect(gateway, other, mode)
    posts = [e for e in traffic.exchanges if e.method == "POST"]
    assert posts
    for exchange in posts:
        _assert_bearer_challenge(gateway, exchange, invalid_token=True)


async def test_garbage_token_is_401(gateway: Gateway, mode: str) -> None:
    traffic = await _refused_connect(gateway, "not-a-jwt", mode)
    for exchange in (e for e in traffic.exchanges if e.method == "POST"):
        _assert_bearer_challenge(gateway, exchange, invalid_token=True)


async def test_protected_resource_metadata_points_at_the_idp(gateway: Gateway, idp: Idp) -> None:
    """Where a 401's resource_metadata sends a client: RFC 9728 metadata naming the IdP."""
    async with httpx2.AsyncClient(timeout=TIMEOUT_S) as http:
        response = await http.get(gateway.resource_metadata_url)
    assert response.status_code == 200
    metadata = response.json()
    assert metadata["resource"] == gateway.mcp_url
    assert idp.issuer in metadata["authorization_servers"]
    assert "mcp" in metadata.get("scopes_supported", [])


async def test_valid_token_for_same_request_is_accepted_raw(gateway: Gateway, token: str) -> None:
    """The same POST that gets 401 without a bearer gets a JSON-RPC answer with one."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx2.AsyncClient(timeout=TIMEOUT_S) as http:
        anonymous = await http.post(gateway.mcp_url, json=body, headers=headers)
        authorized = await http.post(gateway.mcp_url, json=body, headers={**headers, "Authorization": f"Bearer {token}"})
        assert anonymous.status_code == 401
        assert f'resource_metadata="{gateway.resource_metadata_url}"' in anonymous.headers["www-authenticate"]
        assert authorized.status_code == 200, authorized.text
        session_id = authorized.headers.get("mcp-session-id")
        assert session_id
        # Close the session again (DELETE /mcp), with the same bearer.
        closed = await http.delete(
            gateway.mcp_url,
            headers={"Authorization": f"Bearer {token}", "Mcp-Session-Id": session_id, "MCP-Protocol-Version": "2025-11-25"},
        )
        assert closed.status_code in (200, 202, 204), (closed.status_code, closed.text)
