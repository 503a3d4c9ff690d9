//! Waking readers when a topic grows, without each of them polling.

use std::time::Duration;

use tokio::sync::watch;

use super::Topic;

/// The last known log end of each topic, as a `watch` channel per topic.
///
/// Whoever learns that a topic grew — a local append, a NOTIFY from
/// PostgreSQL, the Iggy tailer — calls [`LogEndWatch::advance`]; readers wait
/// in [`LogEndWatch::wait_beyond`]. The value only ever increases, so a late
/// or repeated notification is harmless.
#[derive(Debug)]
pub struct LogEndWatch {
    ends: [watch::Sender<u64>; 3],
}

impl Default for LogEndWatch {
    fn default() -> Self {
        LogEndWatch {
            ends: std::array::from_fn(|_| watch::Sender::new(0)),
        }
    }
}

impl LogEndWatch {
    /// Records that `topic`'s log end is at least `end`.
    pub fn advance(&self, topic: Topic, end: u64) {
        self.ends[topic.index()].send_if_modified(|current| {
            if end > *current {
                *current = end;
                true
            } else {
                false
            }
        });
    }

    /// The highest log end seen so far for `topic`.
    pub fn current(&self, topic: Topic) -> u64 {
        *self.ends[topic.index()].borrow()
    }

    /// How many readers are waiting on `topic` right now. The Iggy tailer
    /// only asks the server about topics somebody waits for.
    pub fn waiting_readers(&self, topic: Topic) -> usize {
        self.ends[topic.index()].receiver_count()
    }

    /// Waits until `topic`'s end exceeds `known_end` or `max_wait` passes;
    /// returns the end as last seen.
    pub async fn wait_beyond(&self, topic: Topic, known_end: u64, max_wait: Duration) -> u64 {
        let mut receiver = self.ends[topic.index()].subscribe();
        let woken = tokio::time::timeout(max_wait, receiver.wait_for(|end| *end > known_end))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|end| *end);
        // Timed out (or the sender is gone, which cannot happen while `self`
        // is borrowed): report what we know.
        woken.unwrap_or_else(|| *receiver.borrow())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_waiter_wakes_when_the_topic_grows_and_not_for_another_topic() {
        let watch = std::sync::Arc::new(LogEndWatch::default());
        let waiter = {
            let watch = watch.clone();
            tokio::spawn(async move {
                watch
                    .wait_beyond(Topic::IncidentEvents, 0, Duration::from_secs(60))
                    .await
            })
        };
        tokio::task::yield_now().await;
        watch.advance(Topic::AuthEvents, 5);
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "another topic's growth must not wake it"
        );
        watch.advance(Topic::IncidentEvents, 2);
        assert_eq!(waiter.await.unwrap(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_after_max_wait_with_the_current_end() {
        let watch = LogEndWatch::default();
        watch.advance(Topic::IncidentEvents, 4);
        let end = watch
            .wait_beyond(Topic::IncidentEvents, 4, Duration::from_millis(50))
            .await;
        assert_eq!(end, 4);
    }

    #[test]
    fn the_end_never_moves_backwards() {
        let watch = LogEndWatch::default();
        watch.advance(Topic::PresenceEvents, 10);
        watch.advance(Topic::PresenceEvents, 3);
        assert_eq!(watch.current(Topic::PresenceEvents), 10);
    }
}
