//! The refresh and consent logic of `tokens.rs` against a scripted token endpoint: single
//! flight, rotation, the `invalid_grant` re-read, union scopes, a downstream 401 (DESIGN 3.1).
//! The live-IdP integration tests (`tests/consent_flow.rs`) cover the same paths end to end.

use super::Credential;
use super::test_rig::{Script, alice, bearer, credentials, request, rig};
use crate::vault::{Secret, unix_now};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_token_is_refreshed_once_for_100_concurrent_calls() {
    let rig = rig(vec![Script::Grant("fresh", Some("rotated"))]);
    rig.link("stale", unix_now() - 1).await;
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let identity = rig.identity.clone();
            tokio::spawn(async move {
                identity
                    .credential_for(&alice(), &credentials(), &request(&[]))
                    .await
                    .map(bearer)
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), "fresh");
    }
    assert_eq!(*rig.endpoint.refreshes.lock(), ["r1"]);
    // The rotated refresh token was stored (before the new access token was handed out).
    let stored = rig.stored().await.unwrap();
    assert_eq!(
        stored.refresh_token.as_ref().map(Secret::expose),
        Some("rotated")
    );
    assert_eq!(stored.access_token.expose(), "fresh");
    assert!(stored.refreshed_at.is_some());
}

#[tokio::test]
async fn a_provider_that_does_not_rotate_keeps_the_old_refresh_token() {
    let rig = rig(vec![Script::Grant("fresh", None)]);
    rig.link("stale", unix_now() - 1).await;
    let credential = rig.credential(&[]).await;
    assert_eq!(bearer(credential), "fresh");
    let stored = rig.stored().await.unwrap();
    assert_eq!(
        stored.refresh_token.as_ref().map(Secret::expose),
        Some("r1")
    );
}

#[tokio::test]
async fn invalid_grant_re_reads_and_uses_a_token_another_replica_rotated() {
    let rig = rig(vec![Script::RotatedElsewhere("from-elsewhere", "r2")]);
    rig.link("stale", unix_now() - 1).await;
    let credential = rig.credential(&[]).await;
    assert_eq!(bearer(credential), "from-elsewhere");
    assert!(rig.stored().await.is_some());
}

#[tokio::test]
async fn invalid_grant_with_nothing_newer_drops_the_link_and_asks_for_consent() {
    let rig = rig(vec![Script::InvalidGrant]);
    rig.link("stale", unix_now() - 1).await;
    let credential = rig.credential(&[]).await;
    let Credential::NeedsConsent(prompt) = credential else {
        panic!("expected a consent prompt");
    };
    assert!(
        prompt
            .url
            .starts_with("https://gw.example.com/oauth2/connect/")
    );
    assert!(rig.stored().await.is_none());
}

#[tokio::test]
async fn a_tool_needing_more_scopes_asks_for_the_union() {
    let rig = rig(vec![]);
    rig.link("t", unix_now() + 3600).await;
    let more = ["write".to_string()];
    let credential = rig.credential(&more).await;
    assert!(matches!(credential, Credential::NeedsConsent(_)));
    assert_eq!(*rig.endpoint.authorizations.lock(), [vec!["read", "write"]]);
    assert!(rig.endpoint.refreshes.lock().is_empty());
}

#[tokio::test]
async fn a_401_refreshes_a_token_that_still_looks_fresh_and_only_once() {
    let rig = rig(vec![Script::Grant("after-401", Some("r2"))]);
    rig.link("refused", unix_now() + 3600).await;
    let fresh = rig
        .identity
        .after_unauthorized(
            &alice(),
            &credentials(),
            &Secret::new("refused"),
            &request(&[]),
        )
        .await
        .unwrap();
    assert_eq!(bearer(fresh), "after-401");
    // A second 401 report for the token already replaced does not refresh again.
    let again = rig
        .identity
        .after_unauthorized(
            &alice(),
            &credentials(),
            &Secret::new("refused"),
            &request(&[]),
        )
        .await
        .unwrap();
    assert_eq!(bearer(again), "after-401");
    assert_eq!(rig.endpoint.refreshes.lock().len(), 1);
}
