//! AWS Signature Version 4 verification of identity API requests.
//!
//! The signature is recomputed with the `aws-sigv4` crate (the signer of the AWS SDKs) from the
//! incoming request: the headers named in `SignedHeaders` with their received values, the
//! path and query as received, the SHA-256 of the body, and the time in `X-Amz-Date`; then it
//! is compared with the received one in constant time. Requests dated outside a ±5 minute
//! window are refused (AWS SigV4 documentation, "Elements of a signature": the request time
//! must be within five minutes of the service's clock), so a captured request cannot be
//! replayed later.
//!
//! Error types are the ones AWS front ends answer with for the same faults (see
//! [`SigV4Error`]); botocore surfaces them as `ClientError` codes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use http::HeaderMap;

use crate::identity::settings::AccessKeyConfig;

/// The SigV4 signing name of the AgentCore data plane (botocore model `signingName`).
pub const SERVICE: &str = "bedrock-agentcore";
/// Largest tolerated difference between `X-Amz-Date` and the gateway's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a request is not authenticated. Messages never contain a secret or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// No `Authorization` header at all (AWS: `MissingAuthenticationTokenException`).
    #[error("Missing Authentication Token")]
    Missing,
    /// A malformed `Authorization` header or missing `X-Amz-Date`
    /// (AWS: `IncompleteSignatureException`).
    #[error("{0}")]
    Incomplete(String),
    /// The access key id is not configured (AWS: `UnrecognizedClientException`).
    #[error("The security token included in the request is invalid.")]
    UnknownAccessKey,
    /// Wrong secret, tampered request, wrong scope or stale date
    /// (AWS: `InvalidSignatureException`).
    #[error("{0}")]
    Invalid(String),
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
#[derive(Debug, PartialEq, Eq)]
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, SigV4Error> {
    let incomplete = |what: &str| SigV4Error::Incomplete(what.to_string());
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| {
            incomplete("Authorization header requires the AWS4-HMAC-SHA256 algorithm")
        })?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let Some((name, value)) = part.trim().split_once('=') else {
            return Err(incomplete("Authorization header: malformed component"));
        };
        match name {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed_headers = Some(value),
            "Signature" => signature = Some(value),
            _ => return Err(incomplete("Authorization header: unknown component")),
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(incomplete(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope[..] else {
        return Err(incomplete(
            "Credential must be <access key id>/<date>/<region>/<service>/aws4_request",
        ));
    };
    if terminator != "aws4_request" || access_key_id.is_empty() || region.is_empty() {
        return Err(incomplete(
            "Credential must be <access key id>/<date>/<region>/<service>/aws4_request",
        ));
    }
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

/// Which SigV4 credentials the identity API accepts: one of `keys`, in a credential scope
/// `<date>/<region>/bedrock-agentcore/aws4_request` whose region is one of `regions` (empty:
/// any region, the signature still covers it).
#[derive(Debug, Clone, Copy)]
pub struct AcceptedCredentials<'k> {
    pub keys: &'k [AccessKeyConfig],
    pub regions: &'k [String],
}

/// Verifies the request's SigV4 signature and credential scope against `accepted`; returns
/// the key that signed it.
pub fn verify<'k>(
    accepted: AcceptedCredentials<'k>,
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<&'k AccessKeyConfig, SigV4Error> {
    let value = match headers.get(http::header::AUTHORIZATION) {
        None => return Err(SigV4Error::Missing),
        Some(value) => value
            .to_str()
            .map_err(|_| SigV4Error::Incomplete("Authorization header is not ASCII".into()))?,
    };
    let authorization = parse_authorization(value)?;
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            SigV4Error::Incomplete(
                "Authorization header requires existence of an X-Amz-Date header".into(),
            )
        })?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        SigV4Error::Incomplete(
            "X-Amz-Date must be in the ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z'".into(),
        )
    })?;
    let key = accepted
        .keys
        .iter()
        .find(|k| k.access_key_id == authorization.access_key_id)
        .ok_or(SigV4Error::UnknownAccessKey)?;
    check_credential_scope(&authorization, accepted.regions)?;
    if !amz_date.starts_with(authorization.date) || authorization.date.len() != 8 {
        return Err(SigV4Error::Invalid(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP".into(),
        ));
    }
    check_skew(signed_at, now)?;
    let names: Vec<&str> = authorization.signed_headers.split(';').collect();
    if !names.contains(&"host") || !names.contains(&"x-amz-date") {
        return Err(SigV4Error::Invalid(
            "SignedHeaders must include host and x-amz-date".into(),
        ));
    }
    let expected = expected_signature(
        key,
        &authorization,
        &names,
        method,
        path_and_query,
        headers,
        body,
        signed_at,
    )?;
    let given = authorization.signature.as_bytes();
    if aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), given).is_err() {
        return Err(SigV4Error::Invalid(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".into(),
        ));
    }
    Ok(key)
}

/// The credential scope's service must be the AgentCore data plane's signing name and its
/// region one of `regions` (when any are configured), as an AWS endpoint checks them: a
/// signature made for `s3` or for another region is not a signature for this API (AWS SigV4
/// documentation, "Create a credential scope"). The messages begin as AWS's do; the region
/// one adds what this gateway accepts.
fn check_credential_scope(
    authorization: &Authorization<'_>,
    regions: &[String],
) -> Result<(), SigV4Error> {
    if authorization.service != SERVICE {
        return Err(SigV4Error::Invalid(format!(
            "Credential should be scoped to correct service: '{SERVICE}'."
        )));
    }
    if regions.is_empty() || regions.iter().any(|r| r == authorization.region) {
        return Ok(());
    }
    let accepted = regions.join(", ");
    // Echo the region only when it looks like one: the header is the caller's text.
    Err(SigV4Error::Invalid(
        if crate::identity::settings::is_region_name(authorization.region) {
            format!(
                "Credential should be scoped to a valid region, not '{}'. This gateway accepts: {accepted}.",
                authorization.region
            )
        } else {
            format!(
                "Credential should be scoped to a valid region. This gateway accepts: {accepted}."
            )
        },
    ))
}

fn check_skew(signed_at: SystemTime, now: SystemTime) -> Result<(), SigV4Error> {
    if signed_at + MAX_SKEW < now {
        return Err(SigV4Error::Invalid(format!(
            "Signature expired: {} is now earlier than {} ({} - 5 min.)",
            format_amz_date(signed_at),
            format_amz_date(now - MAX_SKEW),
            format_amz_date(now),
        )));
    }
    if signed_at > now + MAX_SKEW {
        return Err(SigV4Error::Invalid(format!(
            "Signature not yet current: {} is still later than {} ({} + 5 min.)",
            format_amz_date(signed_at),
            format_amz_date(now + MAX_SKEW),
            format_amz_date(now),
        )));
    }
    Ok(())
}

/// Signs the request as received with `key`'s secret and returns the hex signature. The
/// signed-header list the signer derives must equal the received one, or a header was
/// dropped or added on the way.
#[allow(clippy::too_many_arguments)]
fn expected_signature(
    key: &AccessKeyConfig,
    authorization: &Authorization<'_>,
    names: &[&str],
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    signed_at: SystemTime,
) -> Result<String, SigV4Error> {
    let invalid = |what: &str| SigV4Error::Invalid(what.to_string());
    let mut signed: Vec<(&str, &str)> = Vec::new();
    for name in names {
        let values = headers.get_all(*name);
        let mut any = false;
        for value in values {
            let value = value
                .to_str()
                .map_err(|_| invalid("a signed header is not ASCII"))?;
            signed.push((name, value));
            any = true;
        }
        if !any {
            return Err(invalid("a header named in SignedHeaders is missing"));
        }
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| invalid("the host header is missing"))?;
    let uri = format!("http://{host}{path_and_query}");
    // The body's hash, not the body: the signer then never holds (or traces) its content.
    let payload = hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body).as_ref());
    let request = SignableRequest::new(
        method,
        uri,
        signed.into_iter(),
        SignableBody::Precomputed(payload),
    )
    .map_err(|_| invalid("the request cannot be canonicalized"))?;
    let identity = aws_credential_types::Credentials::new(
        key.access_key_id.clone(),
        key.secret_access_key.expose().to_string(),
        None,
        None,
        "portcullis-config",
    )
    .into();
    let mut settings = SigningSettings::default();
    // Sign exactly what the client listed (botocore leaves out user-agent itself).
    settings.excluded_headers = None;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(authorization.region)
        .name(authorization.service)
        .time(signed_at)
        .settings(settings)
        .build()
        .map_err(|_| invalid("the credential scope cannot be used for signing"))?
        .into();
    let output = aws_sigv4::http_request::sign(request, &params)
        .map_err(|_| invalid("the request cannot be canonicalized"))?;
    let computed_names = output
        .output()
        .headers()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, value)| {
            value
                .split("SignedHeaders=")
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .map(str::to_string)
        });
    if computed_names.as_deref() != Some(authorization.signed_headers) {
        return Err(invalid(
            "SignedHeaders must list the signed headers in lowercase, sorted, separated by ';'",
        ));
    }
    Ok(output.signature().to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `YYYYMMDD'T'HHMMSS'Z'` (ISO 8601 basic format, UTC) -> time.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u64> {
        let digits = text.get(range)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())
            .flatten()
    };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + hour * 3600 + minute * 60 + second))
}

fn format_amz_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rest = secs % 86_400;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant, "chrono-Compatible
/// Low-Level Date Algorithms", days_from_civil), for years from 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

/// The inverse of [`days_from_civil`] (same source, civil_from_days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
