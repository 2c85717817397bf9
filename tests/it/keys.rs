//! Key material: every format ZITADEL accepts loads and verifies a real token; every
//! key this crate refuses is refused when the config is built, with a message that
//! names the user and the file and says what to do.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use aws_lc_rs::{digest, rsa::KeySize};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use zitadel_system_auth::{
    AuthError, ConfigError, KeyError, SystemAuth,
    key::{KeyFormat, PublicKey},
};

use crate::common::{
    self, AUD, KeyExt as _, TestKey, claims_for, now, openssl, openssl_stdin, path_str,
};

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

/// The key pair of these tests' configs.
fn key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(TestKey::generate)
}

/// A second key no user has: its tokens must be refused by every config here.
fn stranger() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(TestKey::generate)
}

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write file");
    path
}

fn build_with_path(user: &str, path: &Path) -> Result<SystemAuth, ConfigError> {
    SystemAuth::builder()
        .config_yaml(&common::config_with_path(user, path))
        .build()
}

/// Config text with one user whose `KeyData` is `value` written on the same line.
fn config_with_key_data_line(user: &str, value: &str) -> String {
    format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  - {user}:\n      KeyData: {value}\n"
    )
}

/// Proves `auth` holds `signer`'s public key for `user`: a token signed by it
/// verifies, and the same claims signed by another key do not.
fn assert_accepts(auth: &SystemAuth, user: &str, signer: &TestKey) {
    let claims = claims_for(user, AUD, now());
    let verified = auth
        .verify(&signer.rs256(&claims))
        .unwrap_or_else(|e| panic!("a token of {user} should verify: {e}"));
    assert_eq!(verified.user_id(), user);
    let forged = stranger().rs256(&claims);
    assert_eq!(
        auth.verify(&forged).unwrap_err(),
        AuthError::InvalidSignature,
        "a token signed by another key must be refused"
    );
}

/// Builds a config whose `Path` is `path`, expects a refusal and returns the
/// message after checking it names the user and the file.
fn refusal_for_path(user: &str, path: &Path) -> (ConfigError, String) {
    let err = build_with_path(user, path).expect_err("the key must be refused at build");
    let message = err.to_string();
    assert!(
        message.contains(&format!("`{user}`")),
        "the message should name the user: {message}"
    );
    assert!(
        message.contains(path_str(path)),
        "the message should name the file: {message}"
    );
    (err, message)
}

fn key_error(err: &ConfigError) -> &KeyError {
    match err {
        ConfigError::Key { source, .. } => source,
        other => panic!("expected ConfigError::Key, got {other:?}"),
    }
}

fn pem_relabel(text: &[u8], label: &str) -> String {
    let block = pem::parse(text).expect("PEM");
    pem::encode(&pem::Pem::new(label, block.contents().to_vec()))
}

/// The PEM text `openssl` writes for `args`, reading the key from `input` on stdin.
fn openssl_text(args: &[&str], input: &[u8]) -> String {
    String::from_utf8(openssl_stdin(args, input)).expect("openssl output is text")
}

/// PKCS#1 `RSA PUBLIC KEY` text of the main key, written by openssl.
fn pkcs1_public_pem() -> String {
    openssl_text(
        &["rsa", "-pubin", "-RSAPublicKey_out"],
        key().public_pem().as_bytes(),
    )
}

/// A self-signed certificate for the main key, made by openssl in `dir`.
fn certificate(dir: &Path) -> PathBuf {
    let cert = dir.join("c.pem");
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        path_str(&key().private_path()),
        "-subj",
        "/CN=system-user-1",
        "-days",
        "2",
        "-out",
        path_str(&cert),
    ]);
    cert
}

fn der_len(len: usize) -> Vec<u8> {
    match len {
        0..=0x7f => vec![len as u8],
        0x80..=0xff => vec![0x81, len as u8],
        _ => vec![0x82, (len >> 8) as u8, len as u8],
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::new();
    if bytes[0] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(bytes);
    der(0x02, &content)
}

/// A PKCS#1 RSAPublicKey with a modulus of exactly `bits` bits (a multiple of 8).
fn fake_pkcs1_der(bits: usize) -> Vec<u8> {
    assert_eq!(bits % 8, 0);
    let mut modulus = vec![0xc5u8; bits / 8];
    modulus[0] = 0xd1; // top bit set: exactly `bits` bits
    *modulus.last_mut().unwrap() = 0x0f; // odd
    let mut body = der_uint(&modulus);
    body.extend(der_uint(&[0x01, 0x00, 0x01]));
    der(0x30, &body)
}

/// Wraps PKCS#1 bytes in a PKIX SubjectPublicKeyInfo with rsaEncryption.
fn spki_der(pkcs1: &[u8]) -> Vec<u8> {
    let oid = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    let mut algorithm = oid.to_vec();
    algorithm.extend([0x05, 0x00]);
    let algorithm = der(0x30, &algorithm);
    let mut bit_string = vec![0];
    bit_string.extend_from_slice(pkcs1);
    let mut body = algorithm;
    body.extend(der(0x03, &bit_string));
    der(0x30, &body)
}

fn sha256_hex(bytes: &[u8]) -> String {
    digest::digest(&digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------
// Accepted public key formats
// ---------------------------------------------------------------------------------

#[test]
fn pkix_public_key_from_openssl_rsa_pubout_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let text = openssl(&["rsa", "-in", path_str(&key().private_path()), "-pubout"]);
    assert!(text.starts_with(b"-----BEGIN PUBLIC KEY-----"));
    let path = write(dir.path(), "u.pub", &text);
    let auth = build_with_path("system-user-1", &path).expect("PKIX key loads");
    assert_accepts(&auth, "system-user-1", key());
}

#[test]
fn pkcs1_public_key_from_openssl_rsa_public_key_out_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let text = openssl(&[
        "rsa",
        "-in",
        path_str(&key().private_path()),
        "-RSAPublicKey_out",
    ]);
    assert!(text.starts_with(b"-----BEGIN RSA PUBLIC KEY-----"));
    let path = write(dir.path(), "u.pub", &text);
    // ZITADEL cannot read PKCS#1 content: the crate loads it with a WARN that gives
    // the conversion command (and never the key).
    let log = common::Captured::default();
    let auth = tracing::subscriber::with_default(log.subscriber(), || {
        build_with_path("system-user-1", &path).expect("PKCS#1 key loads")
    });
    assert_accepts(&auth, "system-user-1", key());
    // `status()` says so too, beside the user.
    let users = auth.status().users;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].user_id, "system-user-1");
    assert_eq!(users[0].key_format, KeyFormat::Pkcs1);
    assert_eq!(users[0].bits, 2048);
    let text = log.text();
    let warning = text
        .lines()
        .find(|line| line.contains("WARN") && line.contains("PKCS#1"))
        .unwrap_or_else(|| panic!("no PKCS#1 warning in {text}"));
    for part in [
        "`system-user-1`",
        "ZITADEL cannot",
        "openssl rsa -RSAPublicKey_in -in key.pub -pubout",
        path_str(&path),
    ] {
        assert!(warning.contains(part), "{part:?} not in {warning}");
    }
    let body: String = String::from_utf8_lossy(&text_of(&path))
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    assert!(!text.contains(&body[..40]), "the log holds key material");
    assert_eq!(
        PublicKey::from_pem(&text_of(&path)).unwrap().format(),
        KeyFormat::Pkcs1
    );
    // A PKIX key loads without a warning, and says so.
    let log = common::Captured::default();
    tracing::subscriber::with_default(log.subscriber(), || {
        build_with_path("system-user-1", &key().public_path()).expect("PKIX key loads")
    });
    assert!(!log.text().contains("PKCS#1"), "{}", log.text());
    assert_eq!(
        PublicKey::from_pem(key().public_pem().as_bytes())
            .unwrap()
            .format(),
        KeyFormat::Pkix
    );
}

fn text_of(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read the key file")
}

#[test]
fn pkix_bytes_under_rsa_public_key_label_verifies() {
    // ZITADEL's Go code writes PKIX bytes under the `RSA PUBLIC KEY` label.
    let dir = tempfile::tempdir().unwrap();
    let text = pem_relabel(key().public_pem().as_bytes(), "RSA PUBLIC KEY");
    let block = pem::parse(&text).unwrap();
    assert_eq!(block.contents(), key().public_der(), "PKIX bytes");
    let path = write(dir.path(), "u.pub", &text);
    let auth = build_with_path("system-user-1", &path).expect("PKIX under RSA label loads");
    assert_accepts(&auth, "system-user-1", key());
}

#[test]
fn pkcs1_bytes_under_public_key_label_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let text = pem_relabel(pkcs1_public_pem().as_bytes(), "PUBLIC KEY");
    assert!(text.starts_with("-----BEGIN PUBLIC KEY-----"));
    assert_ne!(pem::parse(&text).unwrap().contents(), key().public_der());
    let path = write(dir.path(), "u.pub", &text);
    let auth = build_with_path("system-user-1", &path).expect("PKCS#1 under PUBLIC KEY loads");
    assert_accepts(&auth, "system-user-1", key());
}

#[test]
fn rsa_4096_key_verifies() {
    let big = TestKey::generate_size(KeySize::Rsa4096);
    let auth = build_with_path("big-user", &big.public_path()).expect("4096-bit key loads");
    assert_accepts(&auth, "big-user", &big);
    let parsed = PublicKey::from_pem(big.public_pem().as_bytes()).unwrap();
    assert_eq!(parsed.bits(), 4096);
}

#[test]
fn rsa_3072_key_verifies() {
    let mid = TestKey::generate_size(KeySize::Rsa3072);
    let auth = build_with_path("mid-user", &mid.public_path()).expect("3072-bit key loads");
    assert_accepts(&auth, "mid-user", &mid);
    let parsed = PublicKey::from_pem(mid.public_pem().as_bytes()).unwrap();
    assert_eq!(parsed.bits(), 3072);
}

// ---------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------

#[test]
fn x509_certificate_verifies_now() {
    let dir = tempfile::tempdir().unwrap();
    let cert = certificate(dir.path());
    let auth = build_with_path("system-user-1", &cert).expect("certificate loads");
    assert_accepts(&auth, "system-user-1", key());
}

#[test]
fn x509_certificate_validity_matches_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let cert = certificate(dir.path());
    let (not_before, not_after) = common::openssl_validity(&cert);
    assert_eq!(not_after - not_before, 2 * 86_400, "-days 2");
    let parsed = PublicKey::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let validity = parsed
        .validity()
        .expect("a certificate has a validity window");
    assert_eq!(validity.not_before, not_before);
    assert_eq!(validity.not_after, not_after);
    // A bare public key has none.
    assert_eq!(
        PublicKey::from_pem(key().public_pem().as_bytes())
            .unwrap()
            .validity(),
        None
    );
}

/// A SystemAuth for the certificate whose clock reads `at` (seconds), and a token
/// valid at that time.
fn cert_auth_at(cert: &Path, at: u64) -> (SystemAuth, String) {
    let auth = SystemAuth::builder()
        .config_yaml(&common::config_with_path("system-user-1", cert))
        .clock(move || common::at(at, 0))
        .build()
        .expect("certificate loads");
    let token = key().rs256(&claims_for("system-user-1", AUD, at));
    (auth, token)
}

#[test]
fn x509_certificate_refused_before_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let cert = certificate(dir.path());
    let (not_before, _) = common::openssl_validity(&cert);

    let (auth, token) = cert_auth_at(&cert, not_before - 1);
    assert_eq!(auth.verify(&token).unwrap_err(), AuthError::KeyNotYetValid);

    let (auth, token) = cert_auth_at(&cert, not_before - 86_400);
    assert_eq!(auth.verify(&token).unwrap_err(), AuthError::KeyNotYetValid);

    // At NotBefore itself the certificate is valid (Go: now.Before(NotBefore)).
    let (auth, token) = cert_auth_at(&cert, not_before);
    assert_eq!(auth.verify(&token).unwrap().user_id(), "system-user-1");
}

#[test]
fn x509_certificate_refused_after_not_after() {
    let dir = tempfile::tempdir().unwrap();
    let cert = certificate(dir.path());
    let (_, not_after) = common::openssl_validity(&cert);

    let (auth, token) = cert_auth_at(&cert, not_after + 1);
    assert_eq!(auth.verify(&token).unwrap_err(), AuthError::KeyExpired);

    let (auth, token) = cert_auth_at(&cert, not_after + 30 * 86_400);
    assert_eq!(auth.verify(&token).unwrap_err(), AuthError::KeyExpired);

    // At NotAfter itself the certificate is still valid (Go: now.After(NotAfter)).
    let (auth, token) = cert_auth_at(&cert, not_after);
    assert_eq!(auth.verify(&token).unwrap().user_id(), "system-user-1");
}

#[test]
fn x509_certificate_validity_is_checked_per_request() {
    // One SystemAuth, a clock that moves: the same key is fine, then expired.
    use std::sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    };
    let dir = tempfile::tempdir().unwrap();
    let cert = certificate(dir.path());
    let (not_before, not_after) = common::openssl_validity(&cert);
    let clock = Arc::new(AtomicU64::new(not_before + 60));
    let reader = clock.clone();
    let auth = SystemAuth::builder()
        .config_yaml(&common::config_with_path("system-user-1", &cert))
        .clock(move || common::at(reader.load(Ordering::SeqCst), 0))
        .build()
        .expect("certificate loads");

    let token = key().rs256(&claims_for("system-user-1", AUD, not_before + 60));
    assert!(auth.verify(&token).is_ok());

    let later = not_after + 120;
    clock.store(later, Ordering::SeqCst);
    let token = key().rs256(&claims_for("system-user-1", AUD, later));
    assert_eq!(auth.verify(&token).unwrap_err(), AuthError::KeyExpired);

    let earlier = not_before - 120;
    clock.store(earlier, Ordering::SeqCst);
    let token = key().rs256(&claims_for("system-user-1", AUD, earlier));
    assert_eq!(auth.verify(&token).unwrap_err(), AuthError::KeyNotYetValid);

    // The very same token, accepted a minute before NotAfter, is refused a second
    // after it (a token still within its exp and iat age, so only the
    // certificate's window can refuse it, even if the accepted token was cached).
    let issued = not_after - 60;
    clock.store(issued, Ordering::SeqCst);
    let token = key().rs256(&claims_for("system-user-1", AUD, issued));
    assert!(auth.verify(&token).is_ok());
    assert!(
        auth.verify(&token).is_ok(),
        "accepted again before NotAfter"
    );
    clock.store(not_after + 1, Ordering::SeqCst);
    assert_eq!(auth.verify(&token).unwrap_err(), AuthError::KeyExpired);
}

#[test]
fn x509_certificate_with_ec_key_refused_as_not_rsa() {
    let dir = tempfile::tempdir().unwrap();
    let ec = dir.path().join("ec.pem");
    openssl(&[
        "ecparam",
        "-genkey",
        "-name",
        "prime256v1",
        "-out",
        path_str(&ec),
    ]);
    let cert = dir.path().join("ec-cert.pem");
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        path_str(&ec),
        "-subj",
        "/CN=system-user-1",
        "-days",
        "2",
        "-out",
        path_str(&cert),
    ]);
    let (err, message) = refusal_for_path("system-user-1", &cert);
    assert!(
        matches!(key_error(&err), KeyError::NotRsa { .. }),
        "{err:?}"
    );
    assert!(message.contains("not RSA"), "{message}");
    assert!(message.contains("elliptic-curve"), "{message}");
    assert!(message.contains("openssl genrsa"), "{message}");
}

// ---------------------------------------------------------------------------------
// KeyData encodings
// ---------------------------------------------------------------------------------

#[test]
fn key_data_base64_on_one_line_verifies() {
    let encoded = STANDARD.encode(key().public_pem());
    let auth = SystemAuth::builder()
        .config_yaml(&config_with_key_data_line("inline-user", &encoded))
        .build()
        .expect("base64 KeyData loads");
    assert_accepts(&auth, "inline-user", key());
}

#[test]
fn key_data_base64_in_literal_block_over_several_lines_verifies() {
    let encoded = STANDARD.encode(key().public_pem());
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    assert!(lines.len() > 3);
    let block: String = lines.iter().map(|l| format!("        {l}\n")).collect();
    let config = format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  - block-user:\n      KeyData: |\n{block}"
    );
    let auth = SystemAuth::builder()
        .config_yaml(&config)
        .build()
        .expect("base64 KeyData in a literal block loads");
    assert_accepts(&auth, "block-user", key());
}

#[test]
fn key_data_base64_as_folded_plain_multiline_scalar_verifies() {
    // A plain scalar over several lines reaches the crate with spaces in it.
    let encoded = STANDARD.encode(key().public_pem());
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let value = lines.join("\n        ");
    let config = format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  - folded-user:\n      KeyData: {value}\n      Memberships:\n        - MemberType: System\n          Roles: [SYSTEM_OWNER]\n"
    );
    let auth = SystemAuth::builder()
        .config_yaml(&config)
        .build()
        .expect("a folded base64 KeyData loads");
    assert_accepts(&auth, "folded-user", key());
}

#[test]
fn key_data_base64_without_padding_verifies() {
    let encoded = STANDARD.encode(key().public_pem());
    assert!(
        encoded.ends_with('='),
        "the test needs a PEM text whose base64 is padded: {} bytes",
        key().public_pem().len()
    );
    let unpadded = encoded.trim_end_matches('=');
    let auth = SystemAuth::builder()
        .config_yaml(&config_with_key_data_line("unpadded-user", unpadded))
        .build()
        .expect("unpadded base64 KeyData loads");
    assert_accepts(&auth, "unpadded-user", key());
}

#[test]
fn key_data_raw_pem_in_literal_block_verifies() {
    let block: String = key()
        .public_pem()
        .lines()
        .map(|l| format!("        {l}\n"))
        .collect();
    let config = format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nSystemAPIUsers:\n  - pem-user:\n      KeyData: |\n{block}"
    );
    let auth = SystemAuth::builder()
        .config_yaml(&config)
        .build()
        .expect("raw PEM KeyData loads");
    assert_accepts(&auth, "pem-user", key());
}

#[test]
fn key_data_base64_of_a_certificate_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let cert = std::fs::read(certificate(dir.path())).unwrap();
    let auth = SystemAuth::builder()
        .config_yaml(&config_with_key_data_line(
            "cert-user",
            &STANDARD.encode(cert),
        ))
        .build()
        .expect("certificate in KeyData loads");
    assert_accepts(&auth, "cert-user", key());
}

// ---------------------------------------------------------------------------------
// Refusals at load
// ---------------------------------------------------------------------------------

#[test]
fn pkcs8_private_key_refused_with_pubout_advice() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        key()
            .private_pem()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    let path = write(dir.path(), "u.pem", key().private_pem());
    let (err, message) = refusal_for_path("system-user-1", &path);
    assert_eq!(key_error(&err), &KeyError::PrivateKey);
    assert!(message.contains("openssl rsa"), "{message}");
    assert!(message.contains("-pubout"), "{message}");
    assert!(message.contains("private key"), "{message}");
}

#[test]
fn pkcs1_private_key_refused_with_pubout_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("traditional.pem");
    openssl(&["genrsa", "-traditional", "-out", path_str(&path), "2048"]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let (err, message) = refusal_for_path("system-user-1", &path);
    assert_eq!(key_error(&err), &KeyError::PrivateKey);
    assert!(message.contains("openssl rsa"), "{message}");
    assert!(message.contains("-pubout"), "{message}");
}

#[test]
fn private_key_content_under_public_key_label_refused() {
    let dir = tempfile::tempdir().unwrap();
    // PKCS#8 content.
    let pkcs8 = pem_relabel(key().private_pem().as_bytes(), "PUBLIC KEY");
    let path = write(dir.path(), "pkcs8.pub", &pkcs8);
    let (err, message) = refusal_for_path("system-user-1", &path);
    assert_eq!(key_error(&err), &KeyError::PrivateKey, "{message}");
    assert!(message.contains("openssl rsa"), "{message}");
    assert!(message.contains("-pubout"), "{message}");

    // PKCS#1 private content, under both public labels.
    let traditional = openssl_text(&["rsa", "-traditional"], key().private_pem().as_bytes());
    assert!(traditional.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    for label in ["PUBLIC KEY", "RSA PUBLIC KEY"] {
        let path = write(
            dir.path(),
            "pkcs1.pub",
            pem_relabel(traditional.as_bytes(), label),
        );
        let (err, message) = refusal_for_path("system-user-1", &path);
        assert_eq!(key_error(&err), &KeyError::PrivateKey, "{label}: {message}");
        assert!(message.contains("-pubout"), "{message}");
    }
}

#[test]
fn private_key_as_key_data_refused_naming_key_data() {
    let config = config_with_key_data_line("inline-user", &STANDARD.encode(key().private_pem()));
    let err = SystemAuth::builder()
        .config_yaml(&config)
        .build()
        .expect_err("a private key in KeyData is refused");
    let message = err.to_string();
    assert_eq!(key_error(&err), &KeyError::PrivateKey);
    assert!(message.contains("`inline-user`"), "{message}");
    assert!(message.contains("KeyData"), "{message}");
    assert!(message.contains("openssl rsa"), "{message}");
    assert!(message.contains("-pubout"), "{message}");
    // The key material itself is never echoed.
    let body_line = key().private_pem().lines().nth(1).unwrap();
    assert!(!message.contains(body_line), "{message}");
}

#[test]
fn ec_public_key_refused_as_not_rsa() {
    let dir = tempfile::tempdir().unwrap();
    let private = openssl(&["ecparam", "-genkey", "-name", "prime256v1"]);
    let public = openssl_stdin(&["ec", "-pubout"], &private);
    assert!(public.starts_with(b"-----BEGIN PUBLIC KEY-----"));
    let path = write(dir.path(), "ec.pub", &public);
    let (err, message) = refusal_for_path("system-user-1", &path);
    assert!(
        matches!(key_error(&err), KeyError::NotRsa { .. }),
        "{err:?}"
    );
    assert!(message.contains("elliptic-curve"), "{message}");
    assert!(message.contains("not RSA"), "{message}");
    assert!(message.contains("openssl genrsa"), "{message}");
}

#[test]
fn ed25519_public_key_refused_as_not_rsa() {
    let dir = tempfile::tempdir().unwrap();
    let private = openssl(&["genpkey", "-algorithm", "ed25519"]);
    let public = openssl_stdin(&["pkey", "-pubout"], &private);
    let path = write(dir.path(), "ed.pub", &public);
    let (err, message) = refusal_for_path("system-user-1", &path);
    assert!(
        matches!(key_error(&err), KeyError::NotRsa { .. }),
        "{err:?}"
    );
    assert!(message.contains("Ed25519"), "{message}");
    assert!(message.contains("not RSA"), "{message}");
    assert!(message.contains("openssl genrsa"), "{message}");
}

#[test]
fn rsa_1024_key_refused_as_too_small() {
    let dir = tempfile::tempdir().unwrap();
    let private = openssl(&["genrsa", "1024"]);
    let public = openssl_stdin(&["rsa", "-pubout"], &private);
    let path = write(dir.path(), "small.pub", &public);
    let (err, message) = refusal_for_path("system-user-1", &path);
    assert_eq!(key_error(&err), &KeyError::TooSmall { bits: 1024 });
    assert!(message.contains("1024"), "{message}");
    assert!(message.contains("2048"), "{message}");
    assert!(message.contains("openssl genrsa"), "{message}");

    // The same key as PKCS#1 is refused the same way.
    let pkcs1 = openssl_stdin(&["rsa", "-RSAPublicKey_out"], &private);
    let path = write(dir.path(), "small-pkcs1.pub", &pkcs1);
    let (err, _) = refusal_for_path("system-user-1", &path);
    assert_eq!(key_error(&err), &KeyError::TooSmall { bits: 1024 });
}

#[test]
fn rsa_key_over_8192_bits_refused_as_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let pkcs1 = fake_pkcs1_der(8200);
    // The hand-made DER is what it claims to be: openssl reads an 8200-bit modulus.
    let text = pem::encode(&pem::Pem::new("RSA PUBLIC KEY", pkcs1.clone()));
    let described = openssl_text(
        &["rsa", "-RSAPublicKey_in", "-noout", "-text"],
        text.as_bytes(),
    );
    assert!(described.contains("8200 bit"), "{described}");

    let path = write(dir.path(), "huge-pkcs1.pub", &text);
    let (err, message) = refusal_for_path("system-user-1", &path);
    assert_eq!(key_error(&err), &KeyError::TooLarge { bits: 8200 });
    assert!(message.contains("8200"), "{message}");
    assert!(message.contains("8192"), "{message}");

    let pkix = pem::encode(&pem::Pem::new("PUBLIC KEY", spki_der(&pkcs1)));
    let path = write(dir.path(), "huge.pub", &pkix);
    let (err, _) = refusal_for_path("system-user-1", &path);
    assert_eq!(key_error(&err), &KeyError::TooLarge { bits: 8200 });
}

#[test]
fn two_pem_blocks_in_one_file_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{}{}", key().public_pem(), stranger().public_pem());
    let path = write(dir.path(), "two.pub", text);
    let (err, message) = refusal_for_path("system-user-1", &path);
    assert_eq!(key_error(&err), &KeyError::MultiplePemBlocks { count: 2 });
    assert!(message.contains("2 PEM blocks"), "{message}");
    assert!(message.contains("exactly one"), "{message}");

    // A certificate with its key beside it is two blocks too.
    let cert = std::fs::read_to_string(certificate(dir.path())).unwrap();
    let path = write(
        dir.path(),
        "bundle.pem",
        format!("{cert}{}", key().public_pem()),
    );
    let (err, _) = refusal_for_path("system-user-1", &path);
    assert_eq!(key_error(&err), &KeyError::MultiplePemBlocks { count: 2 });
}

#[test]
fn empty_and_whitespace_only_key_files_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in [("empty.pub", ""), ("blank.pub", " \n\t\r\n  \n")] {
        let path = write(dir.path(), name, contents);
        let (err, message) = refusal_for_path("system-user-1", &path);
        assert_eq!(key_error(&err), &KeyError::Empty, "{name}");
        assert!(message.contains("empty"), "{message}");
    }
}

#[test]
fn garbage_key_file_refused_naming_the_expected_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "garbage.pub",
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC user@host\n",
    );
    let (err, message) = refusal_for_path("system-user-1", &path);
    assert_eq!(key_error(&err), &KeyError::NoPemBlock);
    assert!(message.contains("BEGIN PUBLIC KEY"), "{message}");
}

#[test]
fn damaged_base64_inside_pem_block_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = key().public_pem().lines().map(str::to_owned).collect();
    // Damage the middle of the body with characters outside base64.
    let middle = lines.len() / 2;
    lines[middle].replace_range(10..14, "!*?#");
    let path = write(dir.path(), "damaged.pub", lines.join("\n") + "\n");
    let (err, message) = refusal_for_path("system-user-1", &path);
    assert!(
        matches!(key_error(&err), KeyError::BadPem(_)),
        "{err:?}: {message}"
    );
    assert!(message.contains("damaged"), "{message}");

    // A truncated body (valid characters, cut short) is refused as well.
    let body: String = key().public_pem().lines().nth(1).unwrap().to_owned();
    let truncated = format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n");
    let path = write(dir.path(), "truncated.pub", truncated);
    let (err, message) = refusal_for_path("system-user-1", &path);
    assert!(
        matches!(key_error(&err), KeyError::BadDer { .. }),
        "{err:?}: {message}"
    );
}

#[test]
fn unsupported_label_refused_naming_the_label() {
    let dir = tempfile::tempdir().unwrap();
    let csr = openssl(&[
        "req",
        "-new",
        "-key",
        path_str(&key().private_path()),
        "-subj",
        "/CN=system-user-1",
    ]);
    assert!(csr.starts_with(b"-----BEGIN CERTIFICATE REQUEST-----"));
    let path = write(dir.path(), "u.csr", &csr);
    let (err, message) = refusal_for_path("system-user-1", &path);
    assert_eq!(
        key_error(&err),
        &KeyError::UnsupportedLabel("CERTIFICATE REQUEST".to_owned())
    );
    assert!(message.contains("CERTIFICATE REQUEST"), "{message}");
    assert!(message.contains("PUBLIC KEY"), "{message}");
}

#[test]
fn key_data_that_is_not_base64_refused_with_line() {
    let err = SystemAuth::builder()
        .config_yaml(&config_with_key_data_line(
            "inline-user",
            "this is not base64 (nor PEM)!",
        ))
        .build()
        .expect_err("KeyData that is not base64 is refused");
    let message = err.to_string();
    assert!(matches!(err, ConfigError::Yaml { .. }), "{err:?}");
    assert!(message.contains("`inline-user`"), "{message}");
    assert!(message.contains("KeyData"), "{message}");
    assert!(message.contains("base64"), "{message}");
    assert!(message.contains("line"), "{message}");
}

#[test]
fn key_data_base64_of_non_pem_refused() {
    let err = SystemAuth::builder()
        .config_yaml(&config_with_key_data_line(
            "inline-user",
            &STANDARD.encode("just some text, no key here"),
        ))
        .build()
        .expect_err("base64 of text without a PEM block is refused");
    let message = err.to_string();
    assert!(message.contains("`inline-user`"), "{message}");
    assert!(message.contains("KeyData"), "{message}");
    assert!(message.contains("no PEM block"), "{message}");
}

#[test]
fn one_bad_key_refuses_the_whole_config_naming_that_user() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.pem", key().private_pem());
    let config = format!(
        "SystemAPIUsers:\n  - good-user:\n      Path: {}\n  - bad-user:\n      Path: {}\n",
        key().public_path().display(),
        bad.display()
    );
    let err = SystemAuth::builder()
        .config_yaml(&config)
        .build()
        .expect_err("one refused key fails the build");
    let message = err.to_string();
    assert!(message.contains("`bad-user`"), "{message}");
    assert!(!message.contains("good-user"), "{message}");
    assert!(message.contains(path_str(&bad)), "{message}");
}

// ---------------------------------------------------------------------------------
// PublicKey::from_pem and the fingerprint
// ---------------------------------------------------------------------------------

#[test]
fn fingerprint_is_sha256_of_spki_der_as_openssl_computes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "k.pub", key().public_pem());
    let spki = openssl(&["pkey", "-pubin", "-in", path_str(&path), "-outform", "DER"]);
    assert_eq!(spki, key().public_der(), "openssl writes the same SPKI DER");
    let dgst = String::from_utf8(openssl_stdin(&["dgst", "-sha256"], &spki)).unwrap();
    let expected = dgst
        .trim()
        .rsplit(' ')
        .next()
        .expect("openssl dgst prints the hex last")
        .to_owned();
    assert_eq!(expected.len(), 64, "{dgst}");
    assert_eq!(expected, sha256_hex(&spki));

    let parsed = PublicKey::from_pem(key().public_pem().as_bytes()).expect("loads");
    let pkcs1 = openssl_stdin(
        &["rsa", "-pubin", "-RSAPublicKey_out", "-outform", "DER"],
        key().public_pem().as_bytes(),
    );
    assert_eq!(
        parsed.fingerprint_hex(),
        expected,
        "the fingerprint must be SHA-256 of the SPKI DER (SHA-256 of the PKCS#1 DER is {})",
        sha256_hex(&pkcs1)
    );
    let bytes_hex: String = parsed
        .fingerprint()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(bytes_hex, parsed.fingerprint_hex());
    assert_eq!(parsed.bits(), 2048);
    assert_eq!(parsed.modulus_len(), 256);
}

#[test]
fn fingerprint_is_the_same_whatever_format_the_key_came_in() {
    let dir = tempfile::tempdir().unwrap();
    let pkix = key().public_pem().to_owned();
    let pkcs1 = pkcs1_public_pem();
    let pkix_as_rsa = pem_relabel(pkix.as_bytes(), "RSA PUBLIC KEY");
    let pkcs1_as_public = pem_relabel(pkcs1.as_bytes(), "PUBLIC KEY");
    let cert = std::fs::read_to_string(certificate(dir.path())).unwrap();

    let reference = PublicKey::from_pem(pkix.as_bytes()).unwrap().fingerprint();
    for (what, text) in [
        ("PKCS#1", &pkcs1),
        ("PKIX under RSA PUBLIC KEY", &pkix_as_rsa),
        ("PKCS#1 under PUBLIC KEY", &pkcs1_as_public),
        ("certificate", &cert),
    ] {
        let parsed = PublicKey::from_pem(text.as_bytes())
            .unwrap_or_else(|e| panic!("{what} should load: {e}"));
        assert_eq!(parsed.fingerprint(), reference, "{what}");
        assert_eq!(parsed.bits(), 2048, "{what}");
    }
    // Another key has another fingerprint.
    let other = PublicKey::from_pem(stranger().public_pem().as_bytes()).unwrap();
    assert_ne!(other.fingerprint(), reference);
}

#[test]
fn from_pem_refusals_match_build_refusals() {
    assert_eq!(PublicKey::from_pem(b"").unwrap_err(), KeyError::Empty);
    assert_eq!(PublicKey::from_pem(b" \n ").unwrap_err(), KeyError::Empty);
    assert_eq!(
        PublicKey::from_pem(key().private_pem().as_bytes()).unwrap_err(),
        KeyError::PrivateKey
    );
    assert_eq!(
        PublicKey::from_pem(b"hello").unwrap_err(),
        KeyError::NoPemBlock
    );
    let debug = format!(
        "{:?}",
        PublicKey::from_pem(key().public_pem().as_bytes()).unwrap()
    );
    // The Debug output shows the fingerprint, never key material.
    let body_line = key().public_pem().lines().nth(1).unwrap();
    assert!(!debug.contains(body_line), "{debug}");
    assert!(debug.contains("2048"), "{debug}");
}

#[test]
fn a_key_path_that_is_no_regular_file_or_too_large_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.pub");
    std::fs::write(&big, vec![b'A'; 100 * 1024]).unwrap();
    for (path, reason) in [
        (Path::new("/dev/zero").to_path_buf(), "not a regular file"),
        (dir.path().to_path_buf(), "not a regular file"),
        (big, "larger than 65536 bytes"),
    ] {
        let yaml = format!(
            "SystemAPIUsers:\n  - system-user-1:\n      Path: {}\n",
            path.display()
        );
        let error = SystemAuth::builder()
            .config_yaml(&yaml)
            .watch(false)
            .build()
            .expect_err("refused");
        let text = error.to_string();
        assert!(
            text.contains("system-user-1") && text.contains(reason),
            "{text}"
        );
    }
}
