//! The six data-plane operations. Each validates its input (naming the member at fault),
//! checks that the signing access key may act for the workload and that the workload may use
//! the provider or API key it names, then calls [`Identity`].

use serde_json::{Value, json};

use super::wire::{self, Oauth2Flow, parse};
use super::workload_token::WorkloadToken;
use super::{ApiError, IdentityApi};
use crate::identity::agent::{ResourceToken, ResourceTokenRequest};
use crate::identity::settings::{AccessKeyConfig, ConsentBinding, WorkloadConfig};
use crate::identity::{ConsentOptions, Owner, UserRef};
use crate::inbound::AuthError;
use crate::secret::Secret;

/// Operations of the control plane (`bedrock-agentcore-control`) share the `/identities/`
/// prefix; workloads are declared in `portcullis.toml` instead.
const CONTROL_PLANE: &[&str] = &[
    "CreateWorkloadIdentity",
    "GetWorkloadIdentity",
    "UpdateWorkloadIdentity",
    "DeleteWorkloadIdentity",
    "ListWorkloadIdentities",
];

pub async fn run(
    api: &IdentityApi,
    key: &AccessKeyConfig,
    path: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let operation = path.strip_prefix("/identities/").unwrap_or(path);
    match operation {
        "GetWorkloadAccessToken" => {
            let request: wire::GetWorkloadAccessTokenRequest = parse(body)?;
            let name = wire::required(
                "workloadName",
                request.workload_name.as_ref(),
                &wire::WORKLOAD_NAME,
            )?;
            workload_token(api, key, name, None)
        }
        "GetWorkloadAccessTokenForJWT" => {
            let request: wire::GetWorkloadAccessTokenForJwtRequest = parse(body)?;
            let name = wire::required(
                "workloadName",
                request.workload_name.as_ref(),
                &wire::WORKLOAD_NAME,
            )?;
            let token =
                wire::required("userToken", request.user_token.as_ref(), &wire::USER_TOKEN)?;
            // Check the workload before spending a JWT verification on it.
            workload(api, key, name)?;
            let user = verify_user_token(api, "userToken", token).await?;
            workload_token(api, key, name, Some(&user))
        }
        "GetWorkloadAccessTokenForUserId" => {
            let request: wire::GetWorkloadAccessTokenForUserIdRequest = parse(body)?;
            let name = wire::required(
                "workloadName",
                request.workload_name.as_ref(),
                &wire::WORKLOAD_NAME,
            )?;
            let id = wire::required("userId", request.user_id.as_ref(), &wire::USER_ID)?;
            workload_token(api, key, name, Some(&UserRef::UserId(id.to_string())))
        }
        "oauth2/token" => resource_oauth2_token(api, key, parse(body)?).await,
        "CompleteResourceTokenAuth" => complete_resource_token_auth(api, key, parse(body)?).await,
        "api-key" => {
            let request: wire::GetResourceApiKeyRequest = parse(body)?;
            let token = wire::required(
                "workloadIdentityToken",
                request.workload_identity_token.as_ref(),
                &wire::WORKLOAD_TOKEN,
            )?;
            let name = wire::required(
                "resourceCredentialProviderName",
                request.resource_credential_provider_name.as_ref(),
                &wire::PROVIDER_NAME,
            )?;
            let (token, workload) = authorize(api, key, token)?;
            may_read_api_key(api, workload, name)?;
            let api_key = api.identity.api_key_for(&token.workload, name).await?;
            Ok(json!({ "apiKey": api_key.expose() }))
        }
        other if CONTROL_PLANE.contains(&other) => Err(ApiError::UnknownOperation(format!(
            "{other} is a control-plane operation, which this gateway does not serve: declare workloads in portcullis.toml ([[identity.workloads]] with allowed_return_urls)"
        ))),
        other => Err(ApiError::UnknownOperation(format!(
            "{other:?} is not an operation of the identity API"
        ))),
    }
}

/// The configured workload `name`, if `key` may act for it.
fn workload<'a>(
    api: &'a IdentityApi,
    key: &AccessKeyConfig,
    name: &str,
) -> Result<&'a WorkloadConfig, ApiError> {
    let workload = api.workloads.get(name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "workloadName: no workload identity {name:?} is configured ([[identity.workloads]])"
        ))
    })?;
    if !key.may_act_for(name) {
        return Err(ApiError::AccessDenied(format!(
            "access key {} may not act for workload {name:?}",
            key.access_key_id
        )));
    }
    Ok(workload)
}

fn workload_token(
    api: &IdentityApi,
    key: &AccessKeyConfig,
    name: &str,
    user: Option<&UserRef>,
) -> Result<Value, ApiError> {
    workload(api, key, name)?;
    let token = api.tokens.mint(name, user)?;
    Ok(json!({ "workloadAccessToken": token }))
}

/// A verified workload access token whose workload `key` may act for.
fn authorize<'a>(
    api: &'a IdentityApi,
    key: &AccessKeyConfig,
    token: &str,
) -> Result<(WorkloadToken, &'a WorkloadConfig), ApiError> {
    let token = api.tokens.verify(token)?;
    let workload = api.workloads.get(&token.workload).ok_or_else(|| {
        ApiError::AccessDenied(format!(
            "workloadIdentityToken: workload {:?} is no longer configured",
            token.workload
        ))
    })?;
    if !key.may_act_for(&token.workload) {
        return Err(ApiError::AccessDenied(format!(
            "workloadIdentityToken: access key {} may not act for workload {:?}",
            key.access_key_id, token.workload
        )));
    }
    Ok((token, workload))
}

/// Where a workload's lists are written, for messages that tell the admin what to change.
fn declared_in(api: &IdentityApi, workload: &WorkloadConfig) -> String {
    if workload.name == api.own_workload {
        "[identity]".to_string()
    } else {
        format!("[[identity.workloads]] name = {:?}", workload.name)
    }
}

/// GetResourceOauth2Token (`M2M` and `USER_FEDERATION`) only for a provider the workload
/// lists in `providers`, and only for scopes its `scopes` limit allows (deny by default, as
/// an IAM policy without the credential provider's resource denies it).
fn may_use_provider(
    api: &IdentityApi,
    workload: &WorkloadConfig,
    provider: &str,
    scopes: &[String],
) -> Result<(), ApiError> {
    let grant = workload.provider(provider).ok_or_else(|| {
        ApiError::AccessDenied(format!(
            "workload {:?} may not use credential provider {provider:?}: it is not in the workload's providers ({})",
            workload.name,
            declared_in(api, workload)
        ))
    })?;
    let refused = grant.scopes_not_granted(scopes);
    if let (false, Some(allowed)) = (refused.is_empty(), &grant.scopes) {
        let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
        return Err(ApiError::AccessDenied(format!(
            "workload {:?} may not ask credential provider {provider:?} for scope(s) {}: its scopes.{provider} allows only [{}] ({})",
            workload.name,
            refused.join(" "),
            allowed.join(" "),
            declared_in(api, workload)
        )));
    }
    Ok(())
}

/// GetResourceApiKey only for an API key the workload lists in `api_keys`.
fn may_read_api_key(
    api: &IdentityApi,
    workload: &WorkloadConfig,
    name: &str,
) -> Result<(), ApiError> {
    if workload.may_read_api_key(name) {
        return Ok(());
    }
    Err(ApiError::AccessDenied(format!(
        "workload {:?} may not read API key {name:?}: it is not in the workload's api_keys ({})",
        workload.name,
        declared_in(api, workload)
    )))
}

/// The inbound rules (signature, issuer, audience, scopes, claims), as for MCP callers.
async fn verify_user_token(
    api: &IdentityApi,
    field: &str,
    token: &str,
) -> Result<UserRef, ApiError> {
    match api.verifier.verify(token).await {
        Ok(caller) => Ok(UserRef::Federated {
            issuer: caller.issuer.to_string(),
            subject: caller.subject.to_string(),
        }),
        Err(error @ AuthError::InsufficientScope(_)) => {
            Err(ApiError::AccessDenied(format!("{field}: {error}")))
        }
        Err(AuthError::KeysUnavailable) => Err(ApiError::Internal(
            "the identity provider's signing keys are not available yet; retry".into(),
        )),
        Err(error) => Err(ApiError::Unauthorized(format!("{field}: {error}"))),
    }
}

/// `POST /identities/oauth2/token` (GetResourceOauth2Token).
async fn resource_oauth2_token(
    api: &IdentityApi,
    key: &AccessKeyConfig,
    request: wire::GetResourceOauth2TokenRequest,
) -> Result<Value, ApiError> {
    let token = wire::required(
        "workloadIdentityToken",
        request.workload_identity_token.as_ref(),
        &wire::WORKLOAD_TOKEN,
    )?;
    let provider = wire::required(
        "resourceCredentialProviderName",
        request.resource_credential_provider_name.as_ref(),
        &wire::PROVIDER_NAME,
    )?;
    let scopes = request
        .scopes
        .as_deref()
        .ok_or_else(|| ApiError::field("scopes", "is required"))?;
    wire::each("scopes", scopes, &wire::SCOPE)?;
    let flow = wire::oauth2_flow(request.oauth2_flow.as_ref())?;
    let session_uri = wire::optional(
        "sessionUri",
        request.session_uri.as_ref(),
        &wire::SESSION_URI,
    )?;
    let return_url = wire::optional(
        "resourceOauth2ReturnUrl",
        request.resource_oauth2_return_url.as_ref(),
        &wire::RETURN_URL,
    )?;
    let custom_state = wire::optional(
        "customState",
        request.custom_state.as_ref(),
        &wire::CUSTOM_STATE,
    )?;
    let mut custom_parameters = request.custom_parameters.clone().unwrap_or_default();
    for (name, value) in &custom_parameters {
        wire::check("customParameters", name, &wire::CUSTOM_KEY)?;
        wire::not_a_protocol_parameter(name)?;
        wire::check(
            &format!("customParameters.{name}"),
            value,
            &wire::CUSTOM_VALUE,
        )?;
    }
    let resources = request.resources.as_deref().unwrap_or_default();
    wire::each("resources", resources, &wire::RESOURCE)?;
    if resources.len() > 1 {
        return Err(ApiError::field(
            "resources",
            "this gateway supports at most one resource",
        ));
    }
    let audiences = request.audiences.as_deref().unwrap_or_default();
    wire::each("audiences", audiences, &wire::RESOURCE)?;
    match audiences {
        [] => {}
        // The `audience` authorization/token parameter (Auth0, Okta and others).
        [audience] => {
            custom_parameters.insert("audience".into(), audience.clone());
        }
        _ => {
            return Err(ApiError::field(
                "audiences",
                "this gateway supports at most one audience",
            ));
        }
    }

    let (token, workload) = authorize(api, key, token)?;
    may_use_provider(api, workload, provider, scopes)?;
    if !api.identity.has_provider(provider) {
        return Err(ApiError::NotFound(format!(
            "resourceCredentialProviderName: no OAuth2 credential provider {provider:?} is configured ([providers.{provider}])"
        )));
    }
    let resource_request = |options| ResourceTokenRequest {
        provider,
        scopes,
        custom_parameters: &custom_parameters,
        resource: resources.first().map(String::as_str),
        force_authentication: request.force_authentication.unwrap_or(false),
        options,
    };
    if flow == Oauth2Flow::M2m {
        let access_token = api
            .identity
            .m2m_token(&resource_request(ConsentOptions::default()))
            .await?;
        return Ok(json!({ "accessToken": access_token.expose() }));
    }

    let user = token.user.ok_or_else(|| {
        ApiError::field(
            "workloadIdentityToken",
            "USER_FEDERATION needs a workload access token for a user (GetWorkloadAccessTokenForJWT or GetWorkloadAccessTokenForUserId)",
        )
    })?;
    if matches!(user, UserRef::UserId(_)) && !api.identity.binding_allows_user_ids() {
        return Err(ApiError::field(
            "workloadIdentityToken",
            "a userId cannot sign in at the consent page: with consent_binding = \"login\" use GetWorkloadAccessTokenForJWT",
        ));
    }
    if let Some(url) = return_url
        && !is_allowed_return_url(workload, url)
    {
        return Err(ApiError::field(
            "resourceOauth2ReturnUrl",
            format!(
                "is not one of the allowed return URLs of workload {:?}",
                workload.name
            ),
        ));
    }
    if return_url.is_none()
        && session_uri.is_none()
        && api.identity.binding() == ConsentBinding::App
    {
        return Err(ApiError::field(
            "resourceOauth2ReturnUrl",
            "is required with consent_binding = \"app\": the browser returns there with session_id for CompleteResourceTokenAuth",
        ));
    }
    let owner = Owner {
        workload: token.workload.clone(),
        user,
    };
    let resource_request = resource_request(ConsentOptions {
        return_url: return_url.map(str::to_string),
        custom_state: custom_state.map(Secret::new),
        keep_after_callback: true,
    });
    let answer = match session_uri.and_then(wire::session_id) {
        Some(id) => {
            api.identity
                .poll_session(&owner, id, &resource_request)
                .await?
        }
        None => {
            api.identity
                .user_federation_token(&owner, &resource_request)
                .await?
        }
    };
    Ok(match answer {
        ResourceToken::Token(access_token) => json!({ "accessToken": access_token.expose() }),
        ResourceToken::InProgress {
            authorization_url,
            session_uri,
        } => {
            let mut body = json!({ "sessionUri": session_uri, "sessionStatus": "IN_PROGRESS" });
            if let Some(url) = authorization_url {
                body["authorizationUrl"] = Value::String(url);
            }
            body
        }
        ResourceToken::Failed { session_uri } => {
            json!({ "sessionUri": session_uri, "sessionStatus": "FAILED" })
        }
    })
}

/// Exact match against the workload's `allowedResourceOauth2ReturnUrls` (after URL parsing,
/// so `HTTP://Host` and `http://host` are the same URL).
fn is_allowed_return_url(workload: &WorkloadConfig, url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|url| workload.allowed_return_urls.contains(&url))
}

/// `POST /identities/CompleteResourceTokenAuth`.
async fn complete_resource_token_auth(
    api: &IdentityApi,
    key: &AccessKeyConfig,
    request: wire::CompleteResourceTokenAuthRequest,
) -> Result<Value, ApiError> {
    let session_uri = wire::required(
        "sessionUri",
        request.session_uri.as_ref(),
        &wire::SESSION_URI,
    )?;
    let identifier = request
        .user_identifier
        .ok_or_else(|| ApiError::field("userIdentifier", "is required"))?;
    let user = match (&identifier.user_token, &identifier.user_id) {
        (Some(token), None) => {
            let token = wire::check("userIdentifier.userToken", token, &wire::USER_TOKEN)?;
            verify_user_token(api, "userIdentifier.userToken", token).await?
        }
        (None, Some(id)) => {
            UserRef::UserId(wire::check("userIdentifier.userId", id, &wire::USER_ID)?.to_string())
        }
        _ => {
            return Err(ApiError::field(
                "userIdentifier",
                "exactly one of userToken and userId must be set",
            ));
        }
    };
    let id = wire::session_id(session_uri)
        .ok_or_else(|| ApiError::field("sessionUri", "is not a session URI"))?;
    api.identity
        .complete_session(id, &user, |workload| key.may_act_for(workload))
        .await?;
    Ok(json!({}))
}
