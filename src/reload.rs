//! Hot reload: the config file and every key file are watched, and a change
//! rebuilds the whole registry off the request path and swaps it in at once.
//!
//! What is watched: the folder of the config file and the folder of every key
//! `Path` (a folder, not the file, because editors, `mv`, and Kubernetes volume
//! updates replace files, and a watch on a file follows the old one). Any change in
//! those folders, after a quiet period (the debounce), re-reads everything and
//! compares it with what is loaded: the registry is only swapped, and its generation
//! only counted up, when a key, a user or a membership really changed. Reading files
//! causes no reload. A folder that is removed is watched again through its parent
//! until it comes back; every second the watched folders are checked, so a folder
//! replaced behind the watcher's back is picked up too.
//!
//! Where the watcher cannot start (inotify limits), or where
//! [`SystemAuthBuilder::poll_interval`](crate::SystemAuthBuilder::poll_interval) asks
//! for it (network file systems give no events), the files are read every interval
//! and compared instead.
//!
//! A change that does not load keeps what was loaded: a bad config keeps the whole old
//! registry; a bad key file keeps that user's last good key (and does not hold back
//! other users' changes). The failure is logged once per change, with the path and
//! the reason, and tried again on the next change.
//! [`SystemAuth::status`](crate::SystemAuth::status) shows the state.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    sync::{Weak, mpsc},
    time::{Duration, Instant, SystemTime},
};

use notify::{
    Event, EventKind, RecursiveMode, Watcher as _,
    event::{AccessKind, AccessMode},
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
    /// File system events (inotify on Linux).
    Events,
    /// The files are read at this interval and compared.
    Polling(Duration),
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
    /// How changes are noticed.
    pub watching: WatchMode,
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
    /// The certificate's NotAfter, when the key came in a certificate.
    pub not_after: Option<SystemTime>,
}

/// What the watcher thread needs from the thing it reloads.
pub(crate) trait Reloadable: Send + Sync + 'static {
    /// Reloads after a file change; failures are logged by the callee.
    fn reload_after_change(&self);
    /// The files whose change can change the registry.
    fn watched_files(&self) -> Vec<PathBuf>;
}

/// Timing of the watcher.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WatchSettings {
    /// The quiet period that ends a burst of events.
    pub debounce: Duration,
    /// Poll instead of watching, at this interval.
    pub poll_interval: Option<Duration>,
}

/// How often the watched folders are checked, and the poll interval when the
/// watcher cannot start.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Starts watching `files` (before it returns, so no change after it is missed) and
/// the thread that reloads `target`; the thread ends when `target` is dropped.
pub(crate) fn spawn<T: Reloadable>(
    target: Weak<T>,
    files: &[PathBuf],
    settings: WatchSettings,
) -> std::io::Result<WatchMode> {
    let (events_tx, events) = mpsc::channel::<notify::Result<Event>>();
    let mut watcher = match settings.poll_interval {
        Some(_) => None,
        None => match new_watcher(&events_tx) {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(
                    target: "zitadel_system_auth",
                    "cannot watch the key files ({error}); reading and comparing them every {:?} instead",
                    CHECK_INTERVAL
                );
                None
            }
        },
    };
    let interval = settings.poll_interval.unwrap_or(CHECK_INTERVAL);
    let mut armed = Vec::new();
    let mut digest = 0;
    let mode = match watcher.as_mut() {
        Some(watcher) => {
            arm(watcher, &events_tx, &mut armed, files, false);
            WatchMode::Events
        }
        None => {
            digest = content_digest(files);
            WatchMode::Polling(interval)
        }
    };
    let state = WatchState {
        watcher,
        events,
        events_tx,
        armed,
        digest,
        interval,
        debounce: settings.debounce,
    };
    std::thread::Builder::new()
        .name("zitadel-system-auth-reload".to_owned())
        .spawn(move || run(target, state))?;
    Ok(mode)
}

/// What the watcher thread keeps between events.
struct WatchState {
    watcher: Option<notify::RecommendedWatcher>,
    events: mpsc::Receiver<notify::Result<Event>>,
    /// For new watchers; also keeps the channel open when there is none, so
    /// waiting on it times out.
    events_tx: mpsc::Sender<notify::Result<Event>>,
    armed: Vec<Armed>,
    digest: u64,
    interval: Duration,
    debounce: Duration,
}

fn run<T: Reloadable>(target: Weak<T>, state: WatchState) {
    let WatchState {
        mut watcher,
        events,
        events_tx,
        mut armed,
        mut digest,
        interval,
        debounce,
    } = state;
    let mut burst: Option<(Instant, Instant)> = None; // (first event, last event)
    // A watched folder was removed or renamed: its watch is gone even if a new
    // folder with the same inode number takes its place.
    let mut stale = false;
    let mut next_check = Instant::now() + interval;
    loop {
        let burst_end = |(first, last): (Instant, Instant)| {
            // Quiet for `debounce`, or at the latest ten of them after the first event.
            (last + debounce).min(first + debounce * 10)
        };
        let deadline = burst.map_or(next_check, burst_end);
        match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(result) => {
                let relevant = match result {
                    Ok(event) => {
                        stale |= removes_a_watched_folder(&event, &armed);
                        is_relevant(&event)
                    }
                    Err(error) => {
                        // An overflowed or broken watch: read everything again.
                        tracing::debug!(target: "zitadel_system_auth", "file watcher: {error}");
                        true
                    }
                };
                tracing::trace!(target: "zitadel_system_auth", relevant, "file event");
                if relevant {
                    let now = Instant::now();
                    burst = Some(burst.map_or((now, now), |(first, _)| (first, now)));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let Some(target) = target.upgrade() else {
            return;
        };
        let now = Instant::now();
        let burst_over = burst.is_some_and(|burst| now >= burst_end(burst));
        if burst_over {
            burst = None;
            target.reload_after_change();
            if let Some(watcher) = watcher.as_mut() {
                // The set of files may have changed; anything written before the new
                // watches were armed is caught by reading once more.
                let renew = std::mem::take(&mut stale);
                if arm(
                    watcher,
                    &events_tx,
                    &mut armed,
                    &target.watched_files(),
                    renew,
                ) {
                    target.reload_after_change();
                }
            }
        }
        if now >= next_check {
            next_check = now + interval;
            let files = target.watched_files();
            match watcher.as_mut() {
                Some(watcher) => {
                    if arm(watcher, &events_tx, &mut armed, &files, false) {
                        target.reload_after_change();
                    }
                }
                None => {
                    let current = content_digest(&files);
                    if current != digest {
                        digest = current;
                        target.reload_after_change();
                    }
                }
            }
        }
    }
}

/// Whether the event says a watched folder itself was removed or moved away.
fn removes_a_watched_folder(event: &Event, armed: &[Armed]) -> bool {
    matches!(
        event.kind,
        EventKind::Remove(_) | EventKind::Modify(notify::event::ModifyKind::Name(_))
    ) && event
        .paths
        .iter()
        .any(|path| armed.iter().any(|a| &a.dir == path))
}

/// Whether an event can mean a change: reads (ours included) cannot.
fn is_relevant(event: &Event) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// A watched folder and the identity it had when the watch was made.
#[derive(Debug, PartialEq, Eq)]
struct Armed {
    dir: PathBuf,
    identity: Option<(u64, u64)>,
}

fn new_watcher(
    events: &mpsc::Sender<notify::Result<Event>>,
) -> notify::Result<notify::RecommendedWatcher> {
    let events = events.clone();
    notify::recommended_watcher(move |event| {
        let _ = events.send(event);
    })
}

/// Watches the folders `files` live in (or, for a missing folder, its nearest
/// existing ancestor). Returns whether the set of folders, or one of them, changed,
/// or `renew` asked for new watches.
///
/// A changed set gets a new watcher: the old one may still hold the watch of a
/// removed folder under the same path, and drop the new watch when it learns of
/// the removal.
fn arm(
    watcher: &mut notify::RecommendedWatcher,
    events: &mpsc::Sender<notify::Result<Event>>,
    armed: &mut Vec<Armed>,
    files: &[PathBuf],
    renew: bool,
) -> bool {
    let parents: std::collections::BTreeSet<&Path> = files
        .iter()
        .map(|f| f.parent().unwrap_or(Path::new("")))
        .collect();
    let dirs: std::collections::BTreeSet<PathBuf> =
        parents.into_iter().map(existing_folder).collect();
    let wanted: Vec<Armed> = dirs
        .into_iter()
        .map(|dir| {
            let identity = identity(&dir);
            Armed { dir, identity }
        })
        .collect();
    if wanted == *armed && !renew {
        return false;
    }
    if !armed.is_empty() || renew {
        match new_watcher(events) {
            Ok(fresh) => *watcher = fresh,
            Err(error) => tracing::warn!(
                target: "zitadel_system_auth",
                "cannot renew the file watcher ({error}); keeping the old one"
            ),
        }
    }
    for new in &wanted {
        if let Err(error) = watcher.watch(&new.dir, RecursiveMode::NonRecursive) {
            tracing::warn!(
                target: "zitadel_system_auth",
                "cannot watch {}: {error}; it is checked again every {:?}",
                new.dir.display(),
                CHECK_INTERVAL
            );
        }
    }
    *armed = wanted;
    true
}

/// The folder, or its nearest ancestor that exists ("" is the current folder).
fn existing_folder(folder: &Path) -> PathBuf {
    let mut dir = if folder.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        folder.to_path_buf()
    };
    while !dir.is_dir() {
        match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => dir = parent.to_path_buf(),
            _ => return PathBuf::from("."),
        }
    }
    dir
}

#[cfg(unix)]
fn identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(dir: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(dir).ok().map(|_| (0, 0))
}

/// A hash of every file's content (or of why it could not be read).
fn content_digest(files: &[PathBuf]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.hash(&mut hasher);
        match crate::config::read_file(file, crate::config::MAX_CONFIG_BYTES) {
            Ok(bytes) => bytes.hash(&mut hasher),
            Err(error) => error.kind().hash(&mut hasher),
        }
    }
    hasher.finish()
}
