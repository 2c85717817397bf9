//! Hot reload: the config file and every key file are watched, and a change
//! rebuilds the whole registry off the request path and swaps it in at once.
//!
//! What is watched: the folder of the config file and the folder of every key
//! `Path` (a folder, not the file, because editors, `mv`, and Kubernetes volume
//! updates replace files, and a watch on a file follows the old one). When such a
//! path is a symbolic link, the folder of every link in its chain and of the final
//! target is watched as well, so a key that links into another folder is reloaded
//! when its target changes. Any change in those folders, after a quiet period (the
//! debounce), re-reads everything and compares it with what is loaded: the registry
//! is only swapped, and its generation only counted up, when a key, a user or a
//! membership really changed. Reading files causes no reload. A folder that is
//! removed is watched again through its parent until it comes back; every second
//! the watched folders are checked, so a folder replaced behind the watcher's back
//! is picked up too.
//!
//! A folder that cannot be watched (inotify limits, a folder the process may
//! traverse but not read, any other error of the watcher) is polled instead: at
//! every check (every second) its watch is tried again, and until it succeeds the
//! files that depend on it are read and compared, so a change there is in effect
//! within about two seconds all the same. A WARN names the folder and the reason
//! when it starts being polled, an INFO when it is watched again, and
//! [`Status::folders`] shows each folder's state. Where the watcher cannot start at
//! all, every folder is polled that way (and the watcher is tried again every
//! second); where [`SystemAuthBuilder::poll_interval`](crate::SystemAuthBuilder::poll_interval)
//! asks for it (network file systems give no events), the files are read every
//! interval and compared instead of being watched.
//!
//! A change that does not load keeps what was loaded: a bad config keeps the whole old
//! registry; a bad key file keeps that user's last good key (and does not hold back
//! other users' changes). The failure is logged once per change, with the path and
//! the reason, and tried again on the next change. Files are opened without
//! blocking and must be regular files of bounded size, so no file (a FIFO, a
//! device) can hang a reload.
//!
//! The reload thread is supervised: a panic inside it is caught, logged at ERROR,
//! counted ([`Status::reload_thread_panics`] and the metric
//! `zitadel_system_auth_reload_thread_panics_total`), and the thread goes on, with
//! its watches made anew and everything read again at the next check.
//! [`SystemAuth::status`](crate::SystemAuth::status) shows the state; it never
//! waits for a reload in progress.
//!
//! Holds loading, reloading, watching and the status; what a file means is
//! `config`'s and `key`'s, what a generation holds is `registry`'s.

mod state;
mod watch;

pub(crate) use state::{ReloadHook, Reloader};

use crate::key::KeyFormat;
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Weak},
    time::{Duration, SystemTime},
};

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// The registry generation after the reload.
    pub generation: u64,
    /// Whether a new registry was swapped in (a key, user or membership changed).
    pub changed: bool,
    /// Users whose key could not be loaded; each keeps its last good key, and a
    /// new user with a bad key is left out. Empty when everything loaded.
    pub problems: Vec<String>,
}

/// How the last reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadOutcome {
    /// Only the initial load has happened.
    Initial,
    /// A new registry was swapped in.
    Changed,
    /// Everything was read again and nothing had changed.
    Unchanged,
    /// Some users' keys could not be loaded and kept their last good key; the
    /// rest was loaded.
    Partial,
    /// The configuration could not be loaded; the old registry stays whole.
    Failed,
}

/// How file changes are noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchMode {
    /// Not watched: the configuration came as text with no key files, or watching
    /// was turned off. [`SystemAuth::reload`](crate::SystemAuth::reload) still works.
    Off,
    /// File system events (inotify on Linux). A folder whose watch could not be
    /// added is polled meanwhile: [`Status::folders`] says which, and why.
    Events,
    /// The files are read at this interval and compared: asked for with
    /// [`poll_interval`](crate::SystemAuthBuilder::poll_interval), or every second
    /// when the watcher cannot start (it is tried again at every check).
    Polling(Duration),
}

/// How changes in one watched folder are noticed, in [`Status::folders`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderStatus {
    /// The folder, with symbolic links resolved (for a folder that does not
    /// exist, its nearest existing ancestor).
    pub path: PathBuf,
    /// Watched by events, or polled and why.
    pub watch: FolderWatch,
}

/// Whether a folder is watched by events or polled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FolderWatch {
    /// File system events report its changes.
    Events,
    /// The files that depend on it are read and compared at every check (every
    /// second, or at the poll interval): its watch could not be added, or polling
    /// was asked for. A failed watch is tried again at every check.
    Polled {
        /// Why it is polled (the watcher's error, without file contents).
        reason: String,
    },
}

/// The state of the key registry, from [`SystemAuth::status`](crate::SystemAuth::status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Counts up by one with every registry swapped in (1 after build).
    pub generation: u64,
    /// When the last reload finished (the build, at first).
    pub last_reload: SystemTime,
    /// How it ended.
    pub last_outcome: ReloadOutcome,
    /// The last reload's error or problems, if it had any.
    pub last_error: Option<String>,
    /// How changes are noticed, overall; [`folders`](Self::folders) gives the
    /// detail (with [`WatchMode::Events`], some folders may be polled).
    pub watching: WatchMode,
    /// Every watched folder and how it is watched, sorted by path (empty when
    /// nothing is watched).
    pub folders: Vec<FolderStatus>,
    /// How many times the reload thread panicked; each panic was caught, logged at
    /// ERROR, and the thread went on.
    pub reload_thread_panics: u64,
    /// The audiences tokens must carry now, the external URL first (read again at
    /// every reload unless the builder fixed the audience).
    pub audiences: Vec<String>,
    /// The users, sorted by id.
    pub users: Vec<UserStatus>,
    /// How many verified tokens are cached for this generation.
    pub cached_tokens: usize,
}

/// One user in [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserStatus {
    /// The user id.
    pub user_id: String,
    /// SHA-256 of the key's SubjectPublicKeyInfo, in hex.
    pub fingerprint: String,
    /// The certificate's NotBefore, when the key came in a certificate.
    pub not_before: Option<SystemTime>,
    /// The certificate's NotAfter, when the key came in a certificate.
    pub not_after: Option<SystemTime>,
    /// The RSA modulus size in bits.
    pub bits: usize,
    /// What the key file held; [`KeyFormat::Pkcs1`] is a key ZITADEL itself cannot
    /// read (a warning at load says how to convert it).
    pub key_format: KeyFormat,
}

/// What the watcher thread needs from the thing it reloads.
pub(crate) trait Reloadable: Send + Sync + 'static {
    /// Reloads after a file change; failures are logged by the callee.
    fn reload_after_change(&self);
    /// The files whose change can change the registry (never waits for a reload).
    fn watched_files(&self) -> Vec<PathBuf>;
    /// Publishes how the files are watched now, for the status.
    fn publish_watch(&self, watching: WatchMode, folders: Vec<FolderStatus>);
    /// Counts a panic caught in the reload thread.
    fn reload_thread_panicked(&self);
}

/// Called before each watch of a folder (tests only): `Err` makes that watch fail.
pub(crate) type WatchHook = Arc<dyn Fn(&Path) -> std::io::Result<()> + Send + Sync>;

/// Timing of the watcher.
#[derive(Clone)]
pub(crate) struct WatchSettings {
    /// The quiet period that ends a burst of events.
    pub debounce: Duration,
    /// Poll instead of watching, at this interval.
    pub poll_interval: Option<Duration>,
    /// See [`WatchHook`].
    pub watch_hook: Option<WatchHook>,
}

/// The longest debounce the builder accepts: a burst ends at the latest ten of
/// them after its first event, and a removed user must not stay for long.
pub(crate) const MAX_DEBOUNCE: Duration = Duration::from_secs(60);
/// The longest poll interval the builder accepts.
pub(crate) const MAX_POLL_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// How often the watched folders are checked (and polled folders read), and the
/// longest the thread sleeps.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Starts watching the files of `target` (before it returns, so no change after it
/// is missed) and the thread that reloads it; the thread ends when `target` is
/// dropped.
pub(crate) fn spawn<T: Reloadable>(
    target: &Arc<T>,
    settings: WatchSettings,
) -> std::io::Result<()> {
    let mut watch = watch::Watch::new(settings);
    let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        watch.start(&**target);
    }));
    if let Err(panic) = started {
        watch.recover(&**target, &*panic);
    }
    let target: Weak<T> = Arc::downgrade(target);
    std::thread::Builder::new()
        .name("zitadel-system-auth-reload".to_owned())
        .spawn(move || supervise(target, watch))?;
    Ok(())
}

/// Runs the watcher until `target` is dropped, catching every panic: one is
/// logged, counted, and the thread goes on.
fn supervise<T: Reloadable>(target: Weak<T>, mut watch: watch::Watch) {
    loop {
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| watch.step(&target)));
        match step {
            Ok(true) => {}
            Ok(false) => return,
            Err(panic) => match target.upgrade() {
                Some(target) => watch.recover(&*target, &*panic),
                None => return,
            },
        }
    }
}

/// The text of a panic's payload, for the log.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}
