"""An upstream MCP server on the official Python SDK (mcp 2.3.0), for `mcp` target tests.

Started by tests/mcp_target_users.rs. It serves Streamable HTTP at /mcp with stateful sessions
and requires a bearer JWT (RS256) from the issuer in UPSTREAM_ISSUER, signed by the key in
UPSTREAM_PUBLIC_KEY_PEM, whose `aud` is the server's own URL (MCP authorization: a token is
bound to the resource it was issued for, RFC 8707). Anything else gets 401 with an RFC 6750
challenge. Prints {"url": ...} on one stdout line once its socket is bound, then serves until
stdin closes or it is killed.
"""

import json
import os
import socket
import sys
import threading

import jwt
import uvicorn
from mcp.server.mcpserver import Context, MCPServer

ISSUER = os.environ["UPSTREAM_ISSUER"]
PUBLIC_KEY = os.environ["UPSTREAM_PUBLIC_KEY_PEM"]

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
URL = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"

server = MCPServer("python-upstream")


def claims_of(authorization: str | None) -> dict:
    if not authorization or not authorization.startswith("Bearer "):
        return {}
    return jwt.decode(authorization[len("Bearer "):], options={"verify_signature": False})


@server.tool(description="Who the server thinks is calling, and on which session.", structured_output=True)
def whoami(ctx: Context) -> dict[str, str | None]:
    headers = ctx.headers or {}
    claims = claims_of(headers.get("authorization"))
    return {
        "sub": claims.get("sub"),
        "iss": claims.get("iss"),
        "aud": claims.get("aud"),
        "session": headers.get("mcp-session-id"),
    }


class RequireToken:
    """ASGI middleware in front of the MCP app: the bearer check of a resource server."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            authorization = headers.get("authorization", "")
            try:
                if not authorization.startswith("Bearer "):
                    raise jwt.InvalidTokenError("no bearer token")
                jwt.decode(
                    authorization[len("Bearer "):],
                    PUBLIC_KEY,
                    algorithms=["RS256"],
                    issuer=ISSUER,
                    audience=URL,
                )
            except jwt.InvalidTokenError:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"www-authenticate", b'Bearer error="invalid_token"'),
                            (b"content-type", b"application/json"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": b'{"error":"invalid_token"}'})
                return
        await self.app(scope, receive, send)


def exit_when_stdin_closes():
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    print(json.dumps({"url": URL}), flush=True)
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    app = RequireToken(server.streamable_http_app())
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
