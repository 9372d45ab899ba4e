//! The consumer lag of a follower, as issue 9 defines it: the stream's last
//! sequence minus the checkpoint (the `ecst_consumer_lag` gauge).
//!
//! Reading the stream's last sequence is a request to the server, so it is
//! read at most once per [`FollowSettings::lag_refresh`](super::FollowSettings)
//! (and whenever the follower reads the stream's state anyway: creating its
//! consumer, confirming it has caught up). In between, every delivery raises
//! the known last sequence to at least its own stream sequence plus the
//! messages the server says are pending after it (each of them has a higher
//! sequence), which is exact on a stream without gaps and never below the
//! server's own count of what is left.

use std::time::{Duration, Instant};

/// What the follower knows of the stream's last sequence.
#[derive(Debug)]
pub(super) struct StreamTip {
    /// The stream's last sequence as last read, raised by deliveries since.
    last: u64,
    /// When the stream's state was last read; `None`: never.
    read_at: Option<Instant>,
    /// How often the stream's state may be read for the gauge alone.
    refresh: Duration,
}

impl StreamTip {
    pub(super) fn new(refresh: Duration) -> Self {
        StreamTip {
            last: 0,
            read_at: None,
            refresh,
        }
    }

    /// The stream's state says its last sequence is `last_sequence`, as of
    /// `now`. Taken as it is, even when lower than what was known: a stream
    /// re-created or reset numbers afresh.
    pub(super) fn read(&mut self, last_sequence: u64, now: Instant) {
        self.last = last_sequence;
        self.read_at = Some(now);
    }

    /// A delivery at `stream_sequence` with `pending` messages after it for
    /// this consumer: the stream holds at least up to `stream_sequence +
    /// pending`.
    pub(super) fn delivered(&mut self, stream_sequence: u64, pending: u64) {
        self.last = self.last.max(stream_sequence.saturating_add(pending));
    }

    /// Whether the stream's state is due to be read again at `now`.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.read_at
            .is_none_or(|read| now.saturating_duration_since(read) >= self.refresh)
    }

    /// The lag of a consumer whose checkpoint is at `checkpoint`: the last
    /// sequence minus it, or 0 when the server has confirmed that nothing is
    /// left for the consumer (what lies past the checkpoint is then outside
    /// its filter: other entities' events, or deleted messages).
    pub(super) fn lag(&self, checkpoint: u64, caught_up: bool) -> u64 {
        if caught_up {
            0
        } else {
            self.last.saturating_sub(checkpoint)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_is_the_last_sequence_minus_the_checkpoint() {
        let start = Instant::now();
        let mut tip = StreamTip::new(Duration::from_secs(1));
        assert!(tip.due(start), "never read: due");
        tip.read(100, start);
        assert_eq!(tip.lag(40, false), 60);
        assert_eq!(tip.lag(100, false), 0);
        // A checkpoint past the last sequence (a diverged copy) is no lag.
        assert_eq!(tip.lag(120, false), 0);
        // Caught up, as the server confirmed: what is left is not ours.
        assert_eq!(tip.lag(40, true), 0);
    }

    #[test]
    fn deliveries_raise_the_last_sequence_and_reads_replace_it() {
        let start = Instant::now();
        let mut tip = StreamTip::new(Duration::from_secs(1));
        tip.read(100, start);
        // Nothing new: 90 + 5 pending is within what was read.
        tip.delivered(90, 5);
        assert_eq!(tip.lag(90, false), 10);
        // Published since the read: at least 130 now.
        tip.delivered(120, 10);
        assert_eq!(tip.lag(120, false), 10);
        tip.delivered(u64::MAX, 1);
        assert_eq!(tip.lag(0, false), u64::MAX);
        // A read replaces it, even downwards (a stream re-created).
        tip.read(7, start);
        assert_eq!(tip.lag(0, false), 7);
    }

    #[test]
    fn the_state_is_read_again_once_per_refresh() {
        let start = Instant::now();
        let mut tip = StreamTip::new(Duration::from_secs(1));
        tip.read(1, start);
        assert!(!tip.due(start));
        assert!(!tip.due(start + Duration::from_millis(999)));
        assert!(tip.due(start + Duration::from_secs(1)));
        // A clock read before the last read is not due (no underflow).
        tip.read(1, start + Duration::from_secs(5));
        assert!(!tip.due(start));
        let always = StreamTip::new(Duration::ZERO);
        assert!(always.due(start));
    }
}
