//! Counts a long fix reports while a turn runs, for whoever watches it: `atrest remediate`
//! draws them as a progress bar with a rate. In Lambda nobody watches and the counts go nowhere
//! (the turn's answer says what happened).
//!
//! The watcher registers a [`WorkProgress`] on the runner (`FixRunner::with_progress`); the fix
//! asks its context for it (`ctx.progress()`), which is a detached one when none is registered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Shared counters: clones count into the same totals.
#[derive(Clone, Default, Debug)]
pub struct WorkProgress(Arc<Counts>);

#[derive(Default, Debug)]
struct Counts {
    examined: AtomicU64,
    changed: AtomicU64,
    /// What is counted and what a change is ("objects", "copied"), set once by the fix.
    words: OnceLock<(&'static str, &'static str)>,
}

impl WorkProgress {
    /// Names what the fix counts, for the display: `progress.counting("objects", "copied")`.
    pub fn counting(&self, items: &'static str, changed: &'static str) -> &Self {
        let _ = self.0.words.set((items, changed));
        self
    }
    /// `(items, changed)` as the fix named them; ("items", "changed") when it did not.
    pub fn words(&self) -> (&'static str, &'static str) {
        self.0.words.get().copied().unwrap_or(("items", "changed"))
    }
    /// One more item (an object, a key, …) looked at.
    pub fn examined(&self) {
        self.0.examined.fetch_add(1, Ordering::Relaxed);
    }
    /// One more item changed (copied, re-encrypted, …).
    pub fn changed(&self) {
        self.0.changed.fetch_add(1, Ordering::Relaxed);
    }
    /// `(examined, changed)` so far, over every turn the watcher saw.
    pub fn counts(&self) -> (u64, u64) {
        (self.0.examined.load(Ordering::Relaxed), self.0.changed.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_count_into_the_same_totals() {
        let watched = WorkProgress::default();
        let worker = watched.clone();
        worker.examined();
        worker.examined();
        worker.changed();
        assert_eq!(watched.counts(), (2, 1));
        assert_eq!(watched.words(), ("items", "changed"));
        worker.counting("objects", "copied").counting("later", "ignored");
        assert_eq!(watched.words(), ("objects", "copied"));
    }
}
