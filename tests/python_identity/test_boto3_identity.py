"""The unmodified boto3 ``bedrock-agentcore`` client against the gateway's identity API.

Only ``endpoint_url``, ``region_name`` and the access key differ from code written for the
managed service. The downstream provider is a real OIDC provider; the user's browser is
scripted (cookies, redirects, ``login_hint`` at the provider).
"""

from __future__ import annotations

import datetime
from unittest import mock

from conftest import (
    API_KEY_NAME,
    API_KEY_VALUE,
    APP_A_RETURN_URL,
    APP_B_RETURN_URL,
    B_ACCESS_KEY_ID,
    B_SECRET_ACCESS_KEY,
    authorize_in_browser,
    client_error,
    jwt_claims,
    raw_post,
)

PROVIDER = "downstream"
SCOPES = ["tools.read"]
SESSION_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"


def user_federation(agentcore, workload_token: str, **extra):
    return agentcore.get_resource_oauth2_token(
        workloadIdentityToken=workload_token,
        resourceCredentialProviderName=PROVIDER,
        scopes=SCOPES,
        oauth2Flow="USER_FEDERATION",
        **extra,
    )


def token_for_jwt(agentcore, workload: str, user_jwt: str) -> str:
    return agentcore.get_workload_access_token_for_jwt(workloadName=workload, userToken=user_jwt)["workloadAccessToken"]


def test_user_federation_end_to_end_with_session_binding(gateway, agentcore):
    alice = gateway.user_token("alice")
    wat = token_for_jwt(agentcore, "agent-a", alice)
    assert jwt_claims(wat)["workload"] == "agent-a"

    first = user_federation(agentcore, wat, resourceOauth2ReturnUrl=APP_A_RETURN_URL, customState="opaque-state-123")
    assert "accessToken" not in first
    assert first["sessionStatus"] == "IN_PROGRESS"
    session_uri = first["sessionUri"]
    assert session_uri.startswith(SESSION_URI_PREFIX)
    poll = {"sessionUri": session_uri}
    assert user_federation(agentcore, wat, **poll)["sessionStatus"] == "IN_PROGRESS"

    back = authorize_in_browser(gateway, first["authorizationUrl"], "alice-at-provider", APP_A_RETURN_URL)
    assert back["state"] == "opaque-state-123"
    # The browser brings back a completion id of its own: whoever holds the consent URL (its
    # sessionUri) cannot complete what this browser consented to.
    completion = back["session_id"]
    assert completion.startswith(SESSION_URI_PREFIX) and completion != session_uri
    # The provider answered, but nothing is linked until the app names the user.
    authorized = user_federation(agentcore, wat, **poll)
    assert authorized["sessionStatus"] == "IN_PROGRESS" and "accessToken" not in authorized
    # The initiating session's own URI completes nothing.
    code, _, _ = client_error(
        lambda: agentcore.complete_resource_token_auth(sessionUri=session_uri, userIdentifier={"userToken": alice})
    )
    assert code == "ValidationException"

    agentcore.complete_resource_token_auth(sessionUri=completion, userIdentifier={"userToken": alice})
    token = user_federation(agentcore, wat, **poll)["accessToken"]
    claims = jwt_claims(token)
    assert claims["iss"] == gateway.downstream.issuer
    assert claims["sub"] == "alice-at-provider"
    assert "tools.read" in claims["scope"].split()
    # Later calls read the vault: no session, no URL.
    assert user_federation(agentcore, wat, resourceOauth2ReturnUrl=APP_A_RETURN_URL)["accessToken"] == token
    # A completion id is single use.
    code, _, status = client_error(
        lambda: agentcore.complete_resource_token_auth(sessionUri=completion, userIdentifier={"userToken": alice})
    )
    assert (code, status) == ("ResourceNotFoundException", 404)
    # forceAuthentication starts a new consent even though a token exists.
    forced = user_federation(agentcore, wat, resourceOauth2ReturnUrl=APP_A_RETURN_URL, forceAuthentication=True)
    assert forced["authorizationUrl"].startswith(f"{gateway.url}/oauth2/connect/")
    assert forced["sessionUri"] != session_uri


def test_m2m_client_credentials(gateway, agentcore):
    wat = agentcore.get_workload_access_token(workloadName="agent-a")["workloadAccessToken"]
    token = agentcore.get_resource_oauth2_token(
        workloadIdentityToken=wat, resourceCredentialProviderName=PROVIDER, scopes=SCOPES, oauth2Flow="M2M"
    )["accessToken"]
    claims = jwt_claims(token)
    assert claims["iss"] == gateway.downstream.issuer
    assert claims["client_id"] == "downstream-app"
    assert "tools.read" in claims["scope"].split()
    # A workload token without a user cannot act for one.
    code, message, status = client_error(lambda: user_federation(agentcore, wat, resourceOauth2ReturnUrl=APP_A_RETURN_URL))
    assert (code, status) == ("ValidationException", 400)
    assert message.startswith("workloadIdentityToken:"), message


def test_api_key_from_config(agentcore):
    wat = agentcore.get_workload_access_token_for_user_id(workloadName="agent-a", userId="frank")["workloadAccessToken"]
    answer = agentcore.get_resource_api_key(workloadIdentityToken=wat, resourceCredentialProviderName=API_KEY_NAME)
    assert answer["apiKey"] == API_KEY_VALUE
    # A name the workload does not declare is denied, whether it exists or not.
    code, message, status = client_error(
        lambda: agentcore.get_resource_api_key(workloadIdentityToken=wat, resourceCredentialProviderName="nope")
    )
    assert (code, status) == ("AccessDeniedException", 403)
    assert message.startswith('workload "agent-a" may not read API key "nope"'), message


def test_a_workload_uses_only_what_it_declares(agentcore):
    wat = agentcore.get_workload_access_token(workloadName="agent-c")["workloadAccessToken"]
    code, message, status = client_error(
        lambda: agentcore.get_resource_api_key(workloadIdentityToken=wat, resourceCredentialProviderName=API_KEY_NAME)
    )
    assert (code, status) == ("AccessDeniedException", 403)
    assert f'workload "agent-c" may not read API key "{API_KEY_NAME}"' in message, message
    code, message, status = client_error(
        lambda: agentcore.get_resource_oauth2_token(
            workloadIdentityToken=wat, resourceCredentialProviderName=PROVIDER, scopes=SCOPES, oauth2Flow="M2M"
        )
    )
    assert (code, status) == ("AccessDeniedException", 403)
    assert f'workload "agent-c" may not use credential provider "{PROVIDER}"' in message, message


def test_unknown_workload_is_not_found(agentcore):
    code, message, status = client_error(lambda: agentcore.get_workload_access_token(workloadName="agent-zzz"))
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert message.startswith("workloadName:"), message


# ---------------------------------------------------------------------------------------------
# Authentication
# ---------------------------------------------------------------------------------------------


def test_unsigned_requests_are_refused_with_the_aws_error_shape(client_factory):
    from botocore import UNSIGNED
    from botocore.config import Config

    unsigned = client_factory(config=Config(signature_version=UNSIGNED))
    code, _, status = client_error(lambda: unsigned.get_workload_access_token(workloadName="agent-a"))
    assert (code, status) == ("MissingAuthenticationTokenException", 403)
    status, headers, body = raw_post("/identities/GetWorkloadAccessToken", b'{"workloadName":"agent-a"}', sign=False)
    assert status == 403
    assert headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    assert headers["content-type"].startswith("application/json")
    assert body == {"message": "Missing Authentication Token"}


def test_wrong_secret_unknown_key_and_stale_date_are_refused(client_factory):
    wrong = client_factory(secret="not-the-secret-at-all-0123456789")
    code, message, status = client_error(lambda: wrong.get_workload_access_token(workloadName="agent-a"))
    assert (code, status) == ("InvalidSignatureException", 403)
    assert "signature" in message.lower()

    unknown = client_factory(access_key_id="AKIAUNKNOWN000000000")
    code, _, status = client_error(lambda: unknown.get_workload_access_token(workloadName="agent-a"))
    assert (code, status) == ("UnrecognizedClientException", 403)

    # botocore's own clock, ten minutes behind: outside the ±5 minute window.
    stale = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=10)
    client = client_factory()
    with mock.patch("botocore.auth.get_current_datetime", return_value=stale):
        code, message, status = client_error(lambda: client.get_workload_access_token(workloadName="agent-a"))
    assert (code, status) == ("InvalidSignatureException", 403)
    assert message.startswith("Signature expired"), message


def test_a_client_for_another_region_or_service_is_refused(client_factory):
    # identity.allowed_regions = ["us-east-1"]: boto3 signs for its region_name.
    ireland = client_factory(region_name="eu-west-1")
    code, message, status = client_error(lambda: ireland.get_workload_access_token(workloadName="agent-a"))
    assert (code, status) == ("InvalidSignatureException", 403)
    assert message.startswith("Credential should be scoped to a valid region, not 'eu-west-1'."), message

    # A signature made for another service is no signature for this API.
    status, headers, body = raw_post("/identities/GetWorkloadAccessToken", b'{"workloadName":"agent-a"}', service="s3")
    assert (status, headers["x-amzn-errortype"]) == (403, "InvalidSignatureException")
    assert body == {"message": "Credential should be scoped to correct service: 'bedrock-agentcore'."}


# ---------------------------------------------------------------------------------------------
# Binding: users, workloads, return URLs
# ---------------------------------------------------------------------------------------------


def test_another_users_completion_is_refused_burns_the_grant_and_nothing_is_stored(gateway, agentcore):
    alice, bob = gateway.user_token("alice2"), gateway.user_token("bob2")
    wat_alice = token_for_jwt(agentcore, "agent-a", alice)
    wat_bob = token_for_jwt(agentcore, "agent-a", bob)
    first = user_federation(agentcore, wat_alice, resourceOauth2ReturnUrl=APP_A_RETURN_URL)
    session_uri = first["sessionUri"]
    back = authorize_in_browser(gateway, first["authorizationUrl"], "alice2-at-provider", APP_A_RETURN_URL)
    completion = back["session_id"]

    # Bob's identity cannot bind Alice's grant, by JWT or by a user id. The first refusal
    # burns the held token: the completion id is worthless afterwards, to anyone.
    code, message, status = client_error(
        lambda: agentcore.complete_resource_token_auth(sessionUri=completion, userIdentifier={"userToken": bob})
    )
    assert (code, status) == ("AccessDeniedException", 403), message
    for identifier in ({"userId": "alice2"}, {"userToken": alice}):
        code, message, status = client_error(
            lambda identifier=identifier: agentcore.complete_resource_token_auth(
                sessionUri=completion, userIdentifier=identifier
            )
        )
        assert (code, status) == ("ResourceNotFoundException", 404), message
    # Bob cannot poll Alice's session either.
    code, _, _ = client_error(lambda: user_federation(agentcore, wat_bob, sessionUri=session_uri))
    assert code == "AccessDeniedException"
    # Nothing was stored for Bob: he is asked to authorize.
    assert "authorizationUrl" in user_federation(agentcore, wat_bob, resourceOauth2ReturnUrl=APP_A_RETURN_URL)
    # Alice's polling learns that this consent failed; she consents again and it works.
    assert user_federation(agentcore, wat_alice, sessionUri=session_uri)["sessionStatus"] == "FAILED"
    again = user_federation(agentcore, wat_alice, resourceOauth2ReturnUrl=APP_A_RETURN_URL)
    back = authorize_in_browser(gateway, again["authorizationUrl"], "alice2-at-provider", APP_A_RETURN_URL)
    agentcore.complete_resource_token_auth(sessionUri=back["session_id"], userIdentifier={"userToken": alice})
    token = user_federation(agentcore, wat_alice, sessionUri=again["sessionUri"])["accessToken"]
    assert jwt_claims(token)["sub"] == "alice2-at-provider"


def test_a_return_url_not_allowed_for_the_workload_is_refused(gateway, agentcore):
    wat = token_for_jwt(agentcore, "agent-a", gateway.user_token("carl"))
    for url in ("https://evil.example/callback", APP_B_RETURN_URL, APP_A_RETURN_URL + "/more"):
        code, message, status = client_error(lambda url=url: user_federation(agentcore, wat, resourceOauth2ReturnUrl=url))
        assert (code, status) == ("ValidationException", 400)
        assert message.startswith("resourceOauth2ReturnUrl: is not one of the allowed return URLs"), message
    # With consent_binding = "app" the return URL is where the session is bound: required.
    code, message, _ = client_error(lambda: user_federation(agentcore, wat))
    assert code == "ValidationException" and message.startswith("resourceOauth2ReturnUrl: is required"), message


def test_a_workload_token_is_useless_for_another_workload(gateway, agentcore, client_factory):
    user = gateway.user_token("gina")
    wat_a = token_for_jwt(agentcore, "agent-a", user)
    only_b = client_factory(access_key_id=B_ACCESS_KEY_ID, secret=B_SECRET_ACCESS_KEY)
    # The agent-b key cannot use agent-a's token, nor get one.
    calls = [
        lambda: only_b.get_resource_api_key(workloadIdentityToken=wat_a, resourceCredentialProviderName=API_KEY_NAME),
        lambda: user_federation(only_b, wat_a, resourceOauth2ReturnUrl=APP_A_RETURN_URL),
        lambda: only_b.get_workload_access_token_for_jwt(workloadName="agent-a", userToken=user),
    ]
    for call in calls:
        code, message, status = client_error(call)
        assert (code, status) == ("AccessDeniedException", 403), message
    # Same user, agent-b's token: agent-a's session is not its session.
    wat_b = token_for_jwt(only_b, "agent-b", user)
    first = user_federation(agentcore, wat_a, resourceOauth2ReturnUrl=APP_A_RETURN_URL)
    code, message, _ = client_error(lambda: user_federation(only_b, wat_b, sessionUri=first["sessionUri"]))
    assert code == "AccessDeniedException" and "another workload" in message, message
    # A forged token (agent-b's payload under agent-a's signature) is not a token at all.
    head, _, signature = wat_a.split(".")
    forged = ".".join([head, wat_b.split(".")[1], signature])
    code, _, status = client_error(lambda: user_federation(agentcore, forged, resourceOauth2ReturnUrl=APP_A_RETURN_URL))
    assert (code, status) == ("UnauthorizedException", 401)


def test_malformed_bodies_are_validation_exceptions_naming_the_member(agentcore, gateway):
    status, headers, body = raw_post("/identities/GetWorkloadAccessToken", b"{not json")
    assert (status, headers["x-amzn-errortype"], body["reason"]) == (400, "ValidationException", "CannotParse")
    assert body["message"] == "request body: malformed JSON (a JSON object is expected)", body
    status, _, body = raw_post("/identities/GetWorkloadAccessToken", b'{"workloadName": 5}')
    assert status == 400 and body["message"] == "workloadName: wrong type or shape", body
    status, _, body = raw_post("/identities/GetWorkloadAccessToken", b"{}")
    assert body["message"] == "workloadName: is required"
    assert body["fieldList"] == [{"name": "workloadName", "message": "is required"}]
    status, _, body = raw_post("/identities/CompleteResourceTokenAuth", b'{"sessionUri": "urn:ietf:params:oauth:request_uri:x", "userIdentifier": {}}')
    assert body["message"].startswith("userIdentifier: exactly one of"), body
    status, headers, _ = raw_post("/identities/NoSuchOperation", b"{}")
    assert (status, headers["x-amzn-errortype"]) == (404, "UnknownOperationException")

    wat = token_for_jwt(agentcore, "agent-a", gateway.user_token("hal"))
    code, message, _ = client_error(
        lambda: agentcore.get_resource_oauth2_token(
            workloadIdentityToken=wat, resourceCredentialProviderName="not a name!", scopes=SCOPES, oauth2Flow="M2M"
        )
    )
    assert (code, message) == ("ValidationException", "resourceCredentialProviderName: must match [a-zA-Z0-9\\-_]{1,128}")
    code, message, _ = client_error(lambda: user_federation(agentcore, wat, sessionUri="https://not-a-session"))
    assert code == "ValidationException" and message.startswith("sessionUri: must match"), message
    code, message, _ = client_error(
        lambda: agentcore.get_resource_oauth2_token(
            workloadIdentityToken=wat, resourceCredentialProviderName=PROVIDER, scopes=SCOPES, oauth2Flow="ON_BEHALF_OF_TOKEN_EXCHANGE"
        )
    )
    assert code == "ValidationException" and message.startswith("oauth2Flow:"), message
    code, message, _ = client_error(
        lambda: agentcore.complete_resource_token_auth(sessionUri=SESSION_URI_PREFIX + "unknown", userIdentifier={"userId": "hal"})
    )
    assert code == "ResourceNotFoundException", message
    # Nothing was stored by any of these: hal still has to authorize.
    assert "authorizationUrl" in user_federation(agentcore, wat, resourceOauth2ReturnUrl=APP_A_RETURN_URL)
