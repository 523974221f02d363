use std::path::Path;

use super::*;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(
        text,
        Path::new("portcullis.toml"),
        Path::new("/etc/portcullis"),
        false,
    )
}

fn problems(text: &str) -> Vec<String> {
    match load(text) {
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.iter().map(ToString::to_string).collect()
        }
        other => panic!("expected validation problems, got {other:?}"),
    }
}

const GOOD: &str = r#"
[server]
listen = "0.0.0.0:9000"
public_url = "https://gw.example.com/"
[inbound]
discovery_url = "https://idp.example.com/.well-known/openid-configuration"
allowed_audiences = ["portcullis"]
allowed_scopes = ["mcp"]
[[inbound.claims]]
name = "groups"
contains_any = ["eng"]
[targets]
dir = "targets"
"#;

#[test]
fn good_config_resolves_paths_and_trims_public_url() {
    let config = load(GOOD).unwrap();
    assert_eq!(config.server.public_url, "https://gw.example.com");
    assert_eq!(config.targets.dir, Path::new("/etc/portcullis/targets"));
    assert_eq!(config.server.data_dir, Path::new("/etc/portcullis/data"));
    assert!(matches!(
        config.inbound.keys,
        KeySourceConfig::Discovery { .. }
    ));
    assert_eq!(config.inbound.claims.len(), 1);
}

#[test]
fn unknown_key_is_named_with_its_section() {
    let err = load("[inbound]\nallowed_audience = [\"x\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("inbound"), "{err}");
    assert!(err.contains("allowed_audience"), "{err}");
}

#[test]
fn wrong_type_names_the_key_path() {
    let err = load("[server]\nlisten = 8080\n").unwrap_err().to_string();
    assert!(err.contains("server.listen"), "{err}");
}

#[test]
fn syntax_error_names_the_line() {
    let err = load("[server\nlisten = 1").unwrap_err().to_string();
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn all_problems_are_reported_at_once() {
    let found = problems(
        r#"
[server]
listen = "nowhere"
public_url = "http://gw.example.com"
allowed_origins = ["https://app.example.com/path"]
[inbound]
discovery_url = "http://idp.example.com/.well-known/openid-configuration"
algorithms = ["HS256", "XX1"]
leeway_seconds = 3600
[[inbound.claims]]
name = "groups"
"#,
    );
    let expect = [
        "server.listen: ",
        "server.public_url: must be https://",
        "server.allowed_origins[0]: ",
        "inbound.discovery_url: must be an https:// URL",
        "inbound.allowed_audiences: must list at least one audience",
        "inbound.algorithms[0]: HS256 is symmetric",
        "inbound.algorithms[1]: unknown algorithm",
        "inbound.leeway_seconds: 3600 is too lenient",
        "inbound.claims[0]: needs exactly one of",
    ];
    for prefix in expect {
        assert!(
            found.iter().any(|p| p.starts_with(prefix)),
            "missing {prefix:?} in {found:#?}"
        );
    }
}

/// Issue 9 item 3: the gateway's own ID tokens (`aud` = the login client id) must not pass as
/// access tokens.
#[test]
fn the_login_client_id_among_the_allowed_audiences_is_refused_with_its_key_path() {
    let config = |audiences: &str| {
        format!(
            "[inbound]\ndiscovery_url = \"https://idp.example.com/.well-known/openid-configuration\"\n\
             allowed_audiences = {audiences}\n\
             [inbound.login]\nclient_id = \"portcullis\"\nclient_secret_env = \"PORTCULLIS_TEST_SURELY_UNSET\"\n"
        )
    };
    // The unset secret keeps both configs invalid, so `problems` lists all there are.
    let found = problems(&config("[\"https://gw.example.com/mcp\", \"portcullis\"]"));
    assert!(
        found.iter().any(|p| p.starts_with(
            "inbound.login.client_id: \"portcullis\" is also in inbound.allowed_audiences"
        )),
        "{found:#?}"
    );
    let found = problems(&config("[\"https://gw.example.com/mcp\"]"));
    assert!(
        !found
            .iter()
            .any(|p| p.starts_with("inbound.login.client_id")),
        "{found:#?}"
    );
}

#[test]
fn missing_inbound_is_refused_outside_dev() {
    let found = problems("");
    assert!(
        found.iter().any(|p| p.starts_with("inbound: missing")),
        "{found:?}"
    );
}

#[test]
fn dev_mode_refuses_non_loopback_listen() {
    let err = Config::from_toml(
        "[server]\nlisten = \"0.0.0.0:8080\"\n",
        Path::new("p.toml"),
        Path::new("."),
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--dev refuses to bind"), "{err}");
}

#[test]
fn consent_binding_none_needs_dev() {
    let found = problems(&format!("{GOOD}\n[identity]\nconsent_binding = \"none\"\n"));
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("identity.consent_binding")),
        "{found:?}"
    );
}

#[test]
fn secret_needs_exactly_one_source() {
    let found = problems(&format!(
        "{GOOD}\n[providers.github]\nvendor = \"github\"\nclient_id = \"x\"\nclient_secret_env = \"A\"\nclient_secret_file = \"/b\"\n[api_keys.weather]\n"
    ));
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("providers.github: set only one")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("api_keys.weather: missing key_env")),
        "{found:?}"
    );
}

fn with_secret_file(extra: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s3cr3t\n").unwrap();
    Config::from_toml(
        &format!("{GOOD}\n{extra}"),
        Path::new("p.toml"),
        dir.path(),
        false,
    )
}

#[test]
fn vendor_presets_fill_endpoints_and_quirks() {
    let config = with_secret_file(
        "[identity]\nconsent_binding = \"app\"\n[providers.gh]\nvendor = \"github\"\nclient_id = \"Iv1\"\nclient_secret_file = \"secret\"\n\
         [providers.g]\nvendor = \"google\"\nclient_id = \"x\"\nclient_secret_file = \"secret\"\n",
    )
    .unwrap();
    let gh = &config.providers["gh"];
    let ProviderEndpoints::Explicit { token, .. } = &gh.endpoints else {
        panic!("preset")
    };
    assert_eq!(
        token.as_str(),
        "https://github.com/login/oauth/access_token"
    );
    assert_eq!(gh.auth_method, ClientAuthMethod::ClientSecretPost);
    assert!(!gh.send_resource_indicator);
    assert_eq!(
        gh.client_secret.expose(),
        "s3cr3t",
        "trailing newline trimmed"
    );
    assert_eq!(
        config.providers["g"].extra_authorize_params["access_type"],
        "offline"
    );
    assert!(
        !format!("{config:?}").contains("s3cr3t"),
        "secrets never in Debug"
    );
}

#[test]
fn tenant_vendors_need_a_discovery_url_and_unknown_vendors_are_named() {
    let err = with_secret_file(
        "[identity]\nconsent_binding = \"app\"\n[providers.o]\nvendor = \"okta\"\nclient_id = \"x\"\nclient_secret_file = \"secret\"\n\
         [providers.z]\nvendor = \"zoho\"\nclient_id = \"x\"\nclient_secret_file = \"secret\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("providers.o.discovery_url: vendor \"okta\" needs"),
        "{err}"
    );
    assert!(
        err.contains("providers.z.vendor: unknown vendor \"zoho\""),
        "{err}"
    );
}

#[test]
fn a_protected_resource_is_the_providers_endpoints_and_default_resource() {
    let config = with_secret_file(
        "[identity]\nconsent_binding = \"app\"\n[providers.n]\nvendor = \"custom\"\nprotected_resource = \"https://notes.example.com/mcp\"\nclient_id = \"x\"\nclient_secret_file = \"secret\"\n",
    )
    .unwrap();
    let notes = &config.providers["n"];
    assert!(matches!(
        &notes.endpoints,
        ProviderEndpoints::ProtectedResource(url) if url.as_str() == "https://notes.example.com/mcp"
    ));
    assert_eq!(
        notes.resource.as_deref(),
        Some("https://notes.example.com/mcp")
    );

    let err = with_secret_file(
        "[identity]\nconsent_binding = \"app\"\n[providers.n]\nvendor = \"custom\"\nprotected_resource = \"http://notes.example.com/mcp\"\nclient_id = \"x\"\nclient_secret_file = \"secret\"\n\
         [providers.m]\nvendor = \"custom\"\nprotected_resource = \"https://notes.example.com/mcp\"\ndiscovery_url = \"https://sso.example.com/.well-known/openid-configuration\"\nclient_id = \"x\"\nclient_secret_file = \"secret\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("providers.n.protected_resource: must be an https:// URL"),
        "{err}"
    );
    assert!(
        err.contains("providers.m: set one of discovery_url, protected_resource or the endpoints"),
        "{err}"
    );
}

#[test]
fn missing_secret_sources_are_named() {
    let err = with_secret_file(
        "[identity]\nconsent_binding = \"app\"\n[providers.c]\nvendor = \"custom\"\ndiscovery_url = \"https://sso.example.com/.well-known/openid-configuration\"\nclient_id = \"x\"\nclient_secret_env = \"PORTCULLIS_TEST_SURELY_UNSET\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("providers.c.client_secret_env: environment variable PORTCULLIS_TEST_SURELY_UNSET is not set"),
        "{err}"
    );
}

#[test]
fn login_binding_needs_the_gateways_own_client() {
    let err = with_secret_file("[providers.gh]\nvendor = \"github\"\nclient_id = \"Iv1\"\nclient_secret_file = \"secret\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("inbound.login: consent_binding = \"login\" needs [inbound.login]"),
        "{err}"
    );
}

#[test]
fn identity_workloads_and_access_keys_are_validated_with_resolved_secrets() {
    let config = with_secret_file(
        "[identity]\nconsent_binding = \"app\"\nallowed_return_urls = [\"https://app.example.com/done\"]\n\
         [[identity.workloads]]\nname = \"agent-a\"\nallowed_return_urls = [\"http://127.0.0.1:9/cb\"]\n\
         [[identity.access_keys]]\naccess_key_id = \"AKIDEXAMPLE\"\nsecret_access_key_file = \"secret\"\nworkloads = [\"agent-a\"]\n",
    )
    .unwrap();
    let identity = &config.identity;
    assert_eq!(
        identity.workloads.keys().collect::<Vec<_>>(),
        ["agent-a", "portcullis"],
        "the gateway's own workload is a workload too"
    );
    assert_eq!(
        identity.workloads["portcullis"].allowed_return_urls[0].as_str(),
        "https://app.example.com/done"
    );
    let key = &identity.access_keys[0];
    assert_eq!(key.secret_access_key.expose(), "s3cr3t");
    assert!(key.may_act_for("agent-a") && !key.may_act_for("portcullis"));
    assert!(!format!("{config:?}").contains("s3cr3t"));
}

#[test]
fn bad_workloads_and_access_keys_are_named() {
    let err = with_secret_file(
        "[identity]\n\
         [[identity.workloads]]\nname = \"a\"\n\
         [[identity.workloads]]\nname = \"portcullis\"\n\
         [[identity.workloads]]\nname = \"agent-b\"\nallowed_return_urls = [\"http://evil.example/cb\"]\n\
         [[identity.access_keys]]\naccess_key_id = \"AK/ID\"\nsecret_access_key_file = \"secret\"\n\
         [[identity.access_keys]]\naccess_key_id = \"AKID2\"\nsecret_access_key_env = \"PORTCULLIS_TEST_SURELY_UNSET\"\nworkloads = [\"ghost\"]\n",
    )
    .unwrap_err()
    .to_string();
    for expected in [
        "identity.workloads[0].name: \"a\": workload names are 3-255",
        "identity.workloads[1].name: \"portcullis\" is already defined",
        "identity.workloads[2].allowed_return_urls[0]: must be an https:// URL",
        "identity.access_keys[0].access_key_id: 1-128 letters and digits",
        "identity.access_keys[1].workloads[0]: \"ghost\" is not a configured workload",
        "identity.access_keys[1].secret_access_key_env: environment variable PORTCULLIS_TEST_SURELY_UNSET is not set",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in {err}");
    }
}

const TWO_PROVIDERS_AND_KEYS: &str = "[providers.gh]\nvendor = \"github\"\nclient_id = \"Iv1\"\nclient_secret_file = \"secret\"\n\
     [providers.corp]\nvendor = \"custom\"\ndiscovery_url = \"https://sso.example.com/.well-known/openid-configuration\"\nclient_id = \"c\"\nclient_secret_file = \"secret\"\n\
     [api_keys.weather]\nkey_file = \"secret\"\n[api_keys.maps]\nkey_file = \"secret\"\n";

#[test]
fn workloads_use_only_the_providers_api_keys_and_scopes_they_declare() {
    let config = with_secret_file(&format!(
        "[identity]\nconsent_binding = \"app\"\nallowed_regions = [\"us-east-1\", \"eu-west-1\"]\n\
         api_keys = [\"maps\"]\n\
         [[identity.workloads]]\nname = \"agent-a\"\nproviders = [\"gh\", \"corp\"]\napi_keys = [\"weather\"]\n\
         scopes = {{ gh = [\"read:user\", \"repo\"] }}\n\
         [[identity.workloads]]\nname = \"agent-b\"\n\
         {TWO_PROVIDERS_AND_KEYS}"
    ))
    .unwrap();
    let identity = &config.identity;
    assert_eq!(identity.allowed_regions, ["us-east-1", "eu-west-1"]);
    let a = &identity.workloads["agent-a"];
    let gh = a.provider("gh").unwrap();
    assert_eq!(
        gh.scopes_not_granted(&["repo".into(), "admin:org".into(), "read:user".into()]),
        ["admin:org"]
    );
    assert_eq!(
        a.provider("corp").unwrap().scopes,
        None,
        "no limit: any scopes"
    );
    assert!(a.may_read_api_key("weather") && !a.may_read_api_key("maps"));
    // Deny by default: a workload without lists uses nothing.
    let b = &identity.workloads["agent-b"];
    assert!(b.provider("gh").is_none() && !b.may_read_api_key("weather"));
    // The gateway's own workload takes its lists from [identity].
    let own = &identity.workloads["portcullis"];
    assert!(own.may_read_api_key("maps") && own.provider("gh").is_none());
}

#[test]
fn unknown_or_repeated_grant_names_and_bad_regions_are_named_with_their_key_path() {
    let err = with_secret_file(&format!(
        "[identity]\nconsent_binding = \"app\"\nallowed_regions = [\"US East 1\", \"us-east-1\", \"us-east-1\"]\n\
         providers = [\"github\"]\n\
         [[identity.workloads]]\nname = \"agent-a\"\napi_keys = [\"weather\", \"weather\"]\n\
         [[identity.workloads]]\nname = \"agent-b\"\nproviders = [\"nope\", \"gh\"]\napi_keys = [\"ghost\"]\n\
         scopes = {{ corp = [\"x\"], gh = [\"ok\", \"two words\"] }}\n\
         {TWO_PROVIDERS_AND_KEYS}"
    ))
    .unwrap_err()
    .to_string();
    for expected in [
        "identity.allowed_regions[0]: \"US East 1\" is not an AWS region name",
        "identity.allowed_regions[2]: \"us-east-1\" is listed twice",
        "identity.providers[0]: \"github\" is not a configured provider (no [providers.github])",
        "identity.workloads[0].api_keys[1]: \"weather\" is listed twice",
        "identity.workloads[1].providers[0]: \"nope\" is not a configured provider",
        "identity.workloads[1].api_keys[0]: \"ghost\" is not a configured API key (no [api_keys.ghost])",
        "identity.workloads[1].scopes.corp: \"corp\" is not in identity.workloads[1].providers",
        "identity.workloads[1].scopes.gh[1]: \"two words\" is not a scope token",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in {err}");
    }
    assert!(!err.contains("identity.workloads[1].providers[1]"), "{err}");
}

#[test]
fn the_vault_backend_defaults_to_sled() {
    let config = load(GOOD).unwrap();
    assert!(matches!(config.vault.backend, VaultBackend::Sled));
    assert_eq!(config.vault.path, Path::new("/etc/portcullis/data/vault"));
}

#[test]
fn a_postgres_vault_reads_its_url_from_a_file_and_never_shows_the_password() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("db-url"),
        "postgres://gw:db-pw-canary@db.internal:5433/vault?sslmode=verify-full\n",
    )
    .unwrap();
    let config = Config::from_toml(
        &format!("{GOOD}\n[vault]\nbackend = \"postgres\"\nurl_file = \"db-url\"\n"),
        Path::new("p.toml"),
        dir.path(),
        false,
    )
    .unwrap();
    let VaultBackend::Postgres(url) = &config.vault.backend else {
        panic!("{:?}", config.vault.backend)
    };
    assert_eq!(url.describe(), "postgres db.internal:5433/vault");
    assert_eq!(url.tls(), crate::vault::TlsMode::Verified);
    assert!(!format!("{config:?}").contains("db-pw-canary"));
}

#[test]
fn vault_backend_problems_are_named_with_their_key_path() {
    let cases = [
        (
            "backend = \"x\"",
            "vault.backend: unknown backend \"x\" (expected sled or postgres)",
        ),
        (
            "backend = \"postgres\"\nurl_env = \"PORTCULLIS_TEST_SURELY_UNSET\"",
            "vault.url_env: environment variable PORTCULLIS_TEST_SURELY_UNSET is not set",
        ),
        (
            "backend = \"postgres\"\nurl_env = \"A\"\nurl_file = \"/b\"",
            "vault: set only one of url_env and url_file",
        ),
        (
            "backend = \"postgres\"",
            "vault: backend = \"postgres\" needs url_env or url_file",
        ),
        (
            "url_env = \"A\"",
            "vault.url_env: only used with backend = \"postgres\"",
        ),
    ];
    for (section, expected) in cases {
        let found = problems(&format!("{GOOD}\n[vault]\n{section}\n"));
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "{section}: {found:?}"
        );
    }
}

#[test]
fn a_bad_postgres_url_is_named_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("db-url"),
        "postgres://gw:db-pw-canary@db/vault?sslmode=prefer",
    )
    .unwrap();
    let error = Config::from_toml(
        &format!("{GOOD}\n[vault]\nbackend = \"postgres\"\nurl_file = \"db-url\"\n"),
        Path::new("p.toml"),
        dir.path(),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("vault.url_file: sslmode \"prefer\""),
        "{error}"
    );
    assert!(!error.contains("db-pw-canary"), "{error}");
}

#[test]
fn search_is_off_by_default_and_its_result_size_is_bounded() {
    let dev = |text: &str| Config::from_toml(text, Path::new("p.toml"), Path::new("."), true);
    let config = dev("").unwrap();
    assert_eq!(config.search, crate::mcp::SearchConfig::default());
    assert!(!config.search.enabled);
    let config = dev("[search]\nenabled = true\nmax_results = 5\n").unwrap();
    assert_eq!(
        (config.search.enabled, config.search.max_results),
        (true, 5)
    );
    for bad in ["0", "51", "-3"] {
        let err = dev(&format!("[search]\nmax_results = {bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "search.max_results: must be between 1 and 50 (got {bad})"
            )),
            "{err}"
        );
    }
    let err = dev("[search]\nenable = true\n").unwrap_err().to_string();
    assert!(err.contains("search") && err.contains("enable"), "{err}");
}

#[test]
fn rate_limit_rules_are_checked_with_their_key_paths() {
    let dev = |text: &str| Config::from_toml(text, Path::new("p.toml"), Path::new("."), true);
    let config = dev(
        "[[rate_limits]]\ntools = \"billing___*\"\nrequests_per_minute = 60\nconcurrent = 4\n\
         [[rate_limits]]\nper = \"claim:tenant\"\nrequests_per_second = 10\n",
    )
    .unwrap();
    assert_eq!(config.rate_limits.len(), 2);
    assert_eq!(config.rate_limits[0].tools, "billing___*");
    assert_eq!(
        config.rate_limits[0].rate,
        Some((60, std::time::Duration::from_secs(60)))
    );
    assert_eq!(config.rate_limits[1].tools, "*");
    assert_eq!(
        config.rate_limits[1].per,
        crate::limits::LimitKey::Claim("tenant".into())
    );
    let err = dev(
        "[[rate_limits]]\nrequests_per_second = 1\nrequests_per_minute = 5\n\
         [[rate_limits]]\nper = \"group\"\nconcurrent = 0\n[[rate_limits]]\ntools = \"a___*\"\n",
    )
    .unwrap_err()
    .to_string();
    for expected in [
        "rate_limits[0].requests_per_minute: give requests_per_second or requests_per_minute, not both",
        "rate_limits[1].per: unknown key \"group\"",
        "rate_limits[1].concurrent: must be a positive whole number (got 0)",
        "rate_limits[2]: limits nothing",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }
}

#[test]
fn shared_rate_limits_need_the_postgres_vault_and_a_rate() {
    let dev = |text: &str| Config::from_toml(text, Path::new("p.toml"), Path::new("."), true);
    let err = dev("[[rate_limits]]\nrequests_per_minute = 60\nshared = true\n\
         [[rate_limits]]\nconcurrent = 2\nshared = true\n")
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("rate_limits[0].shared: needs [vault] backend = \"postgres\""),
        "{err}"
    );
    assert!(
        err.contains("rate_limits[1].shared: shares a rate across replicas"),
        "{err}"
    );
    let config = dev("[[rate_limits]]\nrequests_per_minute = 60\nshared = true\n\
         [vault]\nbackend = \"postgres\"\nurl_env = \"PORTCULLIS_TEST_SHARED_LIMITS_URL\"\n");
    // The URL variable is unset here, so the vault section fails; the shared rule does not.
    let problems = config
        .map(|_| String::new())
        .unwrap_or_else(|e| e.to_string());
    assert!(!problems.contains("rate_limits[0]"), "{problems}");
}
