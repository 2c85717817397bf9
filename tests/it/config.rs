//! ZITADEL's runtime configuration: every shape of SystemAPIUsers, the expected
//! audience (BuildHTTP), the environment overrides, relative paths, memberships and
//! the errors. Every accepted configuration is proven by verifying a real token
//! signed with the matching private key.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use zitadel_system_auth::{
    AuthError, Config, ConfigError, MemberType, Membership, SystemAuth, config::KeySource,
    error::AudienceHint,
};

use crate::common::{self, AUD, KeyExt as _, TestKey, claims_for, now, path_str};

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

/// Three distinct key pairs, so each user's token proves that user's key was read.
fn cfg_key(i: usize) -> &'static TestKey {
    static KEYS: [OnceLock<TestKey>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    KEYS[i].get_or_init(TestKey::generate)
}

/// A key no configured user has.
fn stranger() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(TestKey::generate)
}

fn b64_pem(key: &TestKey) -> String {
    STANDARD.encode(key.public_pem())
}

fn token(key: &TestKey, user: &str, aud: &str) -> String {
    key.rs256(&claims_for(user, aud, now()))
}

fn build(yaml: &str) -> SystemAuth {
    SystemAuth::builder()
        .config_yaml(yaml)
        .build()
        .unwrap_or_else(|e| panic!("config should build: {e}\n---\n{yaml}"))
}

fn build_err(yaml: &str) -> (ConfigError, String) {
    let err = SystemAuth::builder()
        .config_yaml(yaml)
        .build()
        .expect_err("config should be refused");
    let message = err.to_string();
    (err, message)
}

/// `user` signing with `key` for `aud` is accepted, and the same claims signed by a
/// key nobody has are refused.
fn assert_user_verifies(auth: &SystemAuth, user: &str, key: &TestKey, aud: &str) {
    let verified = auth
        .verify(&token(key, user, aud))
        .unwrap_or_else(|e| panic!("token of {user} for {aud} should verify: {e}"));
    assert_eq!(verified.user_id(), user);
    assert_eq!(
        auth.verify(&token(stranger(), user, aud)).unwrap_err(),
        AuthError::InvalidSignature,
        "{user}: a token signed by another key must be refused"
    );
}

fn assert_audience_refused(auth: &SystemAuth, key: &TestKey, user: &str, aud: &str) {
    match auth.verify(&token(key, user, aud)) {
        Err(AuthError::AudienceMismatch { .. }) => {}
        other => panic!("aud {aud:?} should be refused as an audience mismatch, got {other:?}"),
    }
}

fn assert_contains_all(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "the message should contain {part:?}: {message}"
        );
    }
}

/// A config with the given External* lines and one user keyed by `cfg_key(0)`.
fn external_config(external: &str) -> String {
    format!(
        "{external}SystemAPIUsers:\n  - system-user-1:\n      Path: {}\n",
        cfg_key(0).public_path().display()
    )
}

// ---------------------------------------------------------------------------------
// The three shapes of SystemAPIUsers, field names in any case
// ---------------------------------------------------------------------------------

#[test]
fn list_of_one_key_maps_with_field_names_in_any_case() {
    let (a, b, c) = (cfg_key(0), cfg_key(1), cfg_key(2));
    let yaml = format!(
        r#"ExternalDomain: custom-domain.com
ExternalPort: 443
ExternalSecure: true
SystemAPIUsers:
  - user-path-lower:
      path: {a}
  - user-path-title:
      Path: {b}
  - user-path-upper:
      PATH: {c}
  - user-keydata-title:
      KeyData: {kb}
  - user-keydata-camel:
      keyData: {kc}
  - user-keydata-upper:
      KEYDATA: {ka}
"#,
        a = a.public_path().display(),
        b = b.public_path().display(),
        c = c.public_path().display(),
        ka = b64_pem(a),
        kb = b64_pem(b),
        kc = b64_pem(c),
    );
    let config = Config::from_yaml(&yaml).unwrap();
    let ids: Vec<&str> = config.users().iter().map(|u| u.id()).collect();
    assert_eq!(
        ids,
        [
            "user-path-lower",
            "user-path-title",
            "user-path-upper",
            "user-keydata-title",
            "user-keydata-camel",
            "user-keydata-upper"
        ]
    );
    assert_eq!(
        config.users()[1].key(),
        &KeySource::Path(b.public_path().clone())
    );
    assert_eq!(
        config.users()[3].key(),
        &KeySource::Data(b.public_pem().as_bytes().to_vec())
    );

    let auth = build(&yaml);
    for (user, key) in [
        ("user-path-lower", a),
        ("user-path-title", b),
        ("user-path-upper", c),
        ("user-keydata-title", b),
        ("user-keydata-camel", c),
        ("user-keydata-upper", a),
    ] {
        assert_user_verifies(&auth, user, key, AUD);
    }
    // Each user has its own key: user-path-lower's token signed by b is refused.
    assert_eq!(
        auth.verify(&token(b, "user-path-lower", AUD)).unwrap_err(),
        AuthError::InvalidSignature
    );
}

#[test]
fn plain_map_of_users() {
    let (a, b) = (cfg_key(0), cfg_key(1));
    let yaml = format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  map-user-1:\n    Path: {}\n  map-user-2:\n    keydata: {}\n",
        a.public_path().display(),
        b64_pem(b)
    );
    let auth = build(&yaml);
    assert_eq!(auth.user_ids(), ["map-user-1", "map-user-2"]);
    assert_user_verifies(&auth, "map-user-1", a, AUD);
    assert_user_verifies(&auth, "map-user-2", b, AUD);
    assert_eq!(
        auth.verify(&token(a, "map-user-2", AUD)).unwrap_err(),
        AuthError::InvalidSignature
    );
}

#[test]
fn yaml_folded_string_holding_json() {
    let (a, b) = (cfg_key(0), cfg_key(1));
    // The form found in the wild: a folded block whose lines join with spaces.
    let yaml = format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers: >\n  {{\"systemuser\": {{\"path\": \"{}\"}},\n  \"systemuser2\": {{\"keyData\": \"{}\"}}}}\n",
        a.public_path().display(),
        b64_pem(b)
    );
    let config = Config::from_yaml(&yaml).unwrap();
    assert_eq!(config.users().len(), 2);
    assert_eq!(
        config.users()[0].key(),
        &KeySource::Path(a.public_path().clone())
    );
    let auth = build(&yaml);
    assert_eq!(auth.user_ids(), ["systemuser", "systemuser2"]);
    assert_user_verifies(&auth, "systemuser", a, AUD);
    assert_user_verifies(&auth, "systemuser2", b, AUD);
}

#[test]
fn yaml_quoted_string_holding_json_with_title_case_fields() {
    let (a, c) = (cfg_key(0), cfg_key(2));
    let json = format!(
        r#"{{"json-user-1": {{"Path": "{}"}}, "json-user-2": {{"KeyData": "{}", "Memberships": [{{"MemberType": "System", "Roles": ["SYSTEM_OWNER"]}}]}}}}"#,
        a.public_path().display(),
        b64_pem(c)
    );
    let yaml =
        format!("ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers: '{json}'\n");
    let auth = build(&yaml);
    assert_eq!(auth.user_ids(), ["json-user-1", "json-user-2"]);
    assert_user_verifies(&auth, "json-user-1", a, AUD);
    assert_user_verifies(&auth, "json-user-2", c, AUD);
}

#[test]
fn whole_zitadel_runtime_config_other_keys_ignored() {
    let (a, b) = (cfg_key(0), cfg_key(1));
    let yaml = format!(
        r#"# ZITADEL runtime configuration
Log:
  Level: info
  Formatter:
    Format: text
Port: 8080
ExternalDomain: zitadel.example.com
ExternalPort: 443
ExternalSecure: true
TLS:
  Enabled: false
  KeyPath: ""
  Key: ""
Database:
  postgres:
    Host: db.internal
    Port: 5432
    Database: zitadel
    MaxOpenConns: 25
    User:
      Username: zitadel
      Password: &secret s3cr3t
      SSL:
        Mode: disable
    Admin:
      Username: root
      Password: *secret
      ExistingDatabase:
Machine:
  Identification:
    PrivateIp:
      Enabled: true
    Hostname:
      Enabled: false
Tracing:
  Type: none
  Fraction: 1.0
InternalAuthZ:
  RolePermissionMappings:
    - Role: SYSTEM_OWNER
      Permissions:
        - system.instance.read
        - system.instance.write
    - Role: IAM_OWNER
      Permissions: [iam.read, iam.write]
SystemAPIUsers:
  - system-user-1:
      Path: {}
      Memberships:
        - MemberType: System
          Roles:
            - SYSTEM_OWNER
  - system-user-2:
      KeyData: {}
DefaultInstance:
  InstanceName: ZITADEL
  Features:
    LoginDefaultOrg: true
  SMTPConfiguration: ~
  Quotas:
    Items: []
8080: a numeric key
true: a boolean key
Actions:
  HTTP:
    DenyList:
      - localhost
      - "127.0.0.1"
"#,
        a.public_path().display(),
        b64_pem(b)
    );
    let config = Config::from_yaml(&yaml).unwrap();
    assert_eq!(config.audience(), "https://zitadel.example.com");
    assert_eq!(config.external_domain(), "zitadel.example.com");
    assert_eq!(config.external_port(), 443);
    assert!(config.external_secure());
    assert_eq!(config.users().len(), 2);
    let auth = build(&yaml);
    assert_eq!(auth.user_ids(), ["system-user-1", "system-user-2"]);
    assert_user_verifies(&auth, "system-user-1", a, "https://zitadel.example.com");
    assert_user_verifies(&auth, "system-user-2", b, "https://zitadel.example.com");
    // `Port: 8080` (the listen port) is not ExternalPort.
    assert_audience_refused(
        &auth,
        a,
        "system-user-1",
        "https://zitadel.example.com:8080",
    );
}

// ---------------------------------------------------------------------------------
// The expected audience
// ---------------------------------------------------------------------------------

#[test]
fn defaults_are_localhost_8080_secure() {
    let yaml = external_config("");
    let config = Config::from_yaml(&yaml).unwrap();
    assert_eq!(config.external_domain(), "localhost");
    assert_eq!(config.external_port(), 8080);
    assert!(config.external_secure());
    assert_eq!(config.audience(), "https://localhost:8080");

    let auth = build(&yaml);
    assert_eq!(auth.audiences(), ["https://localhost:8080"]);
    assert_user_verifies(&auth, "system-user-1", cfg_key(0), "https://localhost:8080");
    assert_audience_refused(&auth, cfg_key(0), "system-user-1", "http://localhost:8080");
    assert_audience_refused(&auth, cfg_key(0), "system-user-1", "https://localhost");
}

#[test]
fn build_http_leaves_out_default_ports_only() {
    let cases = [
        // (ExternalDomain, ExternalPort, ExternalSecure, expected audience)
        ("x.example", "0", "true", "https://x.example"),
        ("x.example", "0", "false", "http://x.example"),
        ("x.example", "443", "true", "https://x.example"),
        ("x.example", "80", "false", "http://x.example"),
        ("x.example", "443", "false", "http://x.example:443"),
        ("x.example", "80", "true", "https://x.example:80"),
        ("localhost", "8080", "false", "http://localhost:8080"),
        (
            "custom-domain.com",
            "443",
            "true",
            "https://custom-domain.com",
        ),
        ("x.example", "65535", "true", "https://x.example:65535"),
        // Given as strings, as environment-style values often are.
        ("x.example", "\"443\"", "\"false\"", "http://x.example:443"),
        ("x.example", "\"443\"", "\"true\"", "https://x.example"),
        ("x.example", "'80'", "'False'", "http://x.example"),
        ("x.example", "\"8443\"", "\"1\"", "https://x.example:8443"),
    ];
    for (domain, port, secure, expected) in cases {
        let yaml = external_config(&format!(
            "ExternalDomain: {domain}\nExternalPort: {port}\nExternalSecure: {secure}\n"
        ));
        let config = Config::from_yaml(&yaml).unwrap();
        assert_eq!(config.audience(), expected, "{domain} {port} {secure}");
        let auth = build(&yaml);
        assert_eq!(auth.audiences().first().map(String::as_str), Some(expected));
        assert_user_verifies(&auth, "system-user-1", cfg_key(0), expected);
        // No normalising: the URL with the port written out (or left out) differs.
        let other = if expected.matches(':').count() == 2 {
            expected.rsplit_once(':').unwrap().0.to_owned()
        } else {
            format!(
                "{expected}:{}",
                port.trim_matches(|c| c == '"' || c == '\'')
            )
        };
        assert_audience_refused(&auth, cfg_key(0), "system-user-1", &other);
    }
}

#[test]
fn invalid_port_or_secure_in_the_file_is_an_error_with_line() {
    // The message names the field and, as every YAML value error does, the line.
    let mut missing_line = Vec::new();
    for (external, field) in [
        ("ExternalPort: 70000\n", "ExternalPort"),
        ("ExternalPort: abc\n", "ExternalPort"),
        ("ExternalPort: \"-1\"\n", "ExternalPort"),
        ("ExternalSecure: maybe\n", "ExternalSecure"),
        ("ExternalSecure: \"yes\"\n", "ExternalSecure"),
    ] {
        let (err, message) = build_err(&external_config(external));
        assert!(matches!(err, ConfigError::Yaml { .. }), "{err:?}");
        assert!(message.contains(field), "{message}");
        if !message.contains("line") {
            missing_line.push(message);
        }
    }
    assert!(
        missing_line.is_empty(),
        "these messages do not say the line: {missing_line:#?}"
    );
}

#[test]
fn builder_audience_overrides_the_config() {
    let yaml = common::config_with_path("system-user-1", &cfg_key(0).public_path());
    assert_eq!(Config::from_yaml(&yaml).unwrap().audience(), AUD);
    let auth = SystemAuth::builder()
        .config_yaml(&yaml)
        .audience("https://api.other.example")
        .build()
        .unwrap();
    assert_eq!(auth.audiences(), ["https://api.other.example"]);
    assert_user_verifies(
        &auth,
        "system-user-1",
        cfg_key(0),
        "https://api.other.example",
    );
    match auth.verify(&token(cfg_key(0), "system-user-1", AUD)) {
        Err(AuthError::AudienceMismatch { expected, .. }) => {
            assert_eq!(&*expected, "https://api.other.example")
        }
        other => panic!("the config's audience no longer applies: {other:?}"),
    }
}

#[test]
fn additional_audience_is_accepted_beside_the_external_one() {
    let yaml = common::config_with_path("system-user-1", &cfg_key(0).public_path());
    let auth = SystemAuth::builder()
        .config_yaml(&yaml)
        .additional_audience("http://zitadel.internal:8080")
        .build()
        .unwrap();
    assert_eq!(auth.audiences(), [AUD, "http://zitadel.internal:8080"]);
    assert_user_verifies(&auth, "system-user-1", cfg_key(0), AUD);
    assert_user_verifies(
        &auth,
        "system-user-1",
        cfg_key(0),
        "http://zitadel.internal:8080",
    );
    // An aud array holding the additional one is accepted too.
    let claims = serde_json::json!({
        "iss": "system-user-1", "sub": "system-user-1",
        "aud": ["https://elsewhere.example", "http://zitadel.internal:8080"],
        "iat": now(), "exp": now() + 600,
    });
    assert!(auth.verify(&cfg_key(0).rs256(&claims)).is_ok());
    // Still exact.
    assert_audience_refused(
        &auth,
        cfg_key(0),
        "system-user-1",
        "http://zitadel.internal",
    );

    // Both together: the override first, then the additional one.
    let auth = SystemAuth::builder()
        .config_yaml(&yaml)
        .audience("https://a.example")
        .additional_audience("https://b.example")
        .build()
        .unwrap();
    assert_eq!(auth.audiences(), ["https://a.example", "https://b.example"]);
    assert_user_verifies(&auth, "system-user-1", cfg_key(0), "https://b.example");
    assert_audience_refused(&auth, cfg_key(0), "system-user-1", AUD);
}

#[test]
fn audience_is_compared_exactly() {
    let yaml = common::config_with_path("system-user-1", &cfg_key(0).public_path());
    let auth = build(&yaml);
    for (aud, hint) in [
        ("https://custom-domain.com/", AudienceHint::TrailingSlash),
        ("http://custom-domain.com", AudienceHint::Scheme),
        ("https://custom-domain.com:443", AudienceHint::Port),
        ("https://Custom-Domain.com", AudienceHint::Case),
        ("https://custom-domain.co", AudienceHint::Other),
    ] {
        match auth.verify(&token(cfg_key(0), "system-user-1", aud)) {
            Err(AuthError::AudienceMismatch {
                expected,
                hint: got,
            }) => {
                assert_eq!(&*expected, AUD, "{aud}");
                assert_eq!(got, hint, "{aud}");
            }
            other => panic!("{aud} should be refused: {other:?}"),
        }
    }
    // A configured audience with a trailing slash wants the slash.
    let auth = SystemAuth::builder()
        .config_yaml(&yaml)
        .audience("https://custom-domain.com/")
        .build()
        .unwrap();
    assert_audience_refused(&auth, cfg_key(0), "system-user-1", AUD);
    assert_user_verifies(
        &auth,
        "system-user-1",
        cfg_key(0),
        "https://custom-domain.com/",
    );
}

// ---------------------------------------------------------------------------------
// Environment overrides
// ---------------------------------------------------------------------------------

#[test]
fn env_external_variables_change_the_audience() {
    let yaml = common::config_with_path("system-user-1", &cfg_key(0).public_path());
    let auth = SystemAuth::builder()
        .config_yaml(&yaml)
        .env_overrides_from([
            ("ZITADEL_EXTERNALDOMAIN", "env.example"),
            ("ZITADEL_EXTERNALPORT", "8443"),
            ("ZITADEL_EXTERNALSECURE", "false"),
        ])
        .build()
        .unwrap();
    assert_eq!(
        auth.audiences().first().map(String::as_str),
        Some("http://env.example:8443")
    );
    assert_user_verifies(
        &auth,
        "system-user-1",
        cfg_key(0),
        "http://env.example:8443",
    );
    assert_audience_refused(&auth, cfg_key(0), "system-user-1", AUD);

    // One variable alone changes only its part.
    let auth = SystemAuth::builder()
        .config_yaml(&yaml)
        .env_overrides_from([("ZITADEL_EXTERNALPORT", "8443")])
        .build()
        .unwrap();
    assert_eq!(
        auth.audiences().first().map(String::as_str),
        Some("https://custom-domain.com:8443")
    );
    assert_user_verifies(
        &auth,
        "system-user-1",
        cfg_key(0),
        "https://custom-domain.com:8443",
    );

    // The same through Config::apply_env_from.
    let mut config = Config::from_yaml(&yaml).unwrap();
    config
        .apply_env_from(|name| (name == "ZITADEL_EXTERNALSECURE").then(|| "false".to_owned()))
        .unwrap();
    assert_eq!(config.audience(), "http://custom-domain.com:443");
}

#[test]
fn env_system_api_users_replaces_the_file_users() {
    let (a, b, c) = (cfg_key(0), cfg_key(1), cfg_key(2));
    let yaml = common::config_with_path("file-user", &a.public_path());
    let json = format!(
        r#"{{"env-user": {{"path": "{}"}}, "env-user-2": {{"keyData": "{}", "memberships": [{{"memberType": "IAM", "roles": ["IAM_OWNER"], "aggregateId": "inst-1"}}]}}}}"#,
        b.public_path().display(),
        b64_pem(c)
    );
    let auth = SystemAuth::builder()
        .config_yaml(&yaml)
        .env_overrides_from([("ZITADEL_SYSTEMAPIUSERS", json.as_str())])
        .build()
        .unwrap();
    assert_eq!(auth.user_ids(), ["env-user", "env-user-2"]);
    assert_user_verifies(&auth, "env-user", b, AUD);
    assert_user_verifies(&auth, "env-user-2", c, AUD);
    assert_eq!(
        auth.verify(&token(a, "file-user", AUD)).unwrap_err(),
        AuthError::UnknownUser
    );
    let user = auth.verify(&token(c, "env-user-2", AUD)).unwrap();
    assert_eq!(
        user.memberships(),
        [Membership {
            member_type: MemberType::Iam,
            roles: vec!["IAM_OWNER".to_owned()],
            aggregate_id: Some("inst-1".to_owned()),
            object_id: None,
        }]
    );
}

#[test]
fn env_invalid_values_are_errors_naming_the_variable() {
    let yaml = common::config_with_path("system-user-1", &cfg_key(0).public_path());
    for (var, value) in [
        ("ZITADEL_EXTERNALPORT", "abc"),
        ("ZITADEL_EXTERNALPORT", "70000"),
        ("ZITADEL_EXTERNALPORT", "-1"),
        ("ZITADEL_EXTERNALSECURE", "maybe"),
        ("ZITADEL_EXTERNALSECURE", "yes"),
        ("ZITADEL_SYSTEMAPIUSERS", "{not json"),
        (
            "ZITADEL_SYSTEMAPIUSERS",
            r#"{"u": {"path": "/k.pub"}} trailing"#,
        ),
        ("ZITADEL_SYSTEMAPIUSERS", r#"{"u": {"pth": "/k.pub"}}"#),
    ] {
        let err = SystemAuth::builder()
            .config_yaml(&yaml)
            .env_overrides_from([(var, value)])
            .build()
            .expect_err("an invalid variable is an error");
        match &err {
            ConfigError::Env { var: named, .. } => assert_eq!(*named, var, "{value}"),
            other => panic!("{var}={value}: expected ConfigError::Env, got {other:?}"),
        }
        assert!(err.to_string().contains(var), "{err}");
    }
}

#[test]
fn env_variables_are_ignored_without_the_opt_in() {
    let yaml = common::config_with_path("system-user-1", &cfg_key(0).public_path());
    let vars = [
        ("ZITADEL_EXTERNALDOMAIN", "env.example"),
        ("ZITADEL_EXTERNALPORT", "abc"),
        ("ZITADEL_SYSTEMAPIUSERS", "{not json"),
    ];
    // With the opt-in, these values are refused ...
    assert!(
        SystemAuth::builder()
            .config_yaml(&yaml)
            .env_overrides_from(vars)
            .build()
            .is_err()
    );
    // ... and after turning it off again, they are not read at all.
    let auth = SystemAuth::builder()
        .config_yaml(&yaml)
        .env_overrides_from(vars)
        .env_overrides(false)
        .build()
        .unwrap();
    assert_eq!(auth.audiences().first().map(String::as_str), Some(AUD));
    assert_user_verifies(&auth, "system-user-1", cfg_key(0), AUD);
}

const CHILD_MARKER: &str = "ZITADEL_SYSTEM_AUTH_TEST_CHILD_PRIVATE_KEY";

/// The child's test by its name in the test binary, `config::process_environment_child`
/// (the module path without the crate's name).
fn child_test() -> String {
    let module = module_path!();
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    format!("{module}::process_environment_child")
}

/// Runs `process_environment_child` in a child process whose environment holds
/// ZITADEL's variables (setting them in this process would race other tests).
#[test]
fn process_environment_is_read_only_with_the_opt_in() {
    let env_key = cfg_key(1);
    let users = format!(
        r#"{{"env-user": {{"path": "{}"}}}}"#,
        env_key.public_path().display()
    );
    let child = child_test();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            child.as_str(),
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_MARKER, path_str(&env_key.private_path()))
        .env("ZITADEL_EXTERNALDOMAIN", "env.example")
        .env("ZITADEL_EXTERNALPORT", "9443")
        .env("ZITADEL_EXTERNALSECURE", "true")
        .env("ZITADEL_SYSTEMAPIUSERS", users)
        .output()
        .expect("run the test binary again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("test {child} ... ok")) && stdout.contains("1 passed"),
        "the child test must have run: {stdout}"
    );
}

#[test]
#[ignore = "run in a child process by process_environment_is_read_only_with_the_opt_in"]
fn process_environment_child() {
    let private_path = std::env::var(CHILD_MARKER)
        .expect("started by process_environment_is_read_only_with_the_opt_in");
    let private_pem = std::fs::read(private_path).unwrap();
    let env_token = |aud: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims_for("env-user", aud, now()),
            &jsonwebtoken::EncodingKey::from_rsa_pem(&private_pem).unwrap(),
        )
        .unwrap()
    };
    let yaml = common::config_with_path("system-user-1", &cfg_key(0).public_path());
    let env_aud = "https://env.example:9443";

    // Without the opt-in, the process environment is not read.
    let auth = SystemAuth::builder().config_yaml(&yaml).build().unwrap();
    assert_eq!(auth.audiences().first().map(String::as_str), Some(AUD));
    assert_eq!(auth.user_ids(), ["system-user-1"]);
    assert!(
        auth.verify(&token(cfg_key(0), "system-user-1", AUD))
            .is_ok()
    );
    assert!(auth.verify(&env_token(env_aud)).is_err());

    // Variables given to the builder replace the process environment.
    let auth = SystemAuth::builder()
        .config_yaml(&yaml)
        .env_overrides_from(Vec::<(String, String)>::new())
        .build()
        .unwrap();
    assert_eq!(auth.audiences().first().map(String::as_str), Some(AUD));

    // With the opt-in, it is.
    let auth = SystemAuth::builder()
        .config_yaml(&yaml)
        .env_overrides(true)
        .build()
        .unwrap();
    assert_eq!(auth.audiences().first().map(String::as_str), Some(env_aud));
    assert_eq!(auth.user_ids(), ["env-user"]);
    assert_eq!(
        auth.verify(&env_token(env_aud)).unwrap().user_id(),
        "env-user"
    );
    assert_eq!(
        auth.verify(&token(cfg_key(0), "system-user-1", env_aud))
            .unwrap_err(),
        AuthError::UnknownUser
    );

    let mut config = Config::from_yaml(&yaml).unwrap();
    config.apply_env().unwrap();
    assert_eq!(config.audience(), env_aud);
    assert_eq!(config.users()[0].id(), "env-user");
}

// ---------------------------------------------------------------------------------
// Relative paths
// ---------------------------------------------------------------------------------

/// Writes `dir/sub/config.yaml` with `Path: keys/u.pub` and the key beside it.
fn config_in_subfolder(dir: &Path) -> (PathBuf, PathBuf) {
    let sub = dir.join("sub");
    std::fs::create_dir_all(sub.join("keys")).unwrap();
    let key_path = sub.join("keys").join("u.pub");
    std::fs::write(&key_path, cfg_key(2).public_pem()).unwrap();
    let config_path = sub.join("config.yaml");
    std::fs::write(
        &config_path,
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  - relative-user:\n      Path: keys/u.pub\n",
    )
    .unwrap();
    (config_path, key_path)
}

#[test]
fn relative_path_resolves_against_the_config_files_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (config_path, key_path) = config_in_subfolder(dir.path());
    // The process's current folder has no keys/u.pub.
    assert!(!Path::new("keys/u.pub").exists());
    assert_ne!(std::env::current_dir().unwrap(), dir.path().join("sub"));

    let config = Config::from_file(&config_path).unwrap();
    assert_eq!(config.users()[0].key(), &KeySource::Path(key_path));

    let auth = SystemAuth::builder()
        .config_file(&config_path)
        .build()
        .unwrap();
    assert_user_verifies(&auth, "relative-user", cfg_key(2), AUD);
}

#[test]
fn relative_path_resolves_when_the_config_file_path_is_relative_too() {
    let dir = tempfile::tempdir().unwrap();
    let (config_path, _) = config_in_subfolder(dir.path());
    // The config file named relative to the current folder (`../../tmp/...`).
    let cwd = std::env::current_dir().unwrap();
    let ups = cwd.components().count() - 1;
    let mut relative = PathBuf::new();
    for _ in 0..ups {
        relative.push("..");
    }
    relative.push(config_path.strip_prefix("/").unwrap());
    assert!(relative.is_relative());
    assert!(relative.exists(), "{}", relative.display());

    let auth = SystemAuth::builder()
        .config_file(&relative)
        .build()
        .unwrap();
    assert_user_verifies(&auth, "relative-user", cfg_key(2), AUD);
}

#[test]
fn relative_path_in_config_text_resolves_against_the_current_folder() {
    // config_yaml has no file, so `keys/u.pub` means ./keys/u.pub, which is absent.
    let yaml = "SystemAPIUsers:\n  - relative-user:\n      Path: keys/u.pub\n";
    assert!(!Path::new("keys/u.pub").exists());
    let (err, message) = build_err(yaml);
    assert!(matches!(err, ConfigError::KeyFile { .. }), "{err:?}");
    assert_contains_all(&message, &["`relative-user`", "keys/u.pub"]);
}

// ---------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------

#[test]
fn duplicate_user_in_list_form_is_an_error_naming_the_user() {
    let yaml = format!(
        "SystemAPIUsers:\n  - dup-user:\n      Path: {a}\n  - other-user:\n      Path: {a}\n  - dup-user:\n      Path: {a}\n",
        a = cfg_key(0).public_path().display()
    );
    let (err, message) = build_err(&yaml);
    assert!(matches!(err, ConfigError::Yaml { .. }), "{err:?}");
    assert_contains_all(&message, &["`dup-user`", "twice", "line"]);
    assert!(!message.contains("other-user"), "{message}");
}

#[test]
fn duplicate_user_in_map_form_is_an_error_naming_the_user() {
    let yaml = format!(
        "SystemAPIUsers:\n  dup-user:\n    Path: {a}\n  dup-user:\n    KeyData: {k}\n",
        a = cfg_key(0).public_path().display(),
        k = b64_pem(cfg_key(1))
    );
    let (err, message) = build_err(&yaml);
    assert!(matches!(err, ConfigError::Yaml { .. }), "{err:?}");
    assert_contains_all(&message, &["`dup-user`", "twice", "line"]);
}

#[test]
fn duplicate_user_in_json_form_is_an_error_naming_the_user() {
    let a = cfg_key(0).public_path().display().to_string();
    let json = format!(r#"{{"dup-user": {{"path": "{a}"}}, "dup-user": {{"path": "{a}"}}}}"#);
    let (_, message) = build_err(&format!("SystemAPIUsers: '{json}'\n"));
    assert_contains_all(&message, &["`dup-user`", "twice", "line"]);

    let err = SystemAuth::builder()
        .config_yaml("SystemAPIUsers: []\n")
        .env_overrides_from([("ZITADEL_SYSTEMAPIUSERS", json.as_str())])
        .build()
        .expect_err("duplicate in the environment JSON");
    assert_contains_all(&err.to_string(), &["ZITADEL_SYSTEMAPIUSERS", "`dup-user`"]);
}

#[test]
fn entry_with_neither_path_nor_key_data_is_an_error() {
    for entry in [
        "  - lonely-user: {}\n",
        "  - lonely-user:\n",
        "  - lonely-user:\n      Memberships:\n        - MemberType: System\n          Roles: [SYSTEM_OWNER]\n",
        "  - lonely-user:\n      Path: \"\"\n",
    ] {
        let (err, message) = build_err(&format!("SystemAPIUsers:\n{entry}"));
        assert!(matches!(err, ConfigError::Yaml { .. }), "{err:?}");
        assert_contains_all(&message, &["`lonely-user`", "Path", "KeyData", "line"]);
    }
}

#[test]
fn an_unknown_field_in_an_entry_without_a_key_is_an_error_naming_user_and_field() {
    let yaml = format!(
        "SystemAPIUsers:\n  - good-user:\n      Path: {a}\n  - typo-user:\n      Paht: {a}\n",
        a = cfg_key(0).public_path().display()
    );
    let (err, message) = build_err(&yaml);
    assert!(matches!(err, ConfigError::Yaml { .. }), "{err:?}");
    assert_contains_all(&message, &["`typo-user`", "`Paht`", "line"]);
    // It points at the entry, on line 4 or 5 (1-based), not at the first user.
    assert!(
        message.contains("line 4") || message.contains("line 5"),
        "{message}"
    );
}

fn membership_config(membership: &str) -> String {
    format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  - member-user:\n      Path: {}\n      Memberships:\n{membership}",
        cfg_key(0).public_path().display()
    )
}

#[test]
fn unsupported_membership_types_are_refused() {
    for kind in ["Project", "ProjectGrant", "Instance", "SYSTEMS"] {
        let yaml = membership_config(&format!(
            "        - MemberType: {kind}\n          Roles: [PROJECT_OWNER]\n          AggregateID: \"42\"\n"
        ));
        let (err, message) = build_err(&yaml);
        assert!(matches!(err, ConfigError::Yaml { .. }), "{err:?}");
        assert_contains_all(
            &message,
            &[&format!("`{kind}`"), "System, IAM or Organization", "line"],
        );
        assert!(message.contains("member-user"), "{message}");
    }
}

#[test]
fn missing_member_type_is_refused() {
    let yaml = membership_config("        - Roles: [IAM_OWNER]\n          AggregateID: \"42\"\n");
    let (err, message) = build_err(&yaml);
    assert!(matches!(err, ConfigError::Yaml { .. }), "{err:?}");
    assert_contains_all(&message, &["MemberType", "line"]);
    assert!(message.contains("member-user"), "{message}");
}

#[test]
fn bad_yaml_syntax_is_an_error_with_line() {
    for yaml in [
        "SystemAPIUsers:\n  - user-1:\n      Path: [unclosed\n",
        "ExternalDomain: x\n  bad indent: y\n",
        "SystemAPIUsers:\n  - user-1:\n      Path: \"unterminated\n",
    ] {
        let (err, message) = build_err(yaml);
        assert!(matches!(err, ConfigError::Yaml { .. }), "{err:?}");
        assert!(message.contains("line"), "{message}");
    }
}

#[test]
fn bad_yaml_in_a_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        "SystemAPIUsers:\n  - user-1:\n      Path: [unclosed\n",
    )
    .unwrap();
    let err = SystemAuth::builder()
        .config_file(&path)
        .build()
        .expect_err("broken YAML");
    assert_contains_all(&err.to_string(), &[path_str(&path), "line"]);
}

#[test]
fn missing_config_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nowhere").join("config.yaml");
    let err = SystemAuth::builder()
        .config_file(&path)
        .build()
        .expect_err("missing config file");
    assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains(path_str(&path)), "{err}");
}

#[test]
fn missing_key_file_names_the_user_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pub");
    let (err, message) = build_err(&common::config_with_path("keyless-user", &missing));
    match &err {
        ConfigError::KeyFile { user, path, .. } => {
            assert_eq!(user, "keyless-user");
            assert_eq!(path, &missing);
        }
        other => panic!("expected ConfigError::KeyFile, got {other:?}"),
    }
    assert_contains_all(&message, &["`keyless-user`", path_str(&missing)]);
}

#[test]
fn both_path_and_key_data_uses_path_with_a_warning() {
    let (a, b) = (cfg_key(0), cfg_key(1));
    // A KeyData that could not even be decoded: ZITADEL reads Path, so it builds.
    let yaml = format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  - both-user:\n      KeyData: '%%% not base64 %%%'\n      Path: {}\n",
        a.public_path().display()
    );
    let config = Config::from_yaml(&yaml).unwrap();
    assert_eq!(
        config.users()[0].key(),
        &KeySource::Path(a.public_path().clone())
    );
    assert!(
        config
            .warnings()
            .iter()
            .any(|w| w.contains("both-user") && w.contains("Path") && w.contains("KeyData")),
        "{:?}",
        config.warnings()
    );
    let auth = build(&yaml);
    assert_user_verifies(&auth, "both-user", a, AUD);

    // With a valid KeyData of another key, Path's key is the one used.
    let yaml = format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  - both-user:\n      Path: {}\n      KeyData: {}\n",
        a.public_path().display(),
        b64_pem(b)
    );
    let auth = build(&yaml);
    assert_user_verifies(&auth, "both-user", a, AUD);
    assert_eq!(
        auth.verify(&token(b, "both-user", AUD)).unwrap_err(),
        AuthError::InvalidSignature
    );
}

/// ZITADEL's config loader (viper) lowercases the keys of YAML maps: in the list and
/// map forms an id written `System-User-1` is `system-user-1`, and tokens carry that.
#[test]
fn user_ids_in_the_list_and_map_forms_are_lowercased_as_zitadel_does() {
    let key = cfg_key(0);
    let list = common::config_with_path("System-User-1", &key.public_path());
    let map = format!(
        "SystemAPIUsers:\n  System-User-1:\n    Path: {}\n",
        key.public_path().display()
    );
    for yaml in [list, map] {
        let config = Config::from_yaml(&yaml).unwrap();
        assert_eq!(config.users()[0].id(), "system-user-1");
        assert_eq!(config.users()[0].written_id(), Some("System-User-1"));
        assert!(
            config
                .warnings()
                .iter()
                .any(|w| w.contains("`System-User-1`")
                    && w.contains("`system-user-1`")
                    && w.contains("lowercase")),
            "{:?}",
            config.warnings()
        );
        let auth = SystemAuth::builder()
            .config_yaml(&yaml)
            .audience(AUD)
            .build()
            .unwrap();
        assert_eq!(auth.user_ids(), ["system-user-1"]);
        assert_user_verifies(&auth, "system-user-1", key, AUD);
        assert_eq!(
            auth.verify(&token(key, "System-User-1", AUD)).unwrap_err(),
            AuthError::UnknownUser
        );
    }
    // A lowercase id has no warning.
    let config = Config::from_yaml(&common::config_with_path(
        "system-user-1",
        &key.public_path(),
    ))
    .unwrap();
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    assert_eq!(config.users()[0].written_id(), None);
}

/// Ids inside the JSON form (a YAML string, or `ZITADEL_SYSTEMAPIUSERS`) keep their
/// case, as in ZITADEL.
#[test]
fn user_ids_in_the_json_form_keep_their_case() {
    let key = cfg_key(1);
    let json = format!(
        r#"{{"System-User-1": {{"path": "{}"}}}}"#,
        key.public_path().display()
    );
    let in_yaml = Config::from_yaml(&format!("SystemAPIUsers: '{json}'\n")).unwrap();
    let mut in_env = Config::from_yaml("ExternalDomain: x\n").unwrap();
    in_env
        .apply_env_from(|name| (name == "ZITADEL_SYSTEMAPIUSERS").then(|| json.clone()))
        .unwrap();
    for config in [in_yaml, in_env] {
        assert_eq!(config.users()[0].id(), "System-User-1");
        assert_eq!(config.users()[0].written_id(), None);
    }
    let auth = SystemAuth::builder()
        .config_yaml(&format!("SystemAPIUsers: '{json}'\n"))
        .audience(AUD)
        .build()
        .unwrap();
    assert_user_verifies(&auth, "System-User-1", key, AUD);
    assert_eq!(
        auth.verify(&token(key, "system-user-1", AUD)).unwrap_err(),
        AuthError::UnknownUser
    );
}

#[test]
fn two_ids_equal_once_lowercased_are_an_error() {
    let (a, b) = (cfg_key(0), cfg_key(1));
    let list = format!(
        "SystemAPIUsers:\n  - Ops-User:\n      Path: {}\n  - ops-user:\n      Path: {}\n",
        a.public_path().display(),
        b.public_path().display()
    );
    let map = format!(
        "SystemAPIUsers:\n  OPS-USER:\n    Path: {}\n  Ops-User:\n    Path: {}\n",
        a.public_path().display(),
        b.public_path().display()
    );
    for yaml in [list, map] {
        let (err, message) = build_err(&yaml);
        assert!(matches!(err, ConfigError::Yaml { .. }), "{err:?}");
        assert_contains_all(&message, &["lowercase", "line"]);
        assert!(
            message.contains("`Ops-User`")
                && (message.contains("`ops-user`") || message.contains("`OPS-USER`")),
            "{message}"
        );
    }
}

#[test]
fn builder_without_config_is_no_config() {
    let err = SystemAuth::builder()
        .audience(AUD)
        .build()
        .expect_err("no config");
    assert!(matches!(err, ConfigError::NoConfig), "{err:?}");
    assert!(err.to_string().contains("config_file"), "{err}");
}

// ---------------------------------------------------------------------------------
// Memberships
// ---------------------------------------------------------------------------------

#[test]
fn no_memberships_means_system_owner() {
    let auth = build(&common::config_with_path(
        "system-user-1",
        &cfg_key(0).public_path(),
    ));
    let user = auth
        .verify(&token(cfg_key(0), "system-user-1", AUD))
        .unwrap();
    assert_eq!(
        user.memberships(),
        [Membership {
            member_type: MemberType::System,
            roles: vec!["SYSTEM_OWNER".to_owned()],
            aggregate_id: None,
            object_id: None,
        }]
    );
    assert_eq!(user.memberships(), [Membership::default_system_owner()]);
    assert!(user.has_role("SYSTEM_OWNER"));
    assert!(!user.has_role("IAM_OWNER"));
}

/// `Memberships` present but empty or null is an error: a half-written file must
/// never turn a restricted user into a `SYSTEM_OWNER` (ZITADEL gives the default).
#[test]
fn empty_or_null_memberships_are_an_error_naming_the_user() {
    let key = cfg_key(0).public_path().display().to_string();
    let json = |memberships: &str| {
        format!(
            r#"SystemAPIUsers: '{{"member-user": {{"path": "{key}", "memberships": {memberships}}}}}'"#
        )
    };
    for yaml in [
        format!("SystemAPIUsers:\n  - member-user:\n      Path: {key}\n      Memberships: []\n"),
        format!("SystemAPIUsers:\n  - member-user:\n      Path: {key}\n      Memberships:\n"),
        format!("SystemAPIUsers:\n  - member-user:\n      Path: {key}\n      Memberships: ~\n"),
        format!("SystemAPIUsers:\n  member-user:\n    Path: {key}\n    memberships: null\n"),
        json("[]"),
        json("null"),
    ] {
        let (err, message) = build_err(&yaml);
        assert!(matches!(err, ConfigError::Yaml { .. }), "{err:?}");
        assert_contains_all(
            &message,
            &["`member-user`", "Memberships is empty", "default"],
        );
    }
    let env = format!(r#"{{"member-user": {{"path": "{key}", "Memberships": []}}}}"#);
    let err = SystemAuth::builder()
        .config_yaml("ExternalDomain: x\n")
        .env_overrides_from([("ZITADEL_SYSTEMAPIUSERS", env.as_str())])
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::Env { .. }), "{err:?}");
    assert!(err.to_string().contains("Memberships is empty"), "{err}");
}

/// At a reload, an emptied `Memberships` keeps the whole last good registry: the
/// restricted user stays restricted.
#[test]
fn emptied_memberships_at_a_reload_keep_the_user_restricted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let key = cfg_key(0).public_path().display().to_string();
    let write = |memberships: &str| {
        std::fs::write(
            &config,
            format!(
                "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  - member-user:\n      Path: {key}\n      Memberships:{memberships}\n"
            ),
        )
        .unwrap()
    };
    write(
        "\n        - MemberType: IAM\n          Roles: [IAM_OWNER]\n          AggregateID: \"42\"",
    );
    let auth = SystemAuth::builder()
        .config_file(&config)
        .watch(false)
        .build()
        .unwrap();
    let restricted = |auth: &SystemAuth| {
        let user = auth.verify(&token(cfg_key(0), "member-user", AUD)).unwrap();
        assert!(!user.has_role("SYSTEM_OWNER"), "{user:?}");
        assert_eq!(user.memberships()[0].member_type, MemberType::Iam);
    };
    restricted(&auth);
    for emptied in [" []", "", " null"] {
        write(emptied);
        let err = auth.reload().unwrap_err();
        assert!(err.to_string().contains("Memberships is empty"), "{err}");
        assert_eq!(auth.generation(), 1);
        restricted(&auth);
    }
}

/// ZITADEL's decoder splits a `Roles` string at commas (mapstructure's
/// `StringToSliceHookFunc(",")`), as the example in its `defaults.yaml` writes it.
#[test]
fn roles_as_one_string_are_split_at_commas_in_every_form() {
    let key = cfg_key(0);
    let list = |roles: &str| {
        format!(
            "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  - member-user:\n      Path: {}\n      Memberships:\n        - MemberType: System\n          Roles: {roles}\n",
            key.public_path().display()
        )
    };
    let map = |roles: &str| {
        format!(
            "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  member-user:\n    Path: {}\n    Memberships:\n      - MemberType: System\n        Roles: {roles}\n",
            key.public_path().display()
        )
    };
    let json = |roles: &str| {
        format!(
            r#"{{"member-user": {{"path": "{}", "memberships": [{{"memberType": "System", "roles": {roles}}}]}}}}"#,
            key.public_path().display()
        )
    };
    let expect = |auth: &SystemAuth, roles: &[&str]| {
        let user = auth.verify(&token(key, "member-user", AUD)).unwrap();
        assert_eq!(user.memberships()[0].roles, roles, "{user:?}");
    };
    let cases: [(&str, &str, &[&str]); 6] = [
        ("\"IAM_OWNER\"", "\"IAM_OWNER\"", &["IAM_OWNER"]),
        ("IAM_OWNER", "\"IAM_OWNER\"", &["IAM_OWNER"]),
        (
            "\"SYSTEM_OWNER,IAM_OWNER\"",
            "\"SYSTEM_OWNER,IAM_OWNER\"",
            &["SYSTEM_OWNER", "IAM_OWNER"],
        ),
        // No trimming, as in Go: the space stays part of the role name.
        (
            "\"SYSTEM_OWNER, IAM_OWNER\"",
            "\"SYSTEM_OWNER, IAM_OWNER\"",
            &["SYSTEM_OWNER", " IAM_OWNER"],
        ),
        ("\"\"", "\"\"", &[]),
        (
            "[SYSTEM_OWNER, IAM_OWNER]",
            "[\"SYSTEM_OWNER\", \"IAM_OWNER\"]",
            &["SYSTEM_OWNER", "IAM_OWNER"],
        ),
    ];
    for (yaml_roles, json_roles, roles) in cases {
        expect(&build(&list(yaml_roles)), roles);
        expect(&build(&map(yaml_roles)), roles);
        expect(
            &build(&format!(
                "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers: '{}'\n",
                json(json_roles)
            )),
            roles,
        );
        let auth = SystemAuth::builder()
            .config_yaml("ExternalDomain: custom-domain.com\nExternalPort: 443\n")
            .env_overrides_from([("ZITADEL_SYSTEMAPIUSERS", json(json_roles))])
            .build()
            .unwrap();
        expect(&auth, roles);
    }
    // The example in ZITADEL's defaults.yaml, as it is written there.
    let defaults = format!(
        "SystemAPIUsers:\n  - superuser:\n      Path: {}\n      Memberships:\n        - MemberType: System\n          Roles: \"SYSTEM_OWNER\"\n        - MemberType: IAM\n          Roles: \"IAM_OWNER\"\n          AggregateID: \"123456789012345678\"\n",
        key.public_path().display()
    );
    let auth = SystemAuth::builder()
        .config_yaml(&defaults)
        .audience(AUD)
        .build()
        .unwrap();
    let user = auth.verify(&token(key, "superuser", AUD)).unwrap();
    assert_eq!(user.memberships()[0].roles, ["SYSTEM_OWNER"]);
    assert_eq!(user.memberships()[1].roles, ["IAM_OWNER"]);
}

/// Fields ZITADEL's structs have load: `ObjectID` is kept on the membership,
/// `NotBefore`/`NotAfter` on a user are read and never enforced (with a warning that
/// says so).
#[test]
fn fields_zitadel_has_load_and_not_before_after_warn() {
    let key = cfg_key(0);
    let yaml = format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  - member-user:\n      Path: {}\n      NotBefore: 2030-01-01T00:00:00Z\n      NotAfter: 2000-01-01T00:00:00Z\n      Memberships:\n        - MemberType: IAM\n          Roles: [IAM_OWNER]\n          AggregateID: \"42\"\n          ObjectID: \"43\"\n",
        key.public_path().display()
    );
    let config = Config::from_yaml(&yaml).unwrap();
    let warnings = config.warnings().join("\n");
    assert_contains_all(
        &warnings,
        &[
            "`member-user`",
            "NotBefore",
            "enforced by neither",
            "line 6",
        ],
    );
    let auth = build(&yaml);
    // Neither NotBefore in the future nor NotAfter in the past is enforced.
    let user = auth.verify(&token(key, "member-user", AUD)).unwrap();
    assert_eq!(
        user.memberships(),
        [Membership {
            member_type: MemberType::Iam,
            roles: vec!["IAM_OWNER".to_owned()],
            aggregate_id: Some("42".to_owned()),
            object_id: Some("43".to_owned()),
        }]
    );
}

/// ZITADEL ignores unknown fields (its own integration config has `InstanceID` in
/// memberships): a warning with the line and the nearest known name, not a failure.
#[test]
fn unknown_fields_are_warnings_with_line_and_nearest_name() {
    let key = cfg_key(0);
    let yaml = format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  - member-user:\n      Path: {}\n      KeyDta: x\n      Memberships:\n        - MemberType: IAM\n          Roles: [IAM_OWNER]\n          AggregateID: \"42\"\n          InstanceID: \"42\"\n        - MemberType: System\n          Rols: [SYSTEM_OWNER]\n",
        key.public_path().display()
    );
    let config = Config::from_yaml(&yaml).unwrap();
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert_contains_all(
        &warnings[0],
        &[
            "line 6",
            "`member-user`",
            "`KeyDta`",
            "did you mean `KeyData`",
        ],
    );
    assert_contains_all(
        &warnings[1],
        &["line 11", "membership 1", "`InstanceID`", "ignored"],
    );
    assert_contains_all(
        &warnings[2],
        &["line 13", "membership 2", "`Rols`", "did you mean `Roles`"],
    );
    // A misspelt field grants less, never more: the second membership has no role.
    let auth = SystemAuth::builder()
        .config_yaml(&yaml)
        .instance_id("42")
        .build()
        .unwrap();
    let user = auth.verify(&token(key, "member-user", AUD)).unwrap();
    assert!(user.has_role("IAM_OWNER"));
    assert!(!user.has_role("SYSTEM_OWNER"));
    assert!(user.memberships()[1].roles.is_empty());
    // The same in the JSON form, without lines.
    let json = format!(
        r#"{{"member-user": {{"path": "{}", "memberships": [{{"memberType": "System", "roles": ["SYSTEM_OWNER"], "InstanceID": "1"}}]}}}}"#,
        key.public_path().display()
    );
    let mut config = Config::from_yaml("ExternalDomain: x\n").unwrap();
    config
        .apply_env_from(|name| (name == "ZITADEL_SYSTEMAPIUSERS").then(|| json.clone()))
        .unwrap();
    assert_eq!(config.warnings().len(), 1, "{:?}", config.warnings());
    assert_contains_all(
        &config.warnings()[0],
        &["ZITADEL_SYSTEMAPIUSERS", "`InstanceID`"],
    );
}

/// An unknown field stays an error only where the entry is then unusable, and the
/// error names it.
#[test]
fn an_entry_left_without_a_key_or_type_names_the_unknown_field() {
    let (_, message) = build_err(&format!(
        "SystemAPIUsers:\n  - typo-user:\n      Pth: {}\n",
        cfg_key(0).public_path().display()
    ));
    assert_contains_all(
        &message,
        &[
            "`typo-user`",
            "neither Path nor KeyData",
            "`Pth`",
            "did you mean `Path`",
            "line",
        ],
    );
    let (_, message) = build_err(&membership_config(
        "        - MemberTyp: System\n          Roles: [SYSTEM_OWNER]\n",
    ));
    assert_contains_all(
        &message,
        &[
            "`member-user`",
            "MemberType",
            "`MemberTyp`",
            "did you mean `MemberType`",
            "line",
        ],
    );
}

#[test]
fn configured_memberships_come_back_on_the_verified_user() {
    let yaml = membership_config(
        "        - MemberType: System\n          Roles: [SYSTEM_OWNER, SYSTEM_ADMIN]\n        - MemberType: IAM\n          Roles:\n            - IAM_OWNER\n          AggregateID: 123456789012345678\n        - memberType: organization\n          roles: [ORG_OWNER]\n          aggregateId: \"987654321098765432\"\n",
    );
    let expected = [
        Membership {
            member_type: MemberType::System,
            roles: vec!["SYSTEM_OWNER".to_owned(), "SYSTEM_ADMIN".to_owned()],
            aggregate_id: None,
            object_id: None,
        },
        Membership {
            member_type: MemberType::Iam,
            roles: vec!["IAM_OWNER".to_owned()],
            aggregate_id: Some("123456789012345678".to_owned()),
            object_id: None,
        },
        Membership {
            member_type: MemberType::Organization,
            roles: vec!["ORG_OWNER".to_owned()],
            aggregate_id: Some("987654321098765432".to_owned()),
            object_id: None,
        },
    ];
    let config = Config::from_yaml(&yaml).unwrap();
    assert_eq!(config.users()[0].memberships(), expected);

    let auth = build(&yaml);
    let user = auth.verify(&token(cfg_key(0), "member-user", AUD)).unwrap();
    assert_eq!(user.user_id(), "member-user");
    assert_eq!(user.memberships(), expected);
    // No instance or organisation on this request: only System applies.
    assert!(user.has_role("SYSTEM_ADMIN"));
    assert!(!user.has_role("IAM_OWNER"));

    // With the instance named, the IAM membership applies; the id stayed exact.
    let auth = SystemAuth::builder()
        .config_yaml(&yaml)
        .instance_id("123456789012345678")
        .build()
        .unwrap();
    let user = auth.verify(&token(cfg_key(0), "member-user", AUD)).unwrap();
    assert!(user.has_role("IAM_OWNER"));
}

#[test]
fn large_numeric_aggregate_id_in_json_stays_exact() {
    let json = format!(
        r#"{{"json-member": {{"path": "{}", "memberships": [{{"memberType": "IAM", "roles": ["IAM_OWNER"], "aggregateID": 123456789012345678}}]}}}}"#,
        cfg_key(0).public_path().display()
    );
    let auth = build(&format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers: '{json}'\n"
    ));
    let user = auth.verify(&token(cfg_key(0), "json-member", AUD)).unwrap();
    assert_eq!(
        user.memberships(),
        [Membership {
            member_type: MemberType::Iam,
            roles: vec!["IAM_OWNER".to_owned()],
            aggregate_id: Some("123456789012345678".to_owned()),
            object_id: None,
        }]
    );
}

// ---------------------------------------------------------------------------------
// The audience at a reload
// ---------------------------------------------------------------------------------

/// A config of `system-user-1` with `key`'s public key file, after `external` (the
/// `External*` lines).
fn with_external(external: &str, key: &TestKey) -> String {
    format!(
        "{external}SystemAPIUsers:\n  - system-user-1:\n      Path: {}\n",
        key.public_path().display()
    )
}

/// The `ZITADEL_EXTERNAL*` variables go on overriding the file at every reload: a
/// domain changed in the file comes with the port and scheme the variables set, and
/// a domain the variables set stays whatever the file says.
#[test]
fn external_url_variables_still_apply_after_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let key = cfg_key(0);
    let write = |domain: &str| {
        let external =
            format!("ExternalDomain: {domain}\nExternalPort: 443\nExternalSecure: true\n");
        std::fs::write(&config, with_external(&external, key)).unwrap();
    };
    write("old.example");
    let port_and_scheme = SystemAuth::builder()
        .config_file(&config)
        .watch(false)
        .env_overrides_from([
            ("ZITADEL_EXTERNALPORT", "8443"),
            ("ZITADEL_EXTERNALSECURE", "false"),
        ])
        .build()
        .unwrap();
    let domain = SystemAuth::builder()
        .config_file(&config)
        .watch(false)
        .env_overrides_from([("ZITADEL_EXTERNALDOMAIN", "env.example")])
        .build()
        .unwrap();
    assert_eq!(port_and_scheme.audiences(), ["http://old.example:8443"]);
    assert_eq!(domain.audiences(), ["https://env.example"]);

    write("new.example");
    assert!(port_and_scheme.reload().unwrap().changed);
    assert_eq!(port_and_scheme.audiences(), ["http://new.example:8443"]);
    let new = token(key, "system-user-1", "http://new.example:8443");
    let old = token(key, "system-user-1", "http://old.example:8443");
    assert_eq!(
        port_and_scheme.verify(&new).unwrap().user_id(),
        "system-user-1"
    );
    assert!(matches!(
        port_and_scheme.verify(&old),
        Err(AuthError::AudienceMismatch { .. })
    ));

    domain.reload().unwrap();
    assert_eq!(domain.audiences(), ["https://env.example"]);
    let env = token(key, "system-user-1", "https://env.example");
    assert_eq!(domain.verify(&env).unwrap().user_id(), "system-user-1");
}

/// `ExternalDomain`, `ExternalPort` and `ExternalSecure` are read again at every
/// reload: a changed audience is a new registry (a new generation, an empty cache),
/// and tokens for the old audience are refused from the swap on.
#[test]
fn a_changed_external_url_is_in_effect_after_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let key = cfg_key(0);
    let write = |domain: &str, port: u16| {
        let external =
            format!("ExternalDomain: {domain}\nExternalPort: {port}\nExternalSecure: true\n");
        std::fs::write(&config, with_external(&external, key)).unwrap();
    };
    write("old.example", 443);
    let auth = SystemAuth::builder()
        .config_file(&config)
        .watch(false)
        .build()
        .unwrap();
    let old = token(key, "system-user-1", "https://old.example");
    let new = token(key, "system-user-1", "https://new.example:8443");
    auth.verify(&old).unwrap();
    auth.verify(&old).unwrap(); // now cached
    assert_eq!(auth.status().cached_tokens, 1);

    write("new.example", 8443);
    let report = auth.reload().unwrap();
    assert!(report.changed, "{report:?}");
    assert_eq!(auth.generation(), 2);
    assert_eq!(auth.audiences(), ["https://new.example:8443"]);
    assert_eq!(auth.status().audiences, ["https://new.example:8443"]);
    assert_eq!(auth.status().cached_tokens, 0);
    match auth.verify(&old) {
        Err(AuthError::AudienceMismatch { expected, .. }) => {
            assert_eq!(&*expected, "https://new.example:8443")
        }
        other => panic!("the old audience's token: {other:?}"),
    }
    assert_eq!(auth.verify(&new).unwrap().user_id(), "system-user-1");

    // Nothing changed: no new generation.
    assert!(!auth.reload().unwrap().changed);
    assert_eq!(auth.generation(), 2);

    // A domain that makes no audience keeps the last good registry.
    write("bad domain", 443);
    let err = auth.reload().unwrap_err();
    assert!(matches!(err, ConfigError::InvalidAudience(_)), "{err:?}");
    assert_eq!(auth.generation(), 2);
    assert_eq!(auth.verify(&new).unwrap().user_id(), "system-user-1");
}

/// With `.audience(..)` the audience is fixed: a changed `ExternalDomain` changes
/// nothing.
#[test]
fn a_fixed_audience_ignores_a_changed_external_url() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let key = cfg_key(0);
    let write = |domain: &str| {
        let external = format!("ExternalDomain: {domain}\n");
        std::fs::write(&config, with_external(&external, key)).unwrap();
    };
    write("old.example");
    let auth = SystemAuth::builder()
        .config_file(&config)
        .audience(AUD)
        .watch(false)
        .build()
        .unwrap();
    write("new.example");
    assert!(!auth.reload().unwrap().changed);
    assert_eq!(auth.generation(), 1);
    assert_eq!(auth.audiences(), [AUD]);
    assert_user_verifies(&auth, "system-user-1", key, AUD);
}

/// The watcher applies a changed external URL by itself.
#[test]
fn the_watcher_applies_a_changed_external_url() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let key = cfg_key(1);
    let text = |domain: &str| {
        with_external(
            &format!("ExternalDomain: {domain}\nExternalPort: 443\n"),
            key,
        )
    };
    std::fs::write(&config, text("old.example")).unwrap();
    let auth = SystemAuth::builder().config_file(&config).build().unwrap();
    let staged = dir.path().join("config.yaml.tmp");
    std::fs::write(&staged, text("new.example")).unwrap();
    std::fs::rename(&staged, &config).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while auth.generation() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload: {:#?}",
            auth.status()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_user_verifies(&auth, "system-user-1", key, "https://new.example");
    assert_audience_refused(&auth, key, "system-user-1", "https://old.example");
}
