//! SigV4 verification against requests signed the way the AWS SDKs sign them (the same
//! `aws-sigv4` signer, default settings, as a client would use it).

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use http::{HeaderMap, HeaderValue};

use super::*;
use crate::secret::Secret;

const BODY: &[u8] = br#"{"workloadName":"agent-a"}"#;
const PATH: &str = "/identities/GetWorkloadAccessToken";

fn keys() -> Vec<AccessKeyConfig> {
    vec![AccessKeyConfig {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        workloads: None,
    }]
}

/// Headers of a request to `127.0.0.1:8080` signed with `secret` at `time` for `service`.
fn signed(secret: &str, time: SystemTime, service: &str, body: &[u8]) -> HeaderMap {
    signed_in("us-east-1", secret, time, service, body)
}

/// As [`signed`], with the credential scope's region `region`.
fn signed_in(
    region: &str,
    secret: &str,
    time: SystemTime,
    service: &str,
    body: &[u8],
) -> HeaderMap {
    let identity =
        aws_credential_types::Credentials::new("AKIDEXAMPLE", secret, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let base = [
        ("content-type", "application/json"),
        ("user-agent", "Boto3/1.0 test"),
        ("host", "127.0.0.1:8080"),
    ];
    let request = SignableRequest::new(
        "POST",
        format!("http://127.0.0.1:8080{PATH}"),
        base.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let mut headers = HeaderMap::new();
    for (name, value) in base {
        headers.insert(name, HeaderValue::from_static(value));
    }
    for (name, value) in instructions.headers() {
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

fn check(headers: &HeaderMap, body: &[u8], now: SystemTime) -> Result<String, SigV4Error> {
    check_in(&[], headers, body, now)
}

/// As [`check`], with `identity.allowed_regions = regions`.
fn check_in(
    regions: &[String],
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<String, SigV4Error> {
    let keys = keys();
    let accepted = AcceptedCredentials {
        keys: &keys,
        regions,
    };
    verify(accepted, "POST", PATH, headers, body, now).map(|k| k.access_key_id.clone())
}

#[test]
fn a_correctly_signed_request_names_its_access_key() {
    let now = SystemTime::now();
    let headers = signed(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        now,
        SERVICE,
        BODY,
    );
    assert_eq!(check(&headers, BODY, now).unwrap(), "AKIDEXAMPLE");
    // Within the window on either side.
    assert!(check(&headers, BODY, now + Duration::from_secs(299)).is_ok());
    assert!(check(&headers, BODY, now - Duration::from_secs(299)).is_ok());
}

#[test]
fn a_wrong_secret_is_an_invalid_signature() {
    let now = SystemTime::now();
    let headers = signed("not-the-secret", now, SERVICE, BODY);
    let error = check(&headers, BODY, now).unwrap_err();
    assert!(matches!(error, SigV4Error::Invalid(_)), "{error:?}");
    assert!(error.to_string().contains("does not match"));
    assert!(!error.to_string().contains("not-the-secret"));
}

#[test]
fn a_tampered_body_or_header_is_an_invalid_signature() {
    let now = SystemTime::now();
    let headers = signed(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        now,
        SERVICE,
        BODY,
    );
    let tampered = br#"{"workloadName":"agent-b"}"#;
    assert!(matches!(
        check(&headers, tampered, now),
        Err(SigV4Error::Invalid(_))
    ));
    let mut moved = headers.clone();
    moved.insert("host", HeaderValue::from_static("evil.example:8080"));
    assert!(matches!(
        check(&moved, BODY, now),
        Err(SigV4Error::Invalid(_))
    ));
    // A signed header dropped on the way.
    let mut dropped = headers;
    dropped.remove("content-type");
    assert!(matches!(
        check(&dropped, BODY, now),
        Err(SigV4Error::Invalid(_))
    ));
}

#[test]
fn a_stale_or_future_date_is_refused_even_with_a_good_signature() {
    let now = SystemTime::now();
    let old = signed(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        now - Duration::from_secs(301),
        SERVICE,
        BODY,
    );
    let error = check(&old, BODY, now).unwrap_err();
    assert!(
        error.to_string().starts_with("Signature expired"),
        "{error}"
    );
    let future = signed(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        now + Duration::from_secs(301),
        SERVICE,
        BODY,
    );
    let error = check(&future, BODY, now).unwrap_err();
    assert!(
        error.to_string().starts_with("Signature not yet current"),
        "{error}"
    );
}

#[test]
fn unsigned_unknown_key_and_wrong_service_are_told_apart() {
    let now = SystemTime::now();
    assert_eq!(
        check(&HeaderMap::new(), BODY, now),
        Err(SigV4Error::Missing)
    );
    let headers = signed(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        now,
        SERVICE,
        BODY,
    );
    assert_eq!(
        verify(
            AcceptedCredentials {
                keys: &[],
                regions: &[]
            },
            "POST",
            PATH,
            &headers,
            BODY,
            now
        )
        .map(|_| ()),
        Err(SigV4Error::UnknownAccessKey)
    );
    let other = signed(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        now,
        "lambda",
        BODY,
    );
    let error = check(&other, BODY, now).unwrap_err();
    assert!(error.to_string().contains("'bedrock-agentcore'"), "{error}");
    let mut garbled = headers;
    garbled.insert(
        "authorization",
        HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=x"),
    );
    assert!(matches!(
        check(&garbled, BODY, now),
        Err(SigV4Error::Incomplete(_))
    ));
}

#[test]
fn a_region_outside_allowed_regions_is_an_invalid_signature_and_any_region_is_the_default() {
    let now = SystemTime::now();
    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let ireland = signed_in("eu-west-1", secret, now, SERVICE, BODY);
    let only_virginia = ["us-east-1".to_string()];
    let error = check_in(&only_virginia, &ireland, BODY, now).unwrap_err();
    assert_eq!(
        error,
        SigV4Error::Invalid(
            "Credential should be scoped to a valid region, not 'eu-west-1'. This gateway accepts: us-east-1.".into()
        )
    );
    assert!(check(&ireland, BODY, now).is_ok(), "no list: any region");
    let both = ["us-east-1".to_string(), "eu-west-1".to_string()];
    assert!(check_in(&both, &ireland, BODY, now).is_ok());
    // Something that is no region name is not echoed back.
    let odd = signed_in("EU West <1>", secret, now, SERVICE, BODY);
    let error = check_in(&only_virginia, &odd, BODY, now).unwrap_err();
    assert!(!error.to_string().contains("EU West"), "{error}");
}

#[test]
fn amz_dates_round_trip() {
    let time = parse_amz_date("20240229T235959Z").unwrap();
    assert_eq!(format_amz_date(time), "20240229T235959Z");
    assert_eq!(
        parse_amz_date("19700101T000000Z"),
        Some(std::time::UNIX_EPOCH)
    );
    assert!(parse_amz_date("2024-02-29T23:59:59Z").is_none());
    assert!(parse_amz_date("20241329T000000Z").is_none());
}
