#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The pages a person sees, rendered by a real browser (Debian `chromium`, headless): the
//! "connected" page, the "another user" refusal, and `/connections`. The screenshots land in
//! `target/screenshots/` for a human to look at; the test checks they rendered.

mod support {
    pub mod browser;
    pub mod downstream;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
}

use std::path::{Path, PathBuf};

use support::downstream::{call, consent_url, world};

fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("chromium is not installed: `apt-get install chromium` (./tests/run does this)");
}

/// Renders `html` in headless Chromium and returns the PNG bytes.
fn screenshot(name: &str, html: &str) -> Vec<u8> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&out).unwrap();
    let page = out.join(format!("{name}.html"));
    let png = out.join(format!("{name}.png"));
    std::fs::write(&page, html).unwrap();
    let _ = std::fs::remove_file(&png);
    let profile = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=900,640",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        png.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&png).unwrap()
}

fn assert_rendered(png: &[u8]) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // A blank 900x640 page compresses to a few hundred bytes; text makes it far larger.
    assert!(
        png.len() > 8_000,
        "the page looks empty ({} bytes)",
        png.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_connections_pages_render_in_a_real_browser() {
    let world = world("login").await;
    let alice = world.client("alice").await;
    let url = consent_url(&call(&alice, "acct___me").await, &world.gateway);

    let refused = world.browser("bob", "bob-gh").get(&url).await;
    assert_rendered(&screenshot("consent-refused", &refused.body));

    let mut browser = world.browser("alice", "alice-gh");
    let linked = browser.get(&url).await;
    assert!(linked.body.contains("connected"));
    assert_rendered(&screenshot("consent-linked", &linked.body));

    let connections = browser
        .get(&format!("{}/connections", world.gateway.base))
        .await;
    assert!(connections.body.contains("Revoke"));
    assert_rendered(&screenshot("connections", &connections.body));
    alice.cancel().await.unwrap();
}
