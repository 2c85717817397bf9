//! Fuzz target: config text, through `Config::from_yaml` and
//! `SystemAuth::builder().config_yaml(..).watch(false).build()`.
//!
//! The input (when UTF-8) is split at NUL bytes: the first part is the YAML text;
//! the next ones, when present, are the values of `ZITADEL_SYSTEMAPIUSERS`,
//! `ZITADEL_EXTERNALDOMAIN`, `ZITADEL_EXTERNALPORT` and `ZITADEL_EXTERNALSECURE`,
//! given to the builder with `env_overrides_from`.
//!
//! Key files for `Path` are written at start into
//! `$TMPDIR/zitadel-system-auth-fuzz/` (`system-user-1.pub` and
//! `system-user-2.pub` good, `private.pem`, `garbage.pub`, `empty.pub` and
//! `two.pub` bad); the seeds name them.
//!
//! Besides "no panic": the builder and the parser agree (a config that does not
//! parse never builds; a built verifier has exactly the parsed users and the
//! parsed audience), and reloading an unchanged config changes nothing.

#![no_main]

use std::{path::PathBuf, sync::LazyLock};

use libfuzzer_sys::fuzz_target;
use zitadel_system_auth::{Config, SystemAuth, testing::TestKey};

const ENV: [&str; 4] = [
    "ZITADEL_SYSTEMAPIUSERS",
    "ZITADEL_EXTERNALDOMAIN",
    "ZITADEL_EXTERNALPORT",
    "ZITADEL_EXTERNALSECURE",
];

static KEY_FILES: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join("zitadel-system-auth-fuzz");
    std::fs::create_dir_all(&dir).expect("a folder for the key files");
    let keys = [TestKey::generate(), TestKey::generate()];
    let files = [
        ("system-user-1.pub", keys[0].public_pem().to_owned()),
        ("system-user-2.pub", keys[1].public_pem().to_owned()),
        ("private.pem", keys[0].private_pem().to_owned()),
        ("garbage.pub", "not a key\n".to_owned()),
        ("empty.pub", String::new()),
        (
            "two.pub",
            format!("{}{}", keys[0].public_pem(), keys[1].public_pem()),
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("a key file");
    }
    dir
});

fuzz_target!(|data: &[u8]| {
    LazyLock::force(&KEY_FILES);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let yaml = parts.next().unwrap_or_default();
    let env: Vec<(&str, &str)> = ENV.iter().copied().zip(parts).collect();

    let parsed = Config::from_yaml(yaml);
    match &parsed {
        Ok(config) => {
            let _ = (config.audience(), config.warnings());
            for user in config.users() {
                let _ = (user.id(), user.key(), user.memberships());
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
    // What the builder must have loaded: the parsed config with the variables on top.
    let expected = parsed.and_then(|mut config| {
        config.apply_env_from(|name| {
            env.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })?;
        Ok(config)
    });

    let mut builder = SystemAuth::builder().config_yaml(yaml).watch(false);
    if !env.is_empty() {
        builder = builder.env_overrides_from(env.iter().copied());
    }
    let built = builder.build();
    match (&expected, &built) {
        (Err(_), Ok(_)) => panic!("built from a config that does not load"),
        (Ok(config), Ok(auth)) => {
            let mut ids: Vec<String> = config.users().iter().map(|u| u.id().to_owned()).collect();
            ids.sort();
            assert_eq!(auth.user_ids(), ids);
            assert_eq!(auth.audiences().first().map(String::as_str), Some(config.audience().as_str()));
            assert!(auth.verify("a.b.c").is_err());
            let _ = auth.status();
            let report = auth.reload().expect("an unchanged config reloads");
            assert!(!report.changed, "reloading an unchanged config changed it");
            assert!(report.problems.is_empty(), "{:?}", report.problems);
        }
        (_, Err(error)) => {
            let _ = error.to_string();
        }
    }
});
