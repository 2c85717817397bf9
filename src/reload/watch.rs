//! The reload thread's state: which folders are watched, by events or polled, the
//! burst of events in progress, and when the next check is due.
//!
//! Holds the watching only: what a reload does is `state`'s.

use std::{
    collections::{BTreeMap, BTreeSet, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    sync::{Weak, mpsc},
    time::{Duration, Instant},
};

use notify::{
    Event, EventKind, RecursiveMode, Watcher as _,
    event::{AccessKind, AccessMode},
};

use super::{
    CHECK_INTERVAL, FolderStatus, FolderWatch, Reloadable, WatchMode, WatchSettings, panic_message,
};

/// The most symbolic links followed from one watched file (Linux's own limit).
const MAX_LINK_HOPS: usize = 40;

/// Why the folders are polled when the builder asked for polling.
const POLLING_ASKED: &str = "polling was asked for (poll_interval)";

type Events = notify::Result<Event>;

/// What the reload thread keeps between two wake-ups.
pub(super) struct Watch {
    settings: WatchSettings,
    /// `None` when polling was asked for, or when the watcher cannot start.
    watcher: Option<notify::RecommendedWatcher>,
    /// Why the watcher cannot start, while it cannot.
    no_watcher: Option<String>,
    events: mpsc::Receiver<Events>,
    /// For new watchers; also keeps the channel open when there is none.
    events_tx: mpsc::Sender<Events>,
    /// The wanted folders as last armed, sorted by path.
    armed: Vec<Armed>,
    /// The content digest of the files that depend on a polled folder (of every
    /// file when polling was asked for); `None` when nothing is polled.
    digest: Option<u64>,
    /// (first event, last event) of the burst in progress.
    burst: Option<(Instant, Instant)>,
    /// A watched folder was removed or renamed: its watch is gone even if a new
    /// folder with the same inode number takes its place.
    stale: bool,
    /// After a panic: a new watcher and new watches, and everything read again.
    rearm: bool,
    /// When the next check is due; `None` is never.
    next_check: Option<Instant>,
    /// What was published last.
    published: Option<(WatchMode, Vec<FolderStatus>)>,
}

/// A watched folder, the identity it had when the watch was made, and how it is
/// watched.
#[derive(Debug)]
struct Armed {
    dir: PathBuf,
    identity: Option<(u64, u64)>,
    watch: FolderWatch,
}

/// The folders that a set of files depends on.
struct Plan {
    /// Every folder, sorted.
    folders: BTreeSet<PathBuf>,
    /// Each file with the folders it depends on.
    files: Vec<(PathBuf, Vec<PathBuf>)>,
}

impl Plan {
    fn of(files: &[PathBuf]) -> Plan {
        let files: Vec<(PathBuf, Vec<PathBuf>)> = files
            .iter()
            .map(|file| (file.clone(), chain_folders(file)))
            .collect();
        let folders = files
            .iter()
            .flat_map(|(_, folders)| folders.iter().cloned())
            .collect();
        Plan { folders, files }
    }
}

impl Watch {
    pub fn new(settings: WatchSettings) -> Watch {
        let (events_tx, events) = mpsc::channel();
        Watch {
            settings,
            watcher: None,
            no_watcher: None,
            events,
            events_tx,
            armed: Vec::new(),
            digest: None,
            burst: None,
            stale: false,
            rearm: false,
            next_check: None,
            published: None,
        }
    }

    fn polling_asked(&self) -> bool {
        self.settings.poll_interval.is_some()
    }

    fn check_interval(&self) -> Duration {
        self.settings.poll_interval.unwrap_or(CHECK_INTERVAL)
    }

    /// Arms the watches (or takes the first digest, when polling) and publishes how
    /// the files are watched. Runs on the builder's thread, before it returns.
    pub fn start(&mut self, target: &dyn Reloadable) {
        self.next_check = Instant::now().checked_add(self.check_interval());
        let plan = Plan::of(&target.watched_files());
        if !self.polling_asked() {
            self.start_watcher();
            self.arm(target, &plan, false);
        }
        self.digest = self.polled_digest(&plan);
        self.publish(target);
    }

    /// After a panic: logs it, counts it, and has the next check make new watches
    /// and read everything again.
    pub fn recover(&mut self, target: &dyn Reloadable, panic: &(dyn std::any::Any + Send)) {
        tracing::error!(
            target: "zitadel_system_auth",
            "the reload thread panicked ({}); it goes on, and watches and reads every file again at the next check",
            panic_message(panic)
        );
        target.reload_thread_panicked();
        self.rearm = true;
        self.digest = None;
        self.burst = None;
        if self.next_check.is_none() {
            self.next_check = Instant::now().checked_add(CHECK_INTERVAL);
        }
    }

    /// Waits for an event or the next deadline (a second at most) and acts on it.
    /// `false` when the thread should end (its target is gone).
    pub fn step<T: Reloadable>(&mut self, target: &Weak<T>) -> bool {
        let now = Instant::now();
        let deadline = earliest(self.next_check, self.burst.and_then(|b| self.burst_end(b)));
        let wait = deadline
            .map_or(CHECK_INTERVAL, |d| d.saturating_duration_since(now))
            .min(CHECK_INTERVAL);
        match self.events.recv_timeout(wait) {
            Ok(result) => self.on_event(result),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return false,
        }
        let Some(target) = target.upgrade() else {
            return false;
        };
        let target: &dyn Reloadable = &*target;
        let now = Instant::now();
        let burst_over = self
            .burst
            .and_then(|b| self.burst_end(b))
            .is_some_and(|end| now >= end);
        if burst_over {
            self.burst = None;
            self.reload(target);
            if !self.polling_asked() {
                // The set of files may have changed; anything written before the new
                // watches were armed is caught by reading once more.
                let renew = std::mem::take(&mut self.stale);
                let plan = Plan::of(&target.watched_files());
                if self.arm(target, &plan, renew) {
                    self.reload(target);
                }
            }
        }
        if self.next_check.is_some_and(|due| now >= due) {
            // Set first: a panic in the check must not make the next wake-up
            // check again at once.
            self.next_check = now.checked_add(self.check_interval());
            self.check(target);
        }
        true
    }

    /// A burst ends after `debounce` of quiet, or at the latest ten of them after
    /// its first event; `None` (never) only if that is past the clock's range.
    fn burst_end(&self, (first, last): (Instant, Instant)) -> Option<Instant> {
        let debounce = self.settings.debounce;
        earliest(
            last.checked_add(debounce),
            first.checked_add(debounce.saturating_mul(10)),
        )
    }

    fn on_event(&mut self, result: Events) {
        let relevant = match result {
            Ok(event) => {
                self.stale |= removes_a_watched_folder(&event, &self.armed);
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
            self.burst = Some(self.burst.map_or((now, now), |(first, _)| (first, now)));
        }
    }

    /// Reads everything again; the digest of the polled files is taken first, so
    /// a change after this read is seen at the next check.
    fn reload(&mut self, target: &dyn Reloadable) {
        let plan = Plan::of(&target.watched_files());
        self.digest = self.polled_digest(&plan);
        target.reload_after_change();
    }

    /// The check every second (or every poll interval): folders replaced, removed
    /// or added are watched anew, failed watches are tried again, and the files that
    /// depend on a polled folder are compared with what they were.
    fn check(&mut self, target: &dyn Reloadable) {
        let plan = Plan::of(&target.watched_files());
        if self.polling_asked() {
            self.publish(target);
        } else {
            let mut rearm = std::mem::take(&mut self.rearm);
            if self.watcher.is_none() && self.start_watcher() {
                rearm = true;
            }
            if self.arm(target, &plan, rearm) {
                self.reload(target);
                return;
            }
        }
        let digest = self.polled_digest(&plan);
        if digest != self.digest {
            self.digest = digest;
            target.reload_after_change();
        }
    }

    /// Creates the watcher; `true` when it now exists. A failure is logged once.
    fn start_watcher(&mut self) -> bool {
        match new_watcher(&self.events_tx) {
            Ok(watcher) => {
                if self.no_watcher.take().is_some() {
                    tracing::info!(target: "zitadel_system_auth", "the file watcher started");
                }
                self.watcher = Some(watcher);
                true
            }
            Err(error) => {
                let reason = format!("the file watcher cannot start: {}", watch_error(&error));
                if self.no_watcher.is_none() {
                    tracing::warn!(
                        target: "zitadel_system_auth",
                        "{reason}; reading and comparing the files every {CHECK_INTERVAL:?} instead"
                    );
                }
                self.no_watcher = Some(reason);
                false
            }
        }
    }

    /// Watches the folders of `plan`. Returns whether the set of folders, one of
    /// them, or how one is watched changed, or `renew` asked for new watches; then
    /// the caller reads everything again.
    ///
    /// A changed set gets a new watcher: the old one may still hold the watch of a
    /// removed folder under the same path, and drop the new watch when it learns of
    /// the removal. An unchanged set only has its polled folders tried again.
    fn arm(&mut self, target: &dyn Reloadable, plan: &Plan, renew: bool) -> bool {
        let wanted: Vec<(PathBuf, Option<(u64, u64)>)> = plan
            .folders
            .iter()
            .map(|dir| (dir.clone(), identity(dir)))
            .collect();
        let same = wanted.len() == self.armed.len()
            && wanted
                .iter()
                .zip(&self.armed)
                .all(|((dir, identity), armed)| *dir == armed.dir && *identity == armed.identity);
        if same && !renew {
            return self.retry_polled(target);
        }
        if self.watcher.is_some() && (!self.armed.is_empty() || renew) {
            match new_watcher(&self.events_tx) {
                Ok(fresh) => self.watcher = Some(fresh),
                Err(error) => tracing::warn!(
                    target: "zitadel_system_auth",
                    "cannot renew the file watcher ({}); keeping the old one",
                    watch_error(&error)
                ),
            }
        }
        let before: BTreeMap<PathBuf, FolderWatch> = std::mem::take(&mut self.armed)
            .into_iter()
            .map(|armed| (armed.dir, armed.watch))
            .collect();
        for (dir, identity) in wanted {
            let watch = self.add_watch(&dir);
            log_change(&dir, before.get(&dir), &watch);
            self.armed.push(Armed {
                dir,
                identity,
                watch,
            });
        }
        self.publish(target);
        true
    }

    /// Tries the watch of every polled folder again; `true` when one succeeded.
    fn retry_polled(&mut self, target: &dyn Reloadable) -> bool {
        let mut recovered = false;
        for i in 0..self.armed.len() {
            if self.armed[i].watch == FolderWatch::Events {
                continue;
            }
            let dir = self.armed[i].dir.clone();
            let watch = self.add_watch(&dir);
            let armed = &mut self.armed[i];
            log_change(&armed.dir, Some(&armed.watch), &watch);
            recovered |= watch == FolderWatch::Events;
            armed.watch = watch;
        }
        self.publish(target);
        recovered
    }

    /// Adds the watch of one folder, or says why it is polled instead.
    fn add_watch(&mut self, dir: &Path) -> FolderWatch {
        let Some(watcher) = self.watcher.as_mut() else {
            let reason = match &self.no_watcher {
                Some(reason) => reason.clone(),
                None => POLLING_ASKED.to_owned(),
            };
            return FolderWatch::Polled { reason };
        };
        if let Some(hook) = &self.settings.watch_hook
            && let Err(error) = hook(dir)
        {
            return FolderWatch::Polled {
                reason: error.to_string(),
            };
        }
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => FolderWatch::Events,
            Err(error) => FolderWatch::Polled {
                reason: watch_error(&error),
            },
        }
    }

    /// The digest of the files that depend on a polled folder (every file when
    /// polling was asked for), or `None` when no folder is polled.
    fn polled_digest(&self, plan: &Plan) -> Option<u64> {
        if self.polling_asked() {
            return Some(content_digest(plan.files.iter().map(|(file, _)| file)));
        }
        let polled: BTreeSet<&Path> = self
            .armed
            .iter()
            .filter(|armed| armed.watch != FolderWatch::Events)
            .map(|armed| armed.dir.as_path())
            .collect();
        if polled.is_empty() {
            return None;
        }
        Some(content_digest(
            plan.files
                .iter()
                .filter(|(_, folders)| folders.iter().any(|f| polled.contains(f.as_path())))
                .map(|(file, _)| file),
        ))
    }

    /// Publishes the watch mode and the folders' states, when they changed.
    fn publish(&mut self, target: &dyn Reloadable) {
        let (mode, folders) = if self.polling_asked() {
            let plan = Plan::of(&target.watched_files());
            let folders: Vec<FolderStatus> = plan
                .folders
                .into_iter()
                .map(|path| FolderStatus {
                    path,
                    watch: FolderWatch::Polled {
                        reason: POLLING_ASKED.to_owned(),
                    },
                })
                .collect();
            (WatchMode::Polling(self.check_interval()), folders)
        } else {
            let mode = if self.watcher.is_some() {
                WatchMode::Events
            } else {
                WatchMode::Polling(CHECK_INTERVAL)
            };
            let folders = self
                .armed
                .iter()
                .map(|armed| FolderStatus {
                    path: armed.dir.clone(),
                    watch: armed.watch.clone(),
                })
                .collect();
            (mode, folders)
        };
        if self
            .published
            .as_ref()
            .is_some_and(|(m, f)| *m == mode && *f == folders)
        {
            return;
        }
        target.publish_watch(mode, folders.clone());
        self.published = Some((mode, folders));
    }
}

/// The earlier of two deadlines, `None` being never.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Logs a folder going to polled (WARN) or back to events (INFO), once per change.
fn log_change(dir: &Path, before: Option<&FolderWatch>, after: &FolderWatch) {
    let was_polled = matches!(before, Some(FolderWatch::Polled { .. }));
    match after {
        FolderWatch::Polled { reason } if !was_polled => tracing::warn!(
            target: "zitadel_system_auth",
            folder = %dir.display(),
            "cannot watch {}: {reason}; the files there are read and compared every {CHECK_INTERVAL:?}, and the watch is tried again",
            dir.display()
        ),
        FolderWatch::Events if was_polled => tracing::info!(
            target: "zitadel_system_auth",
            folder = %dir.display(),
            "{} is watched by events again",
            dir.display()
        ),
        _ => {}
    }
}

/// A watcher's error, without the paths notify appends (the folder is logged
/// beside it).
fn watch_error(error: &notify::Error) -> String {
    match &error.kind {
        notify::ErrorKind::Io(error) => error.to_string(),
        notify::ErrorKind::MaxFilesWatch => {
            "the limit of inotify watches is reached (fs.inotify.max_user_watches)".to_owned()
        }
        notify::ErrorKind::PathNotFound => "the folder does not exist".to_owned(),
        notify::ErrorKind::Generic(text) => text.clone(),
        other => format!("{other:?}"),
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

fn new_watcher(events: &mpsc::Sender<Events>) -> notify::Result<notify::RecommendedWatcher> {
    let events = events.clone();
    notify::recommended_watcher(move |event| {
        let _ = events.send(event);
    })
}

/// The folders `file` depends on: its own, and, when it is a symbolic link, the
/// folder of every link in the chain and of the final target (relative targets
/// resolve against the link's folder). Each is the nearest existing folder, with
/// symbolic links resolved, so one folder reached by two paths is watched once.
fn chain_folders(file: &Path) -> Vec<PathBuf> {
    let mut folders = vec![watched_folder(file.parent())];
    let mut path = file.to_path_buf();
    for _ in 0..MAX_LINK_HOPS {
        let Ok(target) = std::fs::read_link(&path) else {
            break;
        };
        path = match path.parent() {
            Some(parent) if target.is_relative() => parent.join(target),
            _ => target,
        };
        folders.push(watched_folder(path.parent()));
    }
    folders.sort();
    folders.dedup();
    folders
}

/// The folder to watch for files in `folder`: it or its nearest existing ancestor,
/// with symbolic links resolved when possible.
fn watched_folder(folder: Option<&Path>) -> PathBuf {
    let dir = existing_folder(folder.unwrap_or(Path::new("")));
    std::fs::canonicalize(&dir).unwrap_or(dir)
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
fn content_digest<'a>(files: impl Iterator<Item = &'a PathBuf>) -> u64 {
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
