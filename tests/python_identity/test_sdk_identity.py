"""The unmodified ``bedrock-agentcore`` SDK (``IdentityClient``, ``@requires_access_token``,
``@requires_api_key``) against the gateway. Its endpoint comes from the SDK's documented
``BEDROCK_AGENTCORE_DP_ENDPOINT`` (set in conftest.py before the SDK is imported), its
credentials from the standard AWS environment.

Each test runs in a fresh ``contextvars`` context: the SDK keeps the workload access token in
a context variable, as AgentCore Runtime sets it per request.
"""

from __future__ import annotations

import contextvars
import functools
import json

from conftest import API_KEY_VALUE, APP_A_RETURN_URL, REGION, authorize_in_browser, jwt_claims


def in_fresh_context(test):
    @functools.wraps(test)
    def run(*args, **kwargs):
        return contextvars.Context().run(test, *args, **kwargs)

    return run


@in_fresh_context
def test_requires_access_token_runs_the_3lo_flow_with_a_runtime_workload_token(gateway):
    from bedrock_agentcore.identity.auth import requires_access_token
    from bedrock_agentcore.runtime import BedrockAgentCoreContext
    from bedrock_agentcore.services.identity import IdentityClient, UserTokenIdentifier

    dana = gateway.user_token("dana")
    identity = IdentityClient(REGION)
    # What AgentCore Runtime does for an inbound JWT: a workload access token for that user.
    wat = identity.get_workload_access_token("agent-a", user_token=dana)["workloadAccessToken"]
    BedrockAgentCoreContext.set_workload_access_token(wat)
    shown: list[str] = []

    def on_auth_url(url: str) -> None:
        # The user opens the URL; the app's return endpoint then binds the session to the
        # signed-in user.
        shown.append(url)
        back = authorize_in_browser(gateway, url, "dana-at-provider", APP_A_RETURN_URL)
        assert back["state"] == "sdk-state"
        identity.complete_resource_token_auth(
            session_uri=back["session_id"], user_identifier=UserTokenIdentifier(user_token=dana)
        )

    @requires_access_token(
        provider_name="downstream",
        scopes=["tools.read"],
        auth_flow="USER_FEDERATION",
        on_auth_url=on_auth_url,
        callback_url=APP_A_RETURN_URL,
        custom_state="sdk-state",
    )
    def call_api(*, access_token: str) -> str:
        return access_token

    token = call_api()
    assert len(shown) == 1 and shown[0].startswith(f"{gateway.url}/oauth2/connect/")
    assert jwt_claims(token)["sub"] == "dana-at-provider"
    # The second call is served from the vault: no URL.
    assert call_api() == token
    assert len(shown) == 1


@in_fresh_context
def test_local_development_path_uses_the_user_id_in_agentcore_json(gateway, tmp_path, monkeypatch):
    from bedrock_agentcore.identity.auth import requires_access_token
    from bedrock_agentcore.services.identity import IdentityClient, UserIdIdentifier

    # The SDK's local-development file: a workload from portcullis.toml and a user id. (Without
    # it the SDK would create a workload through the control plane, which the gateway does not
    # serve: workloads are declared in its config.)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".agentcore.json").write_text(json.dumps({"workload_identity_name": "agent-a", "user_id": "erin"}))
    identity = IdentityClient(REGION)

    def on_auth_url(url: str) -> None:
        back = authorize_in_browser(gateway, url, "erin-at-provider", APP_A_RETURN_URL)
        identity.complete_resource_token_auth(session_uri=back["session_id"], user_identifier=UserIdIdentifier(user_id="erin"))

    @requires_access_token(
        provider_name="downstream",
        scopes=["tools.read"],
        auth_flow="USER_FEDERATION",
        on_auth_url=on_auth_url,
        callback_url=APP_A_RETURN_URL,
    )
    def call_api(*, access_token: str) -> str:
        return access_token

    assert jwt_claims(call_api())["sub"] == "erin-at-provider"


@in_fresh_context
def test_m2m_token_and_api_key_through_the_decorators(gateway):
    from bedrock_agentcore.identity.auth import requires_access_token, requires_api_key
    from bedrock_agentcore.runtime import BedrockAgentCoreContext
    from bedrock_agentcore.services.identity import IdentityClient

    identity = IdentityClient(REGION)
    BedrockAgentCoreContext.set_workload_access_token(identity.get_workload_access_token("agent-b")["workloadAccessToken"])

    @requires_access_token(provider_name="downstream", scopes=["tools.read"], auth_flow="M2M")
    def machine(*, access_token: str) -> str:
        return access_token

    @requires_api_key(provider_name="weather")
    def weather(*, api_key: str) -> str:
        return api_key

    claims = jwt_claims(machine())
    assert claims["iss"] == gateway.downstream.issuer and claims["client_id"] == "downstream-app"
    assert weather() == API_KEY_VALUE


def test_no_token_or_secret_reaches_the_gateway_log(gateway):
    """DESIGN 3.2 invariant 5, after everything above ran: no JWT (user, workload or provider
    token: all start with ``eyJ``), API key or access-key secret in the gateway's output."""
    from conftest import SECRET_ACCESS_KEY

    log = gateway.stderr()
    assert "identity API request refused" in log, "the log is not the gateway's"
    for secret in ("eyJ", API_KEY_VALUE, SECRET_ACCESS_KEY):
        assert secret not in log
