//! Hot reload with real files in temporary folders: every kind of file
//! change is picked up (three times in a row), bad changes keep the last good keys,
//! removed users and replaced keys are refused at once, bursts are one reload, the
//! crate's own reads never reload, `reload()` and `status()`, certificates expiring
//! while the service runs, and a rotation stress test with two verifying threads.
//!
//! Every test waits on the registry generation (or on the status of the last
//! reload) with a generous timeout; a bare sleep is only ever used before a
//! negative check ("nothing more happened"), after the positive wait.

use std::{
    collections::HashMap,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use zitadel_system_auth::{
    AuthError, FolderWatch, ReloadOutcome, ReloadReport, Status, SystemAuth, WatchMode,
};

use crate::common::{self, AUD, KeyExt as _, TestKey, openssl, path_str};

/// How long any positive wait may take before the test fails.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a negative check ("nothing more happens") watches.
const QUIET: Duration = Duration::from_millis(400);

// ---------------------------------------------------------------------------
// Keys, tokens, fingerprints
// ---------------------------------------------------------------------------

/// A pool of RSA keys shared by the reload tests (generated on first use;
/// each test has its own folders, so sharing keys is harmless).
fn pool(i: usize) -> &'static TestKey {
    const N: usize = 16;
    static POOL: [OnceLock<TestKey>; N] = [const { OnceLock::new() }; N];
    POOL[i].get_or_init(TestKey::generate)
}

/// Hex SHA-256 of the key's SubjectPublicKeyInfo, computed here independently.
fn fingerprint(key: &TestKey) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &key.public_der())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fresh RS256 token for `user`, signed by `key`.
fn token(key: &TestKey, user: &str) -> String {
    key.rs256(&common::claims_for(user, AUD, common::now()))
}

/// The base64 lines of a PEM text: what must never appear in an error or a log.
fn material_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_owned)
        .collect()
}

/// The fixed hint of `KeyError::NoPemBlock`; it names PEM labels, not key material.
const NO_PEM_HINT: &str = "(expected -----BEGIN PUBLIC KEY----- or -----BEGIN CERTIFICATE-----)";

/// Asserts that `text` holds no key material: no PEM armour (other than the fixed
/// hint text) and no base64 line of any key written in the test.
fn assert_no_key_material(text: &str, pems: &[&str]) {
    let stripped = text.replace(NO_PEM_HINT, "");
    assert!(
        !stripped.contains("BEGIN") && !stripped.contains("-----"),
        "PEM text in {text:?}"
    );
    for pem in pems {
        for line in material_lines(pem) {
            assert!(!text.contains(&line), "key material {line:?} in {text:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

static TMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// An editor's save: a temp file in the same folder, renamed over the target.
fn save_by_rename(path: &Path, contents: impl AsRef<[u8]>) {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().expect("file name").to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.swp{n}"));
    fs::write(&tmp, contents).expect("write temp file");
    fs::rename(&tmp, path).expect("rename over");
}

/// `mv` from another folder on the same file system.
fn move_over(staging: &Path, path: &Path, contents: impl AsRef<[u8]>) {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    fs::create_dir_all(staging).expect("staging folder");
    let src = staging.join(format!("new-{n}.pub"));
    fs::write(&src, contents).expect("write staged file");
    let status = Command::new("mv")
        .arg("-f")
        .arg(&src)
        .arg(path)
        .status()
        .expect("run mv");
    assert!(status.success(), "mv failed");
}

/// `cp` over the existing file (same inode, truncated and rewritten).
fn copy_over(src: &Path, path: &Path) {
    fs::copy(src, path).expect("copy over");
}

/// Truncates the file, then writes it in two chunks with a flush between.
fn truncate_then_write(path: &Path, contents: &[u8]) {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .expect("open for truncate");
    let (first, second) = contents.split_at(contents.len() / 2);
    file.write_all(first).expect("first chunk");
    file.flush().expect("flush");
    file.write_all(second).expect("second chunk");
    file.flush().expect("flush");
}

/// Config text with the given users and key paths (ZITADEL's documented form).
fn config_text(users: &[(&str, &Path)]) -> String {
    let mut text = String::from(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nExternalSecure: true\nSystemAPIUsers:\n",
    );
    for (user, path) in users {
        text.push_str(&format!("  - {user}:\n      Path: {}\n", path.display()));
    }
    text
}

/// Writes a config file the way an editor saves it.
fn write_config(config: &Path, users: &[(&str, &Path)]) {
    save_by_rename(config, config_text(users));
}

// ---------------------------------------------------------------------------
// Kubernetes Secret / ConfigMap volumes
// ---------------------------------------------------------------------------

/// A folder laid out as the kubelet lays out a Secret or ConfigMap volume:
/// `..<timestamp>/<file>`, `..data -> ..<timestamp>`, `<file> -> ..data/<file>`.
struct K8sVolume {
    dir: PathBuf,
    current: String,
    serial: usize,
}

impl K8sVolume {
    fn new(dir: &Path, files: &[(&str, &[u8])]) -> K8sVolume {
        fs::create_dir_all(dir).expect("volume folder");
        let mut volume = K8sVolume {
            dir: dir.to_owned(),
            current: String::new(),
            serial: 0,
        };
        let first = volume.write_timestamped(files);
        std::os::unix::fs::symlink(&first, dir.join("..data")).expect("..data link");
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name))
                .expect("file link");
        }
        volume.current = first;
        volume
    }

    fn write_timestamped(&mut self, files: &[(&str, &[u8])]) -> String {
        self.serial += 1;
        let name = format!("..2026_01_01_00_00_00.{}", self.serial);
        let folder = self.dir.join(&name);
        fs::create_dir(&folder).expect("timestamped folder");
        for (file, contents) in files {
            fs::write(folder.join(file), contents).expect("volume file");
        }
        name
    }

    /// The kubelet's atomic update: a new timestamped folder, `..data_tmp` pointing
    /// at it, renamed over `..data`, and the old folder deleted. No event names the
    /// user-visible file.
    fn update(&mut self, files: &[(&str, &[u8])]) {
        let next = self.write_timestamped(files);
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&next, &tmp).expect("..data_tmp link");
        fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
        fs::remove_dir_all(self.dir.join(&self.current)).expect("remove old folder");
        self.current = next;
    }
}

// ---------------------------------------------------------------------------
// Waiting and asserting
// ---------------------------------------------------------------------------

/// Polls `cond` every few milliseconds; panics with the status after `TIMEOUT`.
fn wait_for(auth: &SystemAuth, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > TIMEOUT {
            panic!(
                "timed out after {TIMEOUT:?} waiting for {what}; status: {:#?}",
                auth.status()
            );
        }
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// Waits until the generation is `generation`, and checks it did not overshoot.
fn wait_generation(auth: &SystemAuth, generation: u64) {
    wait_for(auth, &format!("generation {generation}"), || {
        auth.generation() >= generation
    });
    assert_eq!(
        auth.generation(),
        generation,
        "the generation overshot: {:#?}",
        auth.status()
    );
}

/// Waits for a reload after `before` (its `last_reload` differs) whose status
/// satisfies `cond`; returns that status.
fn wait_reload(
    auth: &SystemAuth,
    before: &Status,
    what: &str,
    cond: impl Fn(&Status) -> bool,
) -> Status {
    let mut last = None;
    wait_for(auth, what, || {
        let status = auth.status();
        let done = status.last_reload != before.last_reload && cond(&status);
        last = Some(status);
        done
    });
    last.expect("a status")
}

/// Asserts that nothing reloads for a while: neither the generation nor the time
/// of the last reload changes. Only used after a positive wait.
fn assert_quiet(auth: &SystemAuth, what: &str) {
    let before = auth.status();
    std::thread::sleep(QUIET);
    let after = auth.status();
    assert_eq!(
        (after.generation, after.last_reload),
        (before.generation, before.last_reload),
        "{what}: something reloaded; before {before:#?}, after {after:#?}"
    );
}

fn assert_accepts(auth: &SystemAuth, key: &TestKey, user: &str) {
    let token = token(key, user);
    for round in 0..2 {
        // The second round is answered from the cache (when it is on).
        match auth.verify(&token) {
            Ok(verified) => assert_eq!(verified.user_id(), user),
            Err(error) => panic!(
                "token of {user} refused (round {round}): {error:?}; status {:#?}",
                auth.status()
            ),
        }
    }
}

fn assert_refuses(auth: &SystemAuth, key: &TestKey, user: &str, expected: AuthError) {
    let token = token(key, user);
    for _ in 0..2 {
        match auth.verify(&token) {
            Ok(_) => panic!(
                "token of {user} accepted, expected {expected:?}; status {:#?}",
                auth.status()
            ),
            Err(error) => assert_eq!(error, expected, "refusal of {user}'s token"),
        }
    }
}

fn user_fingerprint(status: &Status, user: &str) -> String {
    status
        .users
        .iter()
        .find(|u| u.user_id == user)
        .unwrap_or_else(|| panic!("{user} not in status {status:#?}"))
        .fingerprint
        .clone()
}

fn assert_fingerprint(auth: &SystemAuth, user: &str, key: &TestKey) {
    let status = auth.status();
    assert_eq!(
        user_fingerprint(&status, user),
        fingerprint(key),
        "fingerprint of {user}; status {status:#?}"
    );
}

/// After `user`'s key went from `old` to `new`: the new key verifies, the old
/// one is refused (also a token that was cached under the old key), and the status
/// shows the new fingerprint.
fn assert_rotated(auth: &SystemAuth, user: &str, old: &TestKey, new: &TestKey, cached: &str) {
    assert_eq!(
        auth.verify(cached).map(|u| u.user_id().to_owned()),
        Err(AuthError::InvalidSignature),
        "a token cached under the old key must be refused"
    );
    assert_accepts(auth, new, user);
    assert_refuses(auth, old, user, AuthError::InvalidSignature);
    assert_fingerprint(auth, user, new);
}

fn build(config: &Path) -> SystemAuth {
    SystemAuth::builder()
        .config_file(config)
        .build()
        .expect("build")
}

/// A temp folder with `config.yaml` naming user `u` with its key at
/// `keys/u.pub` (initially `pool(0)`), and a watching `SystemAuth` on it.
struct Single {
    dir: tempfile::TempDir,
    config: PathBuf,
    key_path: PathBuf,
    auth: SystemAuth,
}

impl Single {
    fn new() -> Single {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = dir.path().join("keys");
        fs::create_dir(&keys).expect("keys folder");
        let key_path = keys.join("u.pub");
        fs::write(&key_path, pool(0).public_pem()).expect("key");
        let config = dir.path().join("config.yaml");
        fs::write(&config, config_text(&[("u", &key_path)])).expect("config");
        let auth = build(&config);
        assert_eq!(auth.generation(), 1);
        assert_eq!(auth.status().watching, WatchMode::Events);
        assert_accepts(&auth, pool(0), "u");
        Single {
            dir,
            config,
            key_path,
            auth,
        }
    }
}

// ---------------------------------------------------------------------------
// Every kind of change, three times in a row
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Change {
    SaveByRename,
    MoveOver,
    CopyOver,
    TruncateThenWrite,
    /// Delete the key file, then write it again; with `wait`, the missing file is
    /// seen by a reload in between.
    DeleteRecreate {
        wait: bool,
    },
    /// Remove the key's folder, then create it again with the new key.
    FolderRecreate {
        wait: bool,
    },
}

fn rotate_three_times(change: Change) {
    let s = Single::new();
    for round in 1..=3 {
        let (old, new) = (pool(round - 1), pool(round));
        let cached = token(old, "u");
        s.auth
            .verify(&cached)
            .expect("old key verifies before the change");
        let before = s.auth.status();
        match change {
            Change::SaveByRename => save_by_rename(&s.key_path, new.public_pem()),
            Change::MoveOver => {
                move_over(&s.dir.path().join("staging"), &s.key_path, new.public_pem())
            }
            Change::CopyOver => copy_over(&new.public_path(), &s.key_path),
            Change::TruncateThenWrite => {
                truncate_then_write(&s.key_path, new.public_pem().as_bytes())
            }
            Change::DeleteRecreate { wait } => {
                fs::remove_file(&s.key_path).expect("delete");
                if wait {
                    wait_missing(&s.auth, &before, &s.key_path);
                    assert_accepts(&s.auth, old, "u");
                }
                fs::write(&s.key_path, new.public_pem()).expect("recreate");
            }
            Change::FolderRecreate { wait } => {
                let keys = s.key_path.parent().expect("keys folder");
                fs::remove_dir_all(keys).expect("remove folder");
                if wait {
                    wait_missing(&s.auth, &before, &s.key_path);
                    assert_accepts(&s.auth, old, "u");
                }
                fs::create_dir(keys).expect("recreate folder");
                fs::write(&s.key_path, new.public_pem()).expect("recreate key");
            }
        }
        wait_generation(&s.auth, 1 + round as u64);
        assert_rotated(&s.auth, "u", old, new, &cached);
        let status = s.auth.status();
        // A recreated folder is read once more after its new watch is armed, which
        // finds nothing new (Unchanged).
        assert!(
            matches!(
                status.last_outcome,
                ReloadOutcome::Changed | ReloadOutcome::Unchanged
            ),
            "{status:#?}"
        );
        assert_eq!(status.last_error, None);
    }
}

/// Waits for the reload that finds `path` missing.
fn wait_missing(auth: &SystemAuth, before: &Status, path: &Path) {
    let shown = path.display().to_string();
    let status = wait_reload(auth, before, "a reload that finds the key missing", |s| {
        s.last_error.as_ref().is_some_and(|e| e.contains(&shown))
    });
    assert_eq!(status.last_outcome, ReloadOutcome::Partial, "{status:#?}");
    assert_eq!(status.generation, before.generation);
}

#[test]
fn save_by_rename_is_picked_up_three_times() {
    rotate_three_times(Change::SaveByRename);
}

#[test]
fn mv_over_the_key_is_picked_up_three_times() {
    rotate_three_times(Change::MoveOver);
}

#[test]
fn cp_over_the_key_is_picked_up_three_times() {
    rotate_three_times(Change::CopyOver);
}

#[test]
fn truncate_then_write_is_picked_up_three_times() {
    rotate_three_times(Change::TruncateThenWrite);
}

#[test]
fn delete_then_recreate_is_picked_up_three_times() {
    rotate_three_times(Change::DeleteRecreate { wait: true });
}

#[test]
fn quick_delete_then_recreate_is_picked_up_three_times() {
    rotate_three_times(Change::DeleteRecreate { wait: false });
}

#[test]
fn folder_removed_then_recreated_is_picked_up_three_times() {
    rotate_three_times(Change::FolderRecreate { wait: true });
}

#[test]
fn folder_quickly_removed_and_recreated_is_picked_up_three_times() {
    rotate_three_times(Change::FolderRecreate { wait: false });
}

#[test]
fn kubernetes_secret_volume_update_is_picked_up_three_times() {
    let dir = tempfile::tempdir().expect("temp dir");
    let volume_dir = dir.path().join("secret");
    let mut volume = K8sVolume::new(&volume_dir, &[("key.pub", pool(0).public_pem().as_bytes())]);
    let config = dir.path().join("config.yaml");
    fs::write(&config, config_text(&[("u", &volume_dir.join("key.pub"))])).expect("config");
    let auth = build(&config);
    assert_accepts(&auth, pool(0), "u");
    for round in 1..=3 {
        let (old, new) = (pool(round - 1), pool(round));
        let cached = token(old, "u");
        auth.verify(&cached).expect("cached");
        volume.update(&[("key.pub", new.public_pem().as_bytes())]);
        wait_generation(&auth, 1 + round as u64);
        assert_rotated(&auth, "u", old, new, &cached);
    }
}

#[test]
fn kubernetes_configmap_config_update_is_picked_up_three_times() {
    // The config file itself comes from a ConfigMap volume; each update points the
    // user at another key file.
    let dir = tempfile::tempdir().expect("temp dir");
    let keys: Vec<PathBuf> = (0..=3)
        .map(|i| {
            let path = dir.path().join(format!("k{i}.pub"));
            fs::write(&path, pool(i).public_pem()).expect("key");
            path
        })
        .collect();
    let volume_dir = dir.path().join("configmap");
    let text = |i: usize| config_text(&[("u", &keys[i])]);
    let mut volume = K8sVolume::new(&volume_dir, &[("config.yaml", text(0).as_bytes())]);
    let auth = build(&volume_dir.join("config.yaml"));
    assert_accepts(&auth, pool(0), "u");
    for round in 1..=3 {
        let (old, new) = (pool(round - 1), pool(round));
        let cached = token(old, "u");
        auth.verify(&cached).expect("cached");
        volume.update(&[("config.yaml", text(round).as_bytes())]);
        wait_generation(&auth, 1 + round as u64);
        assert_rotated(&auth, "u", old, new, &cached);
    }
}

#[test]
fn config_adding_users_is_picked_up_and_their_folders_are_watched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path_of = |i: usize| dir.path().join(format!("k{i}")).join("key.pub");
    let write_key = |i: usize, key: &TestKey| {
        fs::create_dir_all(path_of(i).parent().expect("folder")).expect("folder");
        fs::write(path_of(i), key.public_pem()).expect("key");
    };
    write_key(0, pool(0));
    let config = dir.path().join("config.yaml");
    fs::write(&config, config_text(&[("u0", &path_of(0))])).expect("config");
    let auth = build(&config);
    let names = ["u0", "u1", "u2", "u3"];
    let paths: Vec<PathBuf> = (0..4).map(path_of).collect();
    for i in 1..=3 {
        // The new user's key lives in a folder nobody watched so far.
        write_key(i, pool(i));
        assert_refuses(&auth, pool(i), names[i], AuthError::UnknownUser);
        let users: Vec<(&str, &Path)> = (0..=i).map(|j| (names[j], paths[j].as_path())).collect();
        write_config(&config, &users);
        wait_generation(&auth, 1 + i as u64);
        for (j, name) in names.iter().enumerate().take(i + 1) {
            assert_accepts(&auth, pool(j), name);
            assert_fingerprint(&auth, name, pool(j));
        }
        assert_eq!(auth.status().users.len(), i + 1);
    }
    // The set of watched folders followed the config: rotating an added user's key
    // in its own folder is picked up.
    for i in 1..=3 {
        let (old, new) = (pool(i), pool(i + 4));
        let cached = token(old, names[i]);
        auth.verify(&cached).expect("cached");
        save_by_rename(&paths[i], new.public_pem());
        wait_generation(&auth, 4 + i as u64);
        assert_rotated(&auth, names[i], old, new, &cached);
        assert_accepts(&auth, pool(0), "u0");
    }
}

#[test]
fn config_removing_users_is_picked_up_three_times() {
    let dir = tempfile::tempdir().expect("temp dir");
    let names = ["u0", "u1", "u2", "u3"];
    let paths: Vec<PathBuf> = (0..4)
        .map(|i| {
            let path = dir.path().join(format!("u{i}.pub"));
            fs::write(&path, pool(i).public_pem()).expect("key");
            path
        })
        .collect();
    let config = dir.path().join("config.yaml");
    let users = |n: usize| -> Vec<(&str, &Path)> {
        (0..n).map(|j| (names[j], paths[j].as_path())).collect()
    };
    fs::write(&config, config_text(&users(4))).expect("config");
    let auth = build(&config);
    for (round, removed) in [3, 2, 1].into_iter().enumerate() {
        let cached = token(pool(removed), names[removed]);
        auth.verify(&cached).expect("the user is there before");
        write_config(&config, &users(removed));
        wait_generation(&auth, 2 + round as u64);
        // Refused at once, also the token that was cached.
        assert_eq!(
            auth.verify(&cached).map(|u| u.user_id().to_owned()),
            Err(AuthError::UnknownUser)
        );
        assert_refuses(&auth, pool(removed), names[removed], AuthError::UnknownUser);
        for (j, name) in names.iter().enumerate().take(removed) {
            assert_accepts(&auth, pool(j), name);
        }
        let status = auth.status();
        assert_eq!(
            status
                .users
                .iter()
                .map(|u| u.user_id.as_str())
                .collect::<Vec<_>>(),
            names[..removed].to_vec()
        );
    }
}

#[test]
fn config_pointing_a_user_at_another_file_follows_the_new_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path_of = |name: &str| dir.path().join(name).join("key.pub");
    let folders = ["a", "b", "c", "d"];
    for (i, folder) in folders.iter().enumerate() {
        fs::create_dir(dir.path().join(folder)).expect("folder");
        fs::write(path_of(folder), pool(i).public_pem()).expect("key");
    }
    let config = dir.path().join("config.yaml");
    fs::write(&config, config_text(&[("u", &path_of("a"))])).expect("config");
    let auth = build(&config);
    let mut generation = 1;
    for round in 1..=3 {
        let (old, new) = (pool(round - 1), pool(round));
        let (old_path, new_path) = (path_of(folders[round - 1]), path_of(folders[round]));
        let cached = token(old, "u");
        auth.verify(&cached).expect("cached");
        write_config(&config, &[("u", &new_path)]);
        generation += 1;
        wait_generation(&auth, generation);
        assert_rotated(&auth, "u", old, new, &cached);

        // The old file no longer matters.
        let stray = pool(8 + round);
        save_by_rename(&old_path, stray.public_pem());
        // Whether or not the old folder is still read, nothing may change.
        let until = Instant::now() + QUIET;
        while Instant::now() < until {
            assert_eq!(auth.generation(), generation, "{:#?}", auth.status());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_refuses(&auth, stray, "u", AuthError::InvalidSignature);
        assert_accepts(&auth, new, "u");

        // The new file does.
        let rotated = pool(4 + round);
        let cached = token(new, "u");
        auth.verify(&cached).expect("cached");
        save_by_rename(&new_path, rotated.public_pem());
        generation += 1;
        wait_generation(&auth, generation);
        assert_rotated(&auth, "u", new, rotated, &cached);
        // Back to the pool key, so the next round starts from `new`.
        save_by_rename(&new_path, new.public_pem());
        generation += 1;
        wait_generation(&auth, generation);
        assert_accepts(&auth, new, "u");
    }
}

// ---------------------------------------------------------------------------
// Bad changes keep the last good keys
// ---------------------------------------------------------------------------

/// Writes a bad key with `write_bad`, waits for the reload that refuses it, checks
/// that the last good key stays and the error names path and reason without key
/// material, then fixes the file and checks the fix is picked up.
fn bad_key_change(reason: &str, bad_pem: &str, write_bad: impl FnOnce(&Path)) {
    let s = Single::new();
    let cached = token(pool(0), "u");
    s.auth.verify(&cached).expect("cached");
    let before = s.auth.status();
    write_bad(&s.key_path);
    let shown = s.key_path.display().to_string();
    let status = wait_reload(
        &s.auth,
        &before,
        "the reload that refuses the bad key",
        |s| {
            s.last_outcome == ReloadOutcome::Partial
                && s.last_error.as_ref().is_some_and(|e| e.contains(&shown))
        },
    );
    assert_eq!(status.generation, 1, "a bad key must not swap the registry");
    assert_eq!(user_fingerprint(&status, "u"), fingerprint(pool(0)));
    let error = status.last_error.expect("error");
    assert!(error.contains("`u`"), "the error names the user: {error}");
    assert!(error.contains(reason), "the error says {reason:?}: {error}");
    assert_no_key_material(
        &error,
        &[bad_pem, pool(0).public_pem(), pool(1).public_pem()],
    );
    s.auth
        .verify(&cached)
        .expect("the cached token still verifies");
    assert_accepts(&s.auth, pool(0), "u");
    assert_refuses(&s.auth, pool(1), "u", AuthError::InvalidSignature);

    // Fixed: the good key is picked up.
    save_by_rename(&s.key_path, pool(1).public_pem());
    wait_generation(&s.auth, 2);
    assert_rotated(&s.auth, "u", pool(0), pool(1), &cached);
    let status = s.auth.status();
    assert_eq!(status.last_outcome, ReloadOutcome::Changed);
    assert_eq!(status.last_error, None);
}

#[test]
fn bad_change_empty_file_keeps_the_last_good_key() {
    bad_key_change("the key is empty", "", |path| {
        fs::write(path, "").expect("empty")
    });
}

#[test]
fn bad_change_half_written_file_keeps_the_last_good_key() {
    let pem = pool(1).public_pem();
    let half = &pem[..pem.len() / 2];
    bad_key_change("PEM", half, |path| fs::write(path, half).expect("half"));
}

#[test]
fn bad_change_garbage_keeps_the_last_good_key() {
    let garbage = "this is not a key\n\u{1}\u{2}\u{3} at all ::: {}\n";
    bad_key_change("no PEM block found", garbage, |path| {
        fs::write(path, garbage).expect("garbage")
    });
}

#[test]
fn bad_change_private_key_keeps_the_last_good_key() {
    let private = pool(1).private_pem();
    bad_key_change("private key", private, |path| {
        fs::write(path, private).expect("private")
    });
}

#[test]
fn bad_change_1024_bit_key_keeps_the_last_good_key() {
    let private = openssl(&["genrsa", "1024"]);
    let public =
        String::from_utf8(common::openssl_stdin(&["rsa", "-pubout"], &private)).expect("PEM");
    bad_key_change("1024 bits", &public, |path| {
        fs::write(path, &public).expect("small key")
    });
}

#[test]
fn bad_change_missing_file_keeps_the_last_good_key() {
    bad_key_change("cannot read the key file", "", |path| {
        fs::remove_file(path).expect("remove")
    });
}

#[test]
fn bad_change_permission_denied_keeps_the_last_good_key() {
    use std::os::unix::fs::PermissionsExt as _;
    // As root, mode 000 does not deny reads: probe it first.
    let probe_dir = tempfile::tempdir().expect("temp dir");
    let probe = probe_dir.path().join("probe");
    fs::write(&probe, "x").expect("probe");
    fs::set_permissions(&probe, fs::Permissions::from_mode(0o000)).expect("chmod");
    if fs::read(&probe).is_ok() {
        eprintln!(
            "skipping the permission-denied case: this process reads files with mode 000 \
             (running as root or with CAP_DAC_OVERRIDE)"
        );
        return;
    }
    let s = Single::new();
    let before = s.auth.status();
    fs::set_permissions(&s.key_path, fs::Permissions::from_mode(0o000)).expect("chmod 000");
    let shown = s.key_path.display().to_string();
    let status = wait_reload(
        &s.auth,
        &before,
        "the reload that cannot read the key",
        |s| {
            s.last_error
                .as_ref()
                .is_some_and(|e| e.contains(&shown) && e.contains("ermission denied"))
        },
    );
    assert_eq!(status.generation, 1);
    assert_eq!(status.last_outcome, ReloadOutcome::Partial);
    assert_accepts(&s.auth, pool(0), "u");
    fs::set_permissions(&s.key_path, fs::Permissions::from_mode(0o644)).expect("chmod 644");
    save_by_rename(&s.key_path, pool(1).public_pem());
    wait_generation(&s.auth, 2);
    assert_accepts(&s.auth, pool(1), "u");
    assert_refuses(&s.auth, pool(0), "u", AuthError::InvalidSignature);
}

/// Breaks the config with `break_config`, checks that the whole old registry stays
/// (even when a key changes meanwhile), then restores the config.
fn bad_config_change(reason: &str, break_config: impl FnOnce(&Path)) {
    let s = Single::new();
    let cached = token(pool(0), "u");
    s.auth.verify(&cached).expect("cached");
    let before = s.auth.status();
    break_config(&s.config);
    let shown = s.config.display().to_string();
    let status = wait_reload(
        &s.auth,
        &before,
        "the reload that refuses the config",
        |s| s.last_outcome == ReloadOutcome::Failed,
    );
    let error = status.last_error.clone().expect("error");
    assert!(
        error.contains(&shown),
        "the error names the config file: {error}"
    );
    assert!(error.contains(reason), "the error says {reason:?}: {error}");
    assert_no_key_material(&error, &[pool(0).public_pem()]);
    assert_eq!(status.generation, 1);
    assert_eq!(status.users.len(), 1);
    assert_accepts(&s.auth, pool(0), "u");

    // A key change while the config is bad: the whole old registry stays.
    save_by_rename(&s.key_path, pool(1).public_pem());
    let status = wait_reload(
        &s.auth,
        &status,
        "a reload with the config still bad",
        |s| s.last_outcome == ReloadOutcome::Failed,
    );
    assert_eq!(status.generation, 1);
    s.auth.verify(&cached).expect("the old key stays");
    assert_accepts(&s.auth, pool(0), "u");
    assert_refuses(&s.auth, pool(1), "u", AuthError::InvalidSignature);

    // Fixed: the config and the key written meanwhile are picked up.
    write_config(&s.config, &[("u", &s.key_path)]);
    wait_generation(&s.auth, 2);
    assert_rotated(&s.auth, "u", pool(0), pool(1), &cached);
    let status = s.auth.status();
    assert_eq!(status.last_outcome, ReloadOutcome::Changed);
    assert_eq!(status.last_error, None);
}

#[test]
fn bad_change_invalid_config_yaml_keeps_the_whole_old_config() {
    bad_config_change("line", |config| {
        fs::write(config, "SystemAPIUsers: [\n  - u: {Path: \n  ]]\n").expect("bad yaml")
    });
}

#[test]
fn bad_change_missing_config_file_keeps_the_whole_old_config() {
    bad_config_change("cannot read config file", |config| {
        fs::remove_file(config).expect("remove config")
    });
}

#[test]
fn bad_change_empty_config_file_keeps_the_whole_old_config() {
    // A config file truncated to nothing (the first step of truncate-then-write, or
    // an editor that crashed) must not remove every user.
    let s = Single::new();
    let before = s.auth.status();
    fs::write(&s.config, "").expect("empty config");
    let status = wait_reload(&s.auth, &before, "the reload of the empty config", |_| true);
    // Give a possible swap the time to show.
    std::thread::sleep(Duration::from_millis(200));
    let status_after = s.auth.status();
    assert_eq!(
        status_after.generation, 1,
        "an empty config file replaced the registry (all users gone): {status:#?} / {status_after:#?}"
    );
    assert_accepts(&s.auth, pool(0), "u");
    write_config(&s.config, &[("u", &s.key_path)]);
    save_by_rename(&s.key_path, pool(1).public_pem());
    wait_for(&s.auth, "the fix", || {
        s.auth
            .status()
            .users
            .iter()
            .any(|u| u.fingerprint == fingerprint(pool(1)))
    });
    assert_accepts(&s.auth, pool(1), "u");
}

#[test]
fn truncate_then_write_of_the_config_never_drops_users() {
    // The config rewritten in place (truncate, then two chunks) three times, each
    // time pointing the user at another key: the user is never unknown.
    let dir = tempfile::tempdir().expect("temp dir");
    let paths: Vec<PathBuf> = (0..4)
        .map(|i| {
            let path = dir.path().join(format!("k{i}.pub"));
            fs::write(&path, pool(i).public_pem()).expect("key");
            path
        })
        .collect();
    let config = dir.path().join("config.yaml");
    fs::write(&config, config_text(&[("u", &paths[0])])).expect("config");
    let auth = build(&config);
    for (round, path) in paths.iter().enumerate().skip(1) {
        let (old, new) = (pool(round - 1), pool(round));
        let cached = token(old, "u");
        auth.verify(&cached).expect("cached");
        let text = config_text(&[("u", path)]);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&config)
            .expect("open");
        file.flush().expect("flush");
        // The window an in-place writer leaves open, wider than the debounce.
        std::thread::sleep(Duration::from_millis(150));
        let (a, b) = text.as_bytes().split_at(text.len() / 2);
        file.write_all(a).expect("chunk");
        file.flush().expect("flush");
        file.write_all(b).expect("chunk");
        file.flush().expect("flush");
        drop(file);
        wait_for(&auth, "the new key", || {
            auth.status()
                .users
                .iter()
                .any(|u| u.fingerprint == fingerprint(new))
        });
        assert_rotated(&auth, "u", old, new, &cached);
        assert_eq!(
            auth.generation(),
            1 + round as u64,
            "an intermediate (empty or half) config was swapped in: {:#?}",
            auth.status()
        );
    }
}

#[test]
fn one_users_bad_key_does_not_hold_back_anothers_rotation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a_path = dir.path().join("a.pub");
    let b_path = dir.path().join("b.pub");
    fs::write(&a_path, pool(0).public_pem()).expect("a");
    fs::write(&b_path, pool(1).public_pem()).expect("b");
    let config = dir.path().join("config.yaml");
    fs::write(&config, config_text(&[("a", &a_path), ("b", &b_path)])).expect("config");
    let auth = build(&config);
    let small = String::from_utf8(common::openssl_stdin(
        &["rsa", "-pubout"],
        &openssl(&["genrsa", "1024"]),
    ))
    .expect("PEM");
    let bad: [&str; 3] = ["garbage\n", pool(7).private_pem(), &small];
    let b_keys = [pool(1), pool(2), pool(3), pool(4)];
    let shown = a_path.display().to_string();
    for round in 1..=3 {
        let cached_b = token(b_keys[round - 1], "b");
        auth.verify(&cached_b).expect("cached b");
        // One change: a's key goes bad, b's key is rotated.
        fs::write(&a_path, bad[round - 1]).expect("bad a");
        save_by_rename(&b_path, b_keys[round].public_pem());
        wait_generation(&auth, 1 + round as u64);
        // The reload that swapped b may have come before the one that saw a's
        // file (both are in the burst, but a scheduler hiccup can split it).
        let status = auth.status();
        let status = if status
            .last_error
            .as_ref()
            .is_some_and(|e| e.contains(&shown))
        {
            status
        } else {
            wait_reload(&auth, &status, "the reload that refuses a's key", |s| {
                s.last_error.as_ref().is_some_and(|e| e.contains(&shown))
            })
        };
        assert_eq!(status.last_outcome, ReloadOutcome::Partial, "{status:#?}");
        assert_eq!(status.generation, 1 + round as u64);
        assert!(
            !status
                .last_error
                .as_ref()
                .expect("error")
                .contains(path_str(&b_path)),
            "b is fine: {status:#?}"
        );
        assert_rotated(&auth, "b", b_keys[round - 1], b_keys[round], &cached_b);
        // a keeps its last good key.
        assert_accepts(&auth, pool(0), "a");
        assert_eq!(user_fingerprint(&status, "a"), fingerprint(pool(0)));
    }
    // a fixed with a new key.
    let cached_a = token(pool(0), "a");
    save_by_rename(&a_path, pool(5).public_pem());
    wait_generation(&auth, 5);
    assert_rotated(&auth, "a", pool(0), pool(5), &cached_a);
    let status = auth.status();
    assert_eq!(status.last_outcome, ReloadOutcome::Changed);
    assert_eq!(status.last_error, None);
}

// --- Logging: once per change, with path and reason, never key material ------

/// Captures what the reload threads log (every test's: they share the binary's one
/// global subscriber) and, while the returned guard lives, what this test's own
/// thread logs (the builder arms the watches on it), into the same buffer.
fn capture_logs() -> tracing::subscriber::DefaultGuard {
    tracing::subscriber::set_default(common::reload_log().subscriber())
}

/// The captured warnings and errors that mention `needle` (a path or a message
/// only this test's files or hooks have).
fn log_lines(needle: &str) -> Vec<String> {
    common::reload_log()
        .lines_with(needle)
        .into_iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect()
}

#[test]
fn a_bad_change_is_logged_once_with_path_and_reason_and_retried() {
    let _log = capture_logs();
    let s = Single::new();
    let shown = s.key_path.display().to_string();
    let count = |reason: &str| {
        log_lines(&shown)
            .iter()
            .filter(|l| l.contains(reason))
            .count()
    };
    let has_error = |reason: &'static str| {
        let shown = shown.clone();
        move |st: &Status| {
            st.last_error
                .as_ref()
                .is_some_and(|e| e.contains(&shown) && e.contains(reason))
        }
    };

    // 1. An empty file: logged once.
    let before = s.auth.status();
    fs::write(&s.key_path, "").expect("empty");
    let mut status = wait_reload(&s.auth, &before, "empty", has_error("the key is empty"));
    wait_for(&s.auth, "the warning", || count("the key is empty") == 1);

    // 2. More events that do not fix it: retried (read again), not logged again.
    for i in 0..2 {
        fs::write(s.key_path.with_file_name(format!("unrelated-{i}")), "x").expect("touch");
        status = wait_reload(&s.auth, &status, "retry", has_error("the key is empty"));
        assert_eq!(status.generation, 1);
    }

    // 3. Another bad change (garbage): logged once, with its own reason.
    fs::write(&s.key_path, "garbage garbage garbage\n").expect("garbage");
    let status = wait_reload(&s.auth, &status, "garbage", has_error("no PEM block"));
    wait_for(&s.auth, "the garbage warning", || {
        count("no PEM block") == 1
    });

    // 4. A private key: logged once, without key material.
    fs::write(&s.key_path, pool(2).private_pem()).expect("private");
    wait_reload(&s.auth, &status, "private", has_error("private key"));
    wait_for(&s.auth, "the private key warning", || {
        count("private key") == 1
    });

    // 5. Fixed, then emptied again: a new change, logged again.
    save_by_rename(&s.key_path, pool(1).public_pem());
    wait_generation(&s.auth, 2);
    let status = s.auth.status();
    fs::write(&s.key_path, "").expect("empty again");
    wait_reload(
        &s.auth,
        &status,
        "empty again",
        has_error("the key is empty"),
    );
    wait_for(&s.auth, "the second empty warning", || {
        count("the key is empty") == 2
    });
    save_by_rename(&s.key_path, pool(3).public_pem());
    wait_generation(&s.auth, 3);
    // One more reload, so every earlier warning has surely been written.
    save_by_rename(&s.key_path, pool(4).public_pem());
    wait_generation(&s.auth, 4);

    let lines = log_lines(&shown);
    assert_eq!(lines.len(), 4, "one warning per bad change: {lines:#?}");
    assert_eq!(count("the key is empty"), 2, "{lines:#?}");
    assert_eq!(count("no PEM block"), 1, "{lines:#?}");
    assert_eq!(count("private key"), 1, "{lines:#?}");
    for line in &lines {
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains("`u`"), "{line}");
        assert_no_key_material(
            line,
            &[
                pool(0).public_pem(),
                pool(1).public_pem(),
                pool(2).private_pem(),
                pool(2).public_pem(),
            ],
        );
    }
}

// ---------------------------------------------------------------------------
// Refused as soon as the new registry is in place (cache on)
// ---------------------------------------------------------------------------

#[test]
fn removed_user_and_replaced_key_are_refused_at_once_even_when_cached() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a_path = dir.path().join("a.pub");
    let b_path = dir.path().join("b.pub");
    fs::write(&a_path, pool(0).public_pem()).expect("a");
    fs::write(&b_path, pool(1).public_pem()).expect("b");
    let config = dir.path().join("config.yaml");
    fs::write(&config, config_text(&[("a", &a_path), ("b", &b_path)])).expect("config");
    let auth = build(&config);
    let a_token = token(pool(0), "a");
    let b_token = token(pool(1), "b");
    for _ in 0..3 {
        auth.verify(&a_token).expect("a");
        auth.verify(&b_token).expect("b");
    }
    assert_eq!(auth.status().cached_tokens, 2);

    // A replaced key: the cached token is refused the moment the generation moves.
    save_by_rename(&a_path, pool(2).public_pem());
    wait_for(&auth, "generation 2", || {
        let generation = auth.generation();
        if generation >= 2 {
            // Checked in the same poll that first sees the new generation.
            assert_eq!(
                auth.verify(&a_token).err(),
                Some(AuthError::InvalidSignature)
            );
        } else {
            // Still the old registry: still accepted.
            let result = auth.verify(&a_token);
            assert!(
                result.is_ok() || auth.generation() >= 2,
                "refused while the old registry was in place: {result:?}"
            );
        }
        generation >= 2
    });
    assert_eq!(auth.generation(), 2);
    auth.verify(&b_token).expect("b is untouched");
    assert_accepts(&auth, pool(2), "a");

    // A removed user: refused the moment the generation moves.
    auth.verify(&b_token).expect("b cached again");
    write_config(&config, &[("a", &a_path)]);
    wait_for(&auth, "generation 3", || {
        let generation = auth.generation();
        if generation >= 3 {
            assert_eq!(auth.verify(&b_token).err(), Some(AuthError::UnknownUser));
        }
        generation >= 3
    });
    assert_eq!(auth.generation(), 3);
    assert_refuses(&auth, pool(1), "b", AuthError::UnknownUser);
    assert_accepts(&auth, pool(2), "a");
    assert_eq!(auth.user_ids(), ["a"]);
}

// ---------------------------------------------------------------------------
// Debounce, own reads, polling
// ---------------------------------------------------------------------------

#[test]
fn a_burst_of_writes_is_one_reload() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_path = dir.path().join("u.pub");
    fs::write(&key_path, pool(0).public_pem()).expect("key");
    let config = dir.path().join("config.yaml");
    fs::write(&config, config_text(&[("u", &key_path)])).expect("config");
    // A debounce well above a scheduling hiccup, so the test is about coalescing.
    let auth = SystemAuth::builder()
        .config_file(&config)
        .debounce(Duration::from_millis(200))
        .build()
        .expect("build");
    // A round only proves something when the 20 writes took well under the
    // debounce; on a badly overloaded machine the writer can be descheduled
    // mid-burst, and then that round only checks that the final key is picked up.
    let mut conclusive = 0;
    for round in 0..10usize {
        if conclusive == 3 {
            break;
        }
        let before = auth.status();
        // 20 quick writes, in several ways, with different intermediate contents;
        // the last one leaves the final key.
        let final_key = pool(5 + round % 3);
        let started = Instant::now();
        for i in 0..20 {
            let key = if i == 19 { final_key } else { pool(i % 3) };
            match i % 3 {
                0 => save_by_rename(&key_path, key.public_pem()),
                1 => fs::write(&key_path, key.public_pem()).expect("write"),
                _ => truncate_then_write(&key_path, key.public_pem().as_bytes()),
            }
        }
        let took = started.elapsed();
        if took > Duration::from_millis(100) {
            eprintln!("burst round {round}: the writes took {took:?}; not counted");
            wait_for(&auth, "the final key", || {
                user_fingerprint(&auth.status(), "u") == fingerprint(final_key)
            });
            std::thread::sleep(QUIET);
            continue;
        }
        conclusive += 1;
        wait_generation(&auth, before.generation + 1);
        assert_quiet(&auth, "after a burst");
        assert_eq!(
            auth.generation(),
            before.generation + 1,
            "one reload per burst"
        );
        assert_accepts(&auth, final_key, "u");
        assert_fingerprint(&auth, "u", final_key);
    }
    assert!(conclusive > 0, "no burst was quick enough to judge");
}

#[test]
fn own_reads_verifies_and_unchanged_reloads_do_not_reload() {
    let s = Single::new();
    // Nothing happens by itself after the build.
    assert_quiet(&s.auth, "after the build");
    let t = token(pool(0), "u");
    for _ in 0..200 {
        s.auth.verify(&t).expect("verify");
    }
    for _ in 0..5 {
        let report = s.auth.reload().expect("reload");
        assert!(!report.changed, "{report:?}");
        assert_eq!(report.generation, 1);
        assert!(report.problems.is_empty());
    }
    let status = s.auth.status();
    assert_eq!(status.generation, 1);
    assert_eq!(status.last_outcome, ReloadOutcome::Unchanged);
    // The reads of those reloads must not wake the watcher.
    assert_quiet(&s.auth, "after reload() read every file");

    // After a real change, the watcher's own reads do not trigger another reload.
    save_by_rename(&s.key_path, pool(1).public_pem());
    wait_generation(&s.auth, 2);
    assert_quiet(&s.auth, "after the watcher's own reload");
    assert_eq!(s.auth.generation(), 2);
}

#[test]
fn polling_picks_up_changes_three_times_and_does_not_reload_otherwise() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_path = dir.path().join("u.pub");
    fs::write(&key_path, pool(0).public_pem()).expect("key");
    let config = dir.path().join("config.yaml");
    fs::write(&config, config_text(&[("u", &key_path)])).expect("config");
    let auth = SystemAuth::builder()
        .config_file(&config)
        .poll_interval(Duration::from_millis(100))
        .build()
        .expect("build");
    assert_eq!(
        auth.status().watching,
        WatchMode::Polling(Duration::from_millis(100))
    );
    assert_quiet(&auth, "polling with nothing changed");
    let kinds = [
        Change::SaveByRename,
        Change::CopyOver,
        Change::TruncateThenWrite,
    ];
    for round in 1..=3 {
        let (old, new) = (pool(round - 1), pool(round));
        let cached = token(old, "u");
        auth.verify(&cached).expect("cached");
        match kinds[round - 1] {
            Change::SaveByRename => save_by_rename(&key_path, new.public_pem()),
            Change::CopyOver => copy_over(&new.public_path(), &key_path),
            _ => truncate_then_write(&key_path, new.public_pem().as_bytes()),
        }
        wait_generation(&auth, 1 + round as u64);
        assert_rotated(&auth, "u", old, new, &cached);
    }
    // A config change (a user added) is polled too.
    let v_path = dir.path().join("v.pub");
    fs::write(&v_path, pool(5).public_pem()).expect("v");
    write_config(&config, &[("u", &key_path), ("v", &v_path)]);
    wait_generation(&auth, 5);
    assert_accepts(&auth, pool(5), "v");
    // The set of polled files grew, which may cost one more (unchanged) read on the
    // next poll; after that, nothing.
    std::thread::sleep(Duration::from_millis(300));
    assert_quiet(&auth, "polling after the changes");
    assert_eq!(auth.generation(), 5);
}

// ---------------------------------------------------------------------------
// reload() on demand, status()
// ---------------------------------------------------------------------------

#[test]
fn reload_on_demand_and_status() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a_path = dir.path().join("a.pub");
    let b_path = dir.path().join("b.pub");
    fs::write(&a_path, pool(0).public_pem()).expect("a");
    fs::write(&b_path, pool(1).public_pem()).expect("b");
    let config = dir.path().join("config.yaml");
    fs::write(&config, config_text(&[("b", &b_path), ("a", &a_path)])).expect("config");
    let started = SystemTime::now();
    let auth = SystemAuth::builder()
        .config_file(&config)
        .watch(false)
        .build()
        .expect("build");

    let status = auth.status();
    assert_eq!(status.generation, 1);
    assert_eq!(status.last_outcome, ReloadOutcome::Initial);
    assert_eq!(status.last_error, None);
    assert_eq!(status.watching, WatchMode::Off);
    assert!(status.last_reload >= started);
    assert_eq!(status.cached_tokens, 0);
    // Sorted by id, with the SPKI fingerprints and no NotAfter for bare keys.
    let ids: Vec<&str> = status.users.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(status.users[0].fingerprint, fingerprint(pool(0)));
    assert_eq!(status.users[1].fingerprint, fingerprint(pool(1)));
    assert!(status.users.iter().all(|u| u.not_after.is_none()));
    assert_eq!(status.users[0].fingerprint.len(), 64);

    let cached = token(pool(0), "a");
    auth.verify(&cached).expect("a");
    auth.verify(&token(pool(1), "b")).expect("b");
    assert_eq!(auth.status().cached_tokens, 2);

    // Nothing changed: not swapped.
    let report = auth.reload().expect("reload");
    assert_eq!((report.generation, report.changed), (1, false));
    assert!(report.problems.is_empty());
    let unchanged = auth.status();
    assert_eq!(unchanged.last_outcome, ReloadOutcome::Unchanged);
    assert!(unchanged.last_reload >= status.last_reload);
    assert_eq!(
        unchanged.cached_tokens, 2,
        "an unchanged reload keeps the cache"
    );

    // A change is not noticed without watching...
    save_by_rename(&a_path, pool(2).public_pem());
    assert_quiet(&auth, "with watching off");
    auth.verify(&cached)
        .expect("still the old key until reload()");
    // ...and reload() picks it up.
    let report = auth.reload().expect("reload");
    assert_eq!((report.generation, report.changed), (2, true));
    assert!(report.problems.is_empty());
    let changed = auth.status();
    assert_eq!(changed.generation, 2);
    assert_eq!(changed.last_outcome, ReloadOutcome::Changed);
    assert_eq!(changed.last_error, None);
    assert!(changed.last_reload >= unchanged.last_reload);
    assert_ne!(changed.last_reload, unchanged.last_reload);
    assert_eq!(
        changed.cached_tokens, 0,
        "a new registry starts with an empty cache"
    );
    assert_eq!(changed.users[0].fingerprint, fingerprint(pool(2)));
    assert_eq!(changed.users[1].fingerprint, fingerprint(pool(1)));
    assert_rotated(&auth, "a", pool(0), pool(2), &cached);

    // A bad key: Ok with the problem listed, the user keeps its key.
    fs::write(&b_path, "garbage").expect("garbage");
    let report = auth
        .reload()
        .expect("a bad key is not an error of reload()");
    assert_eq!((report.generation, report.changed), (2, false));
    assert_eq!(report.problems.len(), 1);
    assert!(report.problems[0].contains(path_str(&b_path)), "{report:?}");
    let partial = auth.status();
    assert_eq!(partial.last_outcome, ReloadOutcome::Partial);
    assert!(
        partial
            .last_error
            .as_ref()
            .is_some_and(|e| e.contains(path_str(&b_path)) && e.contains("no PEM block")),
        "{partial:#?}"
    );
    assert_accepts(&auth, pool(1), "b");
    save_by_rename(&b_path, pool(1).public_pem());

    // A broken config: Err, and everything stays as it was.
    fs::write(&config, "SystemAPIUsers: [ {").expect("broken config");
    let before = auth.status();
    let error = auth.reload().expect_err("a broken config is an error");
    let message = error.to_string();
    assert!(message.contains(path_str(&config)), "{message}");
    let failed = auth.status();
    assert_eq!(failed.generation, 2);
    assert_eq!(failed.last_outcome, ReloadOutcome::Failed);
    assert_eq!(failed.last_error.as_deref(), Some(message.as_str()));
    assert_eq!(failed.users, before.users);
    assert_ne!(failed.last_reload, before.last_reload);
    assert_accepts(&auth, pool(2), "a");
    assert_accepts(&auth, pool(1), "b");

    // Fixed: reload() picks up the config (b removed).
    write_config(&config, &[("a", &a_path)]);
    let report = auth.reload().expect("reload");
    assert_eq!((report.generation, report.changed), (3, true));
    assert_eq!(auth.status().last_error, None);
    assert_refuses(&auth, pool(1), "b", AuthError::UnknownUser);
    assert_accepts(&auth, pool(2), "a");
}

#[test]
fn reload_on_demand_while_watching_counts_once() {
    // reload() and the watcher racing for the same change swap one registry.
    let s = Single::new();
    save_by_rename(&s.key_path, pool(1).public_pem());
    let report = s.auth.reload().expect("reload");
    assert_eq!(report.generation, 2);
    wait_generation(&s.auth, 2);
    if report.changed {
        // The watcher still reads the change it was told about: nothing new.
        wait_for(&s.auth, "the watcher's (unchanged) reload", || {
            s.auth.status().last_outcome == ReloadOutcome::Unchanged
        });
    }
    assert_quiet(
        &s.auth,
        "after reload() and the watcher saw the same change",
    );
    assert_eq!(s.auth.generation(), 2);
    assert_accepts(&s.auth, pool(1), "u");
}

#[test]
fn status_is_one_consistent_snapshot_during_rotations() {
    // Every status() pairs the registry (generation, users) with the reload that
    // put it in place: two snapshots with the same `last_reload` show the same
    // generation and fingerprints.
    let s = Single::new();
    let stop = AtomicBool::new(false);
    let snapshots = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut seen: Vec<Status> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let status = s.auth.status();
                if seen.last() != Some(&status) {
                    seen.push(status);
                }
            }
            seen
        });
        for round in 1..=40u64 {
            let key = pool((round % 4) as usize + 1);
            save_by_rename(&s.key_path, key.public_pem());
            wait_generation(&s.auth, 1 + round);
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().expect("reader")
    });
    let mut by_reload: HashMap<SystemTime, &Status> = HashMap::new();
    for status in &snapshots {
        if let Some(earlier) = by_reload.insert(status.last_reload, status) {
            assert_eq!(
                (earlier.generation, &earlier.users),
                (status.generation, &status.users),
                "two snapshots of the same reload disagree: {earlier:#?} vs {status:#?}"
            );
        }
        if status.last_outcome == ReloadOutcome::Initial {
            assert_eq!(status.generation, 1, "{status:#?}");
        }
    }
}

// ---------------------------------------------------------------------------
// A certificate expiring while the service runs
// ---------------------------------------------------------------------------

/// A self-signed certificate for `key`, valid `days` days from now, written to
/// `out`; returns its NotAfter.
fn make_certificate(key: &TestKey, days: u32, out: &Path) -> u64 {
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        path_str(&key.private_path()),
        "-subj",
        "/CN=system-user",
        "-days",
        &days.to_string(),
        "-out",
        path_str(out),
    ]);
    common::openssl_validity(out).1
}

#[test]
fn expiring_certificate_is_refused_without_a_file_event_and_a_renewal_is_used() {
    let dir = tempfile::tempdir().expect("temp dir");
    let staging = tempfile::tempdir().expect("staging");
    let cert_path = dir.path().join("u.crt");
    let not_after = make_certificate(pool(0), 1, &cert_path);
    let now = common::now();
    assert!(
        not_after.abs_diff(now + 86_400) < 120,
        "-days 1 gives NotAfter about a day from now"
    );
    let config = dir.path().join("config.yaml");
    fs::write(&config, config_text(&[("u", &cert_path)])).expect("config");
    let clock = Arc::new(AtomicU64::new(not_after - 60));
    let auth = SystemAuth::builder()
        .config_file(&config)
        .clock({
            let clock = clock.clone();
            move || UNIX_EPOCH + Duration::from_secs(clock.load(Ordering::SeqCst))
        })
        .build() // the token cache is on by default
        .expect("build");
    let status = auth.status();
    assert_eq!(status.users[0].fingerprint, fingerprint(pool(0)));
    assert_eq!(
        status.users[0].not_after,
        Some(UNIX_EPOCH + Duration::from_secs(not_after))
    );

    // A token that is itself valid across NotAfter.
    let claims = |key_user: &str, iat: u64| {
        serde_json::json!({
            "iss": key_user, "sub": key_user, "aud": AUD, "iat": iat, "exp": iat + 3600,
        })
    };
    let old_token = pool(0).rs256(&claims("u", not_after - 60));
    auth.verify(&old_token).expect("valid before NotAfter");
    auth.verify(&old_token).expect("cached");
    assert_eq!(auth.status().cached_tokens, 1);

    // NotAfter passes, no file changes: refused from that moment, cached or not.
    let before = auth.status();
    clock.store(not_after + 1, Ordering::SeqCst);
    assert_eq!(auth.verify(&old_token).err(), Some(AuthError::KeyExpired));
    let fresh = pool(0).rs256(&claims("u", not_after + 1));
    assert_eq!(auth.verify(&fresh).err(), Some(AuthError::KeyExpired));
    let after = auth.status();
    assert_eq!(
        (after.generation, after.last_reload),
        (before.generation, before.last_reload),
        "no reload was needed"
    );

    // A renewed certificate for the same key (30 days) is used.
    let staged = staging.path().join("renewed.crt");
    let renewed_not_after = make_certificate(pool(0), 30, &staged);
    assert!(renewed_not_after > not_after + 86_400);
    fs::rename(&staged, &cert_path).expect("mv renewed certificate");
    wait_generation(&auth, 2);
    assert_eq!(
        auth.status().users[0].not_after,
        Some(UNIX_EPOCH + Duration::from_secs(renewed_not_after))
    );
    auth.verify(&old_token).expect("the same key, renewed");
    auth.verify(&fresh).expect("the same key, renewed");

    // A renewed certificate for a new key (30 days) is used; the old key is refused.
    let staged = staging.path().join("new-key.crt");
    let new_not_after = make_certificate(pool(1), 30, &staged);
    save_by_rename(&cert_path, fs::read(&staged).expect("read cert"));
    wait_generation(&auth, 3);
    let status = auth.status();
    assert_eq!(status.users[0].fingerprint, fingerprint(pool(1)));
    assert_eq!(
        status.users[0].not_after,
        Some(UNIX_EPOCH + Duration::from_secs(new_not_after))
    );
    let clock_now = clock.load(Ordering::SeqCst);
    assert!(clock_now > not_after && clock_now < new_not_after);
    let new_token = pool(1).rs256(&claims("u", clock_now));
    auth.verify(&new_token).expect("the new key's token");
    auth.verify(&new_token).expect("cached");
    assert_eq!(
        auth.verify(&old_token).err(),
        Some(AuthError::InvalidSignature)
    );

    // And that certificate expires too, with no file event.
    clock.store(new_not_after + 1, Ordering::SeqCst);
    assert_eq!(auth.verify(&new_token).err(), Some(AuthError::Expired));
    let late_token = pool(1).rs256(&claims("u", new_not_after + 1));
    assert_eq!(auth.verify(&late_token).err(), Some(AuthError::KeyExpired));
    assert_eq!(auth.generation(), 3);
}

#[test]
fn expiring_certificate_is_refused_with_the_cache_off_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert_path = dir.path().join("u.crt");
    let not_after = make_certificate(pool(2), 1, &cert_path);
    let config = dir.path().join("config.yaml");
    fs::write(&config, config_text(&[("u", &cert_path)])).expect("config");
    let clock = Arc::new(AtomicU64::new(not_after - 10));
    let auth = SystemAuth::builder()
        .config_file(&config)
        .token_cache(false)
        .clock({
            let clock = clock.clone();
            move || UNIX_EPOCH + Duration::from_secs(clock.load(Ordering::SeqCst))
        })
        .build()
        .expect("build");
    let t = pool(2).rs256(&serde_json::json!({
        "iss": "u", "sub": "u", "aud": AUD, "iat": not_after - 10, "exp": not_after + 3600,
    }));
    auth.verify(&t).expect("before NotAfter");
    clock.store(not_after, Ordering::SeqCst);
    auth.verify(&t).expect("at NotAfter (inclusive)");
    clock.store(not_after + 1, Ordering::SeqCst);
    assert_eq!(auth.verify(&t).err(), Some(AuthError::KeyExpired));
    assert_eq!(auth.status().cached_tokens, 0);
}

// ---------------------------------------------------------------------------
// Stress
// ---------------------------------------------------------------------------

/// What the checking thread saw that needs the full rotation history to judge.
#[derive(Debug)]
struct Observation {
    /// Generation before and after the two verify calls.
    from: u64,
    to: u64,
    /// The key whose token was tried, and whether it was accepted.
    key: usize,
    accepted: bool,
    /// The current key per the status snapshot taken before.
    current: usize,
}

fn stress(cache: bool) {
    const ROTATIONS: usize = 200;
    const KEYS: usize = 8;
    let dir = tempfile::tempdir().expect("temp dir");
    let stable_path = dir.path().join("stable.pub");
    let rotating_path = dir.path().join("rotating.pub");
    let stable = pool(15);
    let rotating: Vec<&TestKey> = (0..KEYS).map(pool).collect();
    fs::write(&stable_path, stable.public_pem()).expect("stable");
    fs::write(&rotating_path, rotating[0].public_pem()).expect("rotating");
    let config = dir.path().join("config.yaml");
    fs::write(
        &config,
        config_text(&[("stable", &stable_path), ("rotating", &rotating_path)]),
    )
    .expect("config");
    let auth = SystemAuth::builder()
        .config_file(&config)
        .token_cache(cache)
        .build()
        .expect("build");

    let fingerprints: Vec<String> = rotating.iter().map(|k| fingerprint(k)).collect();
    let index_of: HashMap<&str, usize> = fingerprints
        .iter()
        .enumerate()
        .map(|(i, f)| (f.as_str(), i))
        .collect();
    let stable_token = token(stable, "stable");
    let tokens: Vec<String> = rotating.iter().map(|k| token(k, "rotating")).collect();
    // generation -> index of the rotating key in that registry.
    let history = Mutex::new(HashMap::from([(1u64, 0usize)]));
    let stop = AtomicBool::new(false);

    let (stable_checks, stable_failures, observations) = std::thread::scope(|scope| {
        let stable_thread = scope.spawn(|| {
            let mut checks = 0u64;
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match auth.verify(&stable_token) {
                    Ok(user) => assert_eq!(user.user_id(), "stable"),
                    Err(error) => failures.push((auth.generation(), error)),
                }
                checks += 1;
            }
            (checks, failures)
        });
        let rotating_thread = scope.spawn(|| {
            let mut observations = Vec::new();
            let mut seen = [false; KEYS];
            let mut pick = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let snapshot = auth.status();
                let current_fp = user_fingerprint(&snapshot, "rotating");
                let current = index_of[current_fp.as_str()];
                seen[current] = true;
                // A retired key: one that was current before and that the status
                // says has been replaced.
                pick += 1;
                let retired = (1..KEYS)
                    .map(|d| (current + pick + d) % KEYS)
                    .find(|&k| k != current && seen[k] && fingerprints[k] != current_fp);
                let retired_result = retired.map(|k| auth.verify(&tokens[k]));
                let current_result = auth.verify(&tokens[current]);
                let to = auth.generation();
                if let (Some(k), Some(result)) = (retired, retired_result) {
                    if let Err(error) = &result {
                        assert_eq!(*error, AuthError::InvalidSignature, "retired key refusal");
                    }
                    observations.push(Observation {
                        from: snapshot.generation,
                        to,
                        key: k,
                        accepted: result.is_ok(),
                        current,
                    });
                }
                observations.push(Observation {
                    from: snapshot.generation,
                    to,
                    key: current,
                    accepted: current_result.is_ok(),
                    current,
                });
            }
            observations
        });

        // The main thread rotates the key, each time to another one.
        let mut current = 0usize;
        let started = Instant::now();
        for round in 0..ROTATIONS {
            let next = (current + 1 + round % (KEYS - 1)) % KEYS;
            assert_ne!(next, current);
            let generation = auth.generation();
            save_by_rename(&rotating_path, rotating[next].public_pem());
            let deadline = Instant::now() + TIMEOUT;
            while auth.generation() == generation {
                if Instant::now() > deadline {
                    stop.store(true, Ordering::Relaxed);
                    panic!(
                        "rotation {round}: generation stuck at {generation}: {:#?}",
                        auth.status()
                    );
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let status = auth.status();
            if status.generation != generation + 1
                || user_fingerprint(&status, "rotating") != fingerprints[next]
            {
                stop.store(true, Ordering::Relaxed);
                panic!("rotation {round} to key {next}: unexpected status {status:#?}");
            }
            history
                .lock()
                .expect("history")
                .insert(generation + 1, next);
            current = next;
        }
        eprintln!(
            "stress (cache {cache}): {ROTATIONS} rotations in {:?}",
            started.elapsed()
        );
        stop.store(true, Ordering::Relaxed);
        let (checks, failures) = stable_thread.join().expect("stable thread");
        (
            checks,
            failures,
            rotating_thread.join().expect("rotating thread"),
        )
    });

    assert_eq!(
        auth.generation(),
        1 + ROTATIONS as u64,
        "one generation per rotation, none from the crate's own reads"
    );
    assert!(
        stable_failures.is_empty(),
        "the stable user was refused {} times of {stable_checks}: {:?}",
        stable_failures.len(),
        &stable_failures[..stable_failures.len().min(5)]
    );
    let history = history.into_inner().expect("history");
    let mut retired_checks = 0;
    let mut retired_accepted = Vec::new();
    let mut current_refused = Vec::new();
    let mut current_checks = 0;
    for o in &observations {
        // Which keys were current in any registry in place during the calls.
        let current_somewhere = (o.from..=o.to).any(|g| history.get(&g) == Some(&o.key));
        let current_throughout = (o.from..=o.to).all(|g| history.get(&g) == Some(&o.key));
        if o.key == o.current {
            current_checks += 1;
            if !o.accepted && current_throughout {
                current_refused.push(o);
            }
        } else {
            retired_checks += 1;
            if o.accepted && !current_somewhere {
                retired_accepted.push(o);
            }
        }
    }
    eprintln!(
        "stress (cache {cache}): {stable_checks} stable checks, {retired_checks} retired-key checks, {current_checks} current-key checks"
    );
    assert!(
        retired_accepted.is_empty(),
        "retired keys accepted after status reported their replacement: {:?}",
        &retired_accepted[..retired_accepted.len().min(5)]
    );
    assert!(
        current_refused.is_empty(),
        "the current key was refused: {:?}",
        &current_refused[..current_refused.len().min(5)]
    );
    assert!(stable_checks > ROTATIONS as u64, "the stable thread ran");
    assert!(retired_checks > ROTATIONS, "the retired keys were tried");
}

#[test]
fn stress_rotating_one_key_200_times_with_the_cache() {
    stress(true);
}

#[test]
fn stress_rotating_one_key_200_times_without_the_cache() {
    stress(false);
}

// ---------------------------------------------------------------------------
// Nothing a reload reads can block it
// ---------------------------------------------------------------------------

/// Makes a FIFO at `path` with the `mkfifo` command (no `unsafe` here).
fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {} failed", path.display());
}

/// Runs `f` on a thread; panics if it does not return within `TIMEOUT`.
fn within_timeout<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(TIMEOUT)
        .unwrap_or_else(|e| panic!("{what} did not return within {TIMEOUT:?} ({e})"))
}

#[test]
fn a_fifo_in_place_of_a_key_file_is_a_failed_read_and_the_watcher_goes_on() {
    let s = Single::new();
    let fifo = s.dir.path().join("keys").join("staged.fifo");
    mkfifo(&fifo);
    let before = s.auth.status();
    fs::rename(&fifo, &s.key_path).expect("FIFO over the key");
    let auth = s.auth.clone();
    let report = within_timeout("reload() with a FIFO as the key", move || auth.reload())
        .expect("a bad key file is not an error of reload()");
    assert_eq!((report.generation, report.changed), (1, false));
    let shown = s.key_path.display().to_string();
    assert!(
        report.problems.len() == 1
            && report.problems[0].contains(&shown)
            && report.problems[0].contains("not a regular file"),
        "{report:?}"
    );
    // The watcher saw the swap too, and did not hang on it.
    let status = wait_reload(&s.auth, &before, "a reload that refuses the FIFO", |st| {
        st.last_outcome == ReloadOutcome::Partial
    });
    assert_eq!(status.generation, 1);
    assert_accepts(&s.auth, pool(0), "u");
    // A good key afterwards is picked up by the watcher.
    let cached = token(pool(0), "u");
    save_by_rename(&s.key_path, pool(1).public_pem());
    wait_generation(&s.auth, 2);
    assert_rotated(&s.auth, "u", pool(0), pool(1), &cached);
}

#[test]
fn a_fifo_swapped_in_between_the_check_and_the_open_never_blocks_a_reload() {
    // A FIFO and a regular file are linked over the key path in turn, as fast as
    // possible, while reload() runs again and again: some reload sees a regular
    // file when it checks and a FIFO when it opens. Opening a FIFO blocks until a
    // writer comes, unless it is opened without blocking.
    let dir = tempfile::tempdir().expect("temp dir");
    let key_path = dir.path().join("u.pub");
    let regular = dir.path().join("regular");
    let fifo = dir.path().join("fifo");
    fs::write(&key_path, pool(0).public_pem()).expect("key");
    fs::write(&regular, pool(0).public_pem()).expect("regular");
    mkfifo(&fifo);
    let config = dir.path().join("config.yaml");
    fs::write(&config, config_text(&[("u", &key_path)])).expect("config");
    let auth = SystemAuth::builder()
        .config_file(&config)
        .watch(false)
        .build()
        .expect("build");
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, key_path) = (stop.clone(), key_path.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for source in [&fifo, &regular] {
                    let tmp = key_path.with_file_name(format!(".swap{n}"));
                    n += 1;
                    fs::hard_link(source, &tmp).expect("link");
                    fs::rename(&tmp, &key_path).expect("rename over the key");
                }
            }
            n
        })
    };
    let (progress_tx, progress) = std::sync::mpsc::channel::<Result<ReloadReport, String>>();
    let reloader = {
        let (auth, stop) = (auth.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let result = auth.reload().map_err(|e| e.to_string());
                if progress_tx.send(result).is_err() {
                    break;
                }
            }
        })
    };
    let started = Instant::now();
    let (mut reloads, mut refused) = (0u32, 0u32);
    while started.elapsed() < Duration::from_secs(3) {
        match progress.recv_timeout(TIMEOUT) {
            Ok(Ok(report)) => {
                reloads += 1;
                assert_eq!(report.generation, 1, "{report:?}");
                refused += u32::from(!report.problems.is_empty());
            }
            Ok(Err(error)) => panic!("the config is fine: {error}"),
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                panic!(
                    "a reload blocked for {TIMEOUT:?} after {reloads} reloads (a FIFO opened for \
                     reading waits for a writer)"
                );
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    drop(progress);
    let swaps = swapper.join().expect("swapper");
    reloader.join().expect("reloader");
    eprintln!("{reloads} reloads, {refused} refused the FIFO, {swaps} swaps");
    assert!(
        reloads > 10 && refused > 0,
        "{reloads} reloads, {refused} refused"
    );
    assert_accepts(&auth, pool(0), "u");
}

// ---------------------------------------------------------------------------
// A key or config file that links into another folder
// ---------------------------------------------------------------------------

#[test]
fn a_key_linking_into_another_folder_is_reloaded_when_its_target_changes() {
    // A/key.pub -> B/key.pub; only B changes.
    let a = tempfile::tempdir().expect("A");
    let b = tempfile::tempdir().expect("B");
    let target = b.path().join("key.pub");
    fs::write(&target, pool(0).public_pem()).expect("key");
    let link = a.path().join("key.pub");
    std::os::unix::fs::symlink(&target, &link).expect("link");
    let config = a.path().join("config.yaml");
    fs::write(&config, config_text(&[("u", &link)])).expect("config");
    let auth = build(&config);
    for round in 1..=3 {
        let (old, new) = (pool(round - 1), pool(round));
        let cached = token(old, "u");
        auth.verify(&cached).expect("cached");
        save_by_rename(&target, new.public_pem());
        wait_generation(&auth, 1 + round as u64);
        assert_rotated(&auth, "u", old, new, &cached);
    }
    let folders: Vec<PathBuf> = auth.status().folders.into_iter().map(|f| f.path).collect();
    let canonical = |p: &Path| fs::canonicalize(p).expect("canonical");
    assert!(
        folders.contains(&canonical(a.path())) && folders.contains(&canonical(b.path())),
        "{folders:?}"
    );
}

#[test]
fn a_two_hop_link_chain_is_reloaded_when_any_hop_or_the_target_changes() {
    // A/key.pub -> B/link.pub -> ../C/key.pub (relative), three folders.
    let root = tempfile::tempdir().expect("root");
    let [a, b, c] = ["A", "B", "C"].map(|name| {
        let dir = root.path().join(name);
        fs::create_dir(&dir).expect("folder");
        dir
    });
    let target = c.join("key.pub");
    fs::write(&target, pool(0).public_pem()).expect("key");
    std::os::unix::fs::symlink("../C/key.pub", b.join("link.pub")).expect("B link");
    let link = a.join("key.pub");
    std::os::unix::fs::symlink(b.join("link.pub"), &link).expect("A link");
    let config = a.join("config.yaml");
    fs::write(&config, config_text(&[("u", &link)])).expect("config");
    let auth = build(&config);
    assert_accepts(&auth, pool(0), "u");

    // The final target changes.
    let cached = token(pool(0), "u");
    save_by_rename(&target, pool(1).public_pem());
    wait_generation(&auth, 2);
    assert_rotated(&auth, "u", pool(0), pool(1), &cached);

    // The middle link is pointed at another file in C.
    fs::write(c.join("other.pub"), pool(2).public_pem()).expect("other key");
    let cached = token(pool(1), "u");
    let tmp = b.join(".link.tmp");
    std::os::unix::fs::symlink("../C/other.pub", &tmp).expect("new link");
    fs::rename(&tmp, b.join("link.pub")).expect("swap the middle link");
    wait_generation(&auth, 3);
    assert_rotated(&auth, "u", pool(1), pool(2), &cached);

    // And the new target changes.
    let cached = token(pool(2), "u");
    save_by_rename(&c.join("other.pub"), pool(3).public_pem());
    wait_generation(&auth, 4);
    assert_rotated(&auth, "u", pool(2), pool(3), &cached);
}

#[test]
fn a_config_file_linking_into_another_folder_is_reloaded_when_its_target_changes() {
    let a = tempfile::tempdir().expect("A");
    let b = tempfile::tempdir().expect("B");
    let keys: Vec<PathBuf> = (0..=3)
        .map(|i| {
            let path = a.path().join(format!("k{i}.pub"));
            fs::write(&path, pool(i).public_pem()).expect("key");
            path
        })
        .collect();
    let target = b.path().join("config.yaml");
    fs::write(&target, config_text(&[("u", &keys[0])])).expect("config");
    let link = a.path().join("config.yaml");
    std::os::unix::fs::symlink(&target, &link).expect("link");
    let auth = build(&link);
    for (round, key) in keys.iter().enumerate().skip(1) {
        let (old, new) = (pool(round - 1), pool(round));
        let cached = token(old, "u");
        auth.verify(&cached).expect("cached");
        write_config(&target, &[("u", key)]);
        wait_generation(&auth, 1 + round as u64);
        assert_rotated(&auth, "u", old, new, &cached);
    }
}

// ---------------------------------------------------------------------------
// A folder that cannot be watched is polled, and retried
// ---------------------------------------------------------------------------

/// How a test's watch hook treats the folder it refuses.
const ACCEPT: u8 = 0;
const REFUSE: u8 = 1;
const PANIC_ONCE: u8 = 2;

/// A watch hook that treats `folder` as `mode` says (other folders are accepted):
/// refused with an error, or one panic (then accepted).
fn folder_hook(
    folder: &Path,
    mode: &Arc<std::sync::atomic::AtomicU8>,
) -> impl Fn(&Path) -> std::io::Result<()> + Send + Sync + 'static {
    let folder = fs::canonicalize(folder).expect("canonical folder");
    let mode = mode.clone();
    move |dir: &Path| {
        if dir != folder {
            return Ok(());
        }
        match mode.load(Ordering::SeqCst) {
            REFUSE => Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "refused by the test's watch hook",
            )),
            PANIC_ONCE => {
                mode.store(ACCEPT, Ordering::SeqCst);
                panic!("the test's watch hook panics on {}", folder.display());
            }
            _ => Ok(()),
        }
    }
}

fn folder_state(status: &Status, folder: &Path) -> Option<FolderWatch> {
    let folder = fs::canonicalize(folder).expect("canonical folder");
    status
        .folders
        .iter()
        .find(|f| f.path == folder)
        .map(|f| f.watch.clone())
}

fn is_polled(status: &Status, folder: &Path) -> bool {
    matches!(
        folder_state(status, folder),
        Some(FolderWatch::Polled { .. })
    )
}

/// Waits at most `limit` for `cond`, and says how long it took.
fn within(auth: &SystemAuth, limit: Duration, what: &str, cond: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    wait_for(auth, what, &cond);
    let took = started.elapsed();
    assert!(took <= limit, "{what} took {took:?}, more than {limit:?}");
    took
}

#[test]
fn a_folder_whose_watch_fails_is_polled_retried_and_its_changes_applied() {
    let _log = capture_logs();
    // The config and both keys live in `etc`, whose watch the hook refuses.
    let dir = tempfile::tempdir().expect("temp dir");
    let etc = dir.path().join("etc");
    fs::create_dir(&etc).expect("etc");
    let (a_path, b_path) = (etc.join("a.pub"), etc.join("b.pub"));
    fs::write(&a_path, pool(0).public_pem()).expect("a");
    fs::write(&b_path, pool(1).public_pem()).expect("b");
    let config = etc.join("config.yaml");
    fs::write(&config, config_text(&[("a", &a_path), ("b", &b_path)])).expect("config");
    let mode = Arc::new(std::sync::atomic::AtomicU8::new(REFUSE));
    let auth = SystemAuth::builder()
        .config_file(&config)
        .watch_hook(folder_hook(&etc, &mode))
        .build()
        .expect("build");
    let status = auth.status();
    assert_eq!(status.watching, WatchMode::Events);
    match folder_state(&status, &etc) {
        Some(FolderWatch::Polled { reason }) => {
            assert!(
                reason.contains("refused by the test's watch hook"),
                "{reason}"
            )
        }
        other => panic!("etc should be polled: {other:?}; {status:#?}"),
    }

    // A replaced key is in effect within about two seconds (no event comes).
    let cached = token(pool(0), "a");
    auth.verify(&cached).expect("cached");
    save_by_rename(&a_path, pool(2).public_pem());
    within(&auth, Duration::from_secs(5), "the new key of a", || {
        auth.generation() >= 2
    });
    assert_rotated(&auth, "a", pool(0), pool(2), &cached);

    // A removed user too.
    let cached = token(pool(1), "b");
    auth.verify(&cached).expect("cached");
    write_config(&config, &[("a", &a_path)]);
    within(&auth, Duration::from_secs(5), "b's removal", || {
        auth.generation() >= 3
    });
    assert_eq!(auth.verify(&cached).err(), Some(AuthError::UnknownUser));
    assert_refuses(&auth, pool(1), "b", AuthError::UnknownUser);
    assert!(is_polled(&auth.status(), &etc), "{:#?}", auth.status());
    // Nothing changed: the polled files are compared, not reloaded.
    assert_quiet(&auth, "polled with nothing changed");

    // Warned once, naming the folder, although the watch was tried every second.
    let shown = fs::canonicalize(&etc)
        .expect("canonical")
        .display()
        .to_string();
    let warnings = || {
        log_lines(&shown)
            .iter()
            .filter(|l| l.contains("WARN") && l.contains("cannot watch"))
            .count()
    };
    assert_eq!(warnings(), 1, "{:#?}", log_lines(&shown));

    // The watch succeeds again: events from then on.
    mode.store(ACCEPT, Ordering::SeqCst);
    within(
        &auth,
        Duration::from_secs(5),
        "etc watched by events",
        || folder_state(&auth.status(), &etc) == Some(FolderWatch::Events),
    );
    let cached = token(pool(2), "a");
    auth.verify(&cached).expect("cached");
    let generation = auth.generation();
    save_by_rename(&a_path, pool(3).public_pem());
    wait_generation(&auth, generation + 1);
    assert_rotated(&auth, "a", pool(2), pool(3), &cached);
    assert_eq!(warnings(), 1);
    assert_eq!(auth.status().reload_thread_panics, 0);
}

#[test]
fn a_key_folder_whose_watch_fails_beside_a_watched_config_folder_is_polled() {
    // The config's folder is watched by events, the key's folder is refused.
    let s = Single::new();
    let keys = s.key_path.parent().expect("keys").to_path_buf();
    let mode = Arc::new(std::sync::atomic::AtomicU8::new(REFUSE));
    let auth = SystemAuth::builder()
        .config_file(&s.config)
        .watch_hook(folder_hook(&keys, &mode))
        .build()
        .expect("build");
    let status = auth.status();
    assert!(is_polled(&status, &keys), "{status:#?}");
    assert_eq!(
        folder_state(&status, s.dir.path()),
        Some(FolderWatch::Events),
        "{status:#?}"
    );
    for round in 1..=3 {
        let (old, new) = (pool(round - 1), pool(round));
        let cached = token(old, "u");
        auth.verify(&cached).expect("cached");
        save_by_rename(&s.key_path, new.public_pem());
        within(&auth, Duration::from_secs(5), "the new key", || {
            auth.generation() > round as u64
        });
        assert_rotated(&auth, "u", old, new, &cached);
    }
}

// ---------------------------------------------------------------------------
// The reload thread is supervised
// ---------------------------------------------------------------------------

#[test]
fn a_panic_in_the_reload_thread_is_caught_counted_and_the_thread_goes_on() {
    let _log = capture_logs();
    let s = Single::new();
    let keys = s.key_path.parent().expect("keys").to_path_buf();
    // Both hooks' panic messages name this test's folder, so its log lines are
    // told from other tests' in the shared capture.
    let shown = fs::canonicalize(s.dir.path())
        .expect("canonical")
        .display()
        .to_string();
    let mode = Arc::new(std::sync::atomic::AtomicU8::new(REFUSE));
    let panic_in_reload = Arc::new(AtomicBool::new(false));
    let auth = SystemAuth::builder()
        .config_file(&s.config)
        .watch_hook(folder_hook(&keys, &mode))
        .reload_hook({
            let (panic_in_reload, shown) = (panic_in_reload.clone(), shown.clone());
            move || {
                if panic_in_reload.swap(false, Ordering::SeqCst) {
                    panic!("the test's reload hook panics in {shown}");
                }
            }
        })
        .build()
        .expect("build");
    assert!(is_polled(&auth.status(), &keys));

    // 1. A panic while the watch of the polled folder is tried again.
    mode.store(PANIC_ONCE, Ordering::SeqCst);
    wait_for(&auth, "the panic to be counted", || {
        auth.status().reload_thread_panics == 1
    });
    // The thread goes on: the watch is tried again and succeeds, and a change is
    // picked up by events.
    wait_for(&auth, "keys watched by events", || {
        folder_state(&auth.status(), &keys) == Some(FolderWatch::Events)
    });
    let cached = token(pool(0), "u");
    auth.verify(&cached).expect("cached");
    let generation = auth.generation();
    save_by_rename(&s.key_path, pool(1).public_pem());
    wait_generation(&auth, generation + 1);
    assert_rotated(&auth, "u", pool(0), pool(1), &cached);

    // 2. A panic inside a reload, with the reload lock held: counted, and the
    // change it was reading is applied at the next check all the same.
    let generation = auth.generation();
    panic_in_reload.store(true, Ordering::SeqCst);
    save_by_rename(&s.key_path, pool(2).public_pem());
    wait_for(&auth, "the second panic to be counted", || {
        auth.status().reload_thread_panics == 2
    });
    wait_generation(&auth, generation + 1);
    assert_accepts(&auth, pool(2), "u");
    // Nothing is poisoned: reload() and later changes work.
    let report = auth.reload().expect("reload after a panic");
    assert_eq!(report.generation, generation + 1);
    save_by_rename(&s.key_path, pool(3).public_pem());
    wait_generation(&auth, generation + 2);
    assert_accepts(&auth, pool(3), "u");
    assert_eq!(auth.status().reload_thread_panics, 2);
    // Both panics are logged as errors (each names a folder of this test).
    let errors: Vec<String> = log_lines("reload thread panicked")
        .into_iter()
        .filter(|l| l.contains("ERROR") && l.contains(&shown))
        .collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

#[test]
fn durations_past_the_limits_are_refused_by_build() {
    let s = Single::new();
    let day = Duration::from_secs(24 * 60 * 60);
    for (builder, setting) in [
        (SystemAuth::builder().debounce(Duration::MAX), "debounce"),
        (
            SystemAuth::builder().debounce(Duration::from_secs(61)),
            "debounce",
        ),
        (
            SystemAuth::builder().poll_interval(Duration::MAX),
            "poll_interval",
        ),
        (
            SystemAuth::builder().poll_interval(day + Duration::from_secs(1)),
            "poll_interval",
        ),
    ] {
        match builder.config_file(&s.config).build() {
            Err(zitadel_system_auth::ConfigError::InvalidSetting(message)) => {
                assert!(message.starts_with(setting), "{message}")
            }
            other => panic!("{setting}: expected InvalidSetting, got {other:?}"),
        }
    }
}

#[test]
fn the_longest_accepted_durations_leave_a_working_reload_thread() {
    // poll_interval of one day: polled, reload() works, the thread does not die.
    let s = Single::new();
    let day = Duration::from_secs(24 * 60 * 60);
    let polling = SystemAuth::builder()
        .config_file(&s.config)
        .poll_interval(day)
        .build()
        .expect("one day is accepted");
    let status = polling.status();
    assert_eq!(status.watching, WatchMode::Polling(day));
    assert!(is_polled(&status, s.dir.path()), "{status:#?}");

    // debounce of one minute, with the key's folder polled: a burst of events in
    // the config's folder is pending, and the polled key is still applied.
    let keys = s.key_path.parent().expect("keys").to_path_buf();
    let mode = Arc::new(std::sync::atomic::AtomicU8::new(REFUSE));
    let slow = SystemAuth::builder()
        .config_file(&s.config)
        .debounce(Duration::from_secs(60))
        .watch_hook(folder_hook(&keys, &mode))
        .build()
        .expect("one minute is accepted");
    fs::write(s.dir.path().join("unrelated"), "x").expect("an event");
    let cached = token(pool(0), "u");
    slow.verify(&cached).expect("cached");
    save_by_rename(&s.key_path, pool(1).public_pem());
    within(&slow, Duration::from_secs(5), "the polled key", || {
        slow.generation() == 2
    });
    assert_rotated(&slow, "u", pool(0), pool(1), &cached);

    let report = polling.reload().expect("reload");
    assert_eq!(report.generation, 2);
    assert_eq!(polling.status().reload_thread_panics, 0);
    assert_eq!(slow.status().reload_thread_panics, 0);
}

// ---------------------------------------------------------------------------
// status() never waits for a reload in progress
// ---------------------------------------------------------------------------

#[test]
fn status_does_not_wait_for_a_reload_in_progress() {
    let s = Single::new();
    let hold = Arc::new(AtomicBool::new(false));
    let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (entered_tx, released) = (Mutex::new(entered_tx), Mutex::new(released));
    let auth = SystemAuth::builder()
        .config_file(&s.config)
        .watch(false)
        .reload_hook({
            let hold = hold.clone();
            move || {
                if hold.swap(false, Ordering::SeqCst) {
                    let _ = entered_tx.lock().expect("lock").send(());
                    let _ = released.lock().expect("lock").recv_timeout(TIMEOUT * 3);
                }
            }
        })
        .build()
        .expect("build");
    save_by_rename(&s.key_path, pool(1).public_pem());
    hold.store(true, Ordering::SeqCst);
    let reloading = {
        let auth = auth.clone();
        std::thread::spawn(move || auth.reload())
    };
    entered
        .recv_timeout(TIMEOUT)
        .expect("the reload started and is held");
    let status = {
        let auth = auth.clone();
        within_timeout("status() during a reload", move || auth.status())
    };
    assert_eq!(status.generation, 1);
    assert_eq!(status.last_outcome, ReloadOutcome::Initial);
    assert_accepts(&auth, pool(0), "u");
    release.send(()).expect("release");
    let report = reloading.join().expect("reload thread").expect("reload");
    assert_eq!((report.generation, report.changed), (2, true));
    let status = auth.status();
    assert_eq!(status.generation, 2);
    assert_eq!(status.last_outcome, ReloadOutcome::Changed);
}
