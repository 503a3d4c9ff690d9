//! Test-only fault injection on the write path: lets a test lose the answer
//! of an append that did land, which is otherwise a matter of luck with a
//! real server, or hold decided events back from the log. Inert unless a
//! test arms it.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::watch;

#[derive(Debug, Default)]
pub struct Faults {
    lose_append_answers: AtomicU32,
    /// While true, group commit holds its next batch back from the log.
    hold_appends: watch::Sender<bool>,
}

impl Faults {
    /// The next `count` appends that succeed report "unavailable" instead,
    /// as if the acknowledgement had been lost on the way back.
    pub fn lose_next_append_answers(&self, count: u32) {
        self.lose_append_answers.store(count, Ordering::SeqCst);
    }

    pub(super) fn take_lost_answer(&self) -> bool {
        self.lose_append_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }

    /// Holds every decided event back from the log until
    /// [`Faults::release_appends`]: their commands stay unconfirmed, and
    /// the events decided meanwhile queue up for one append.
    pub fn hold_appends(&self) {
        self.hold_appends.send_replace(true);
    }

    pub fn release_appends(&self) {
        self.hold_appends.send_replace(false);
    }

    pub(super) fn appends_held(&self) -> bool {
        *self.hold_appends.borrow()
    }

    pub(super) async fn wait_while_appends_held(&self) {
        let mut held = self.hold_appends.subscribe();
        let _ = held.wait_for(|held| !held).await;
    }
}
