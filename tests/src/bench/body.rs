//! The benchmark's message body: `stoxbench RUN SEQ T` with the send time `T` in microseconds
//! since the bench process started ([`now_us`]). Sender and receiver live in the same process,
//! so one monotonic clock serves both ends. The same text travels as the SIP MESSAGE body
//! (RFC 3428 §10, `text/plain`) and as the XMPP `<body/>` (RFC 6121 §5.2.3): stox copies it.

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the first call in this process (a monotonic clock).
pub fn now_us() -> u64 {
    let epoch = EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// One benchmark message as carried in a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Which run sent it (stragglers of an earlier run are not counted in a later one).
    pub run: u32,
    /// Sequence number within the run, 0-based.
    pub seq: u32,
    /// Send time, [`now_us`].
    pub sent_us: u64,
}

const PREFIX: &str = "stoxbench ";

impl Stamp {
    /// The body text.
    pub fn encode(&self) -> String {
        format!("{PREFIX}{} {} {}", self.run, self.seq, self.sent_us)
    }

    /// Parses a body written by [`Stamp::encode`]; `None` for anything else.
    pub fn parse(body: &str) -> Option<Stamp> {
        let mut fields = body.trim().strip_prefix(PREFIX)?.split(' ');
        let stamp = Stamp {
            run: fields.next()?.parse().ok()?,
            seq: fields.next()?.parse().ok()?,
            sent_us: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(stamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_through_its_body_text() {
        let stamp = Stamp {
            run: 7,
            seq: 19_999,
            sent_us: 123_456_789,
        };
        assert_eq!(stamp.encode(), "stoxbench 7 19999 123456789");
        assert_eq!(Stamp::parse(&stamp.encode()), Some(stamp));
        assert_eq!(Stamp::parse("stoxbench 7 19999 123456789\r\n"), Some(stamp));
    }

    #[test]
    fn foreign_or_truncated_bodies_are_not_stamps() {
        assert_eq!(Stamp::parse("hello"), None);
        assert_eq!(Stamp::parse("stoxbench 1 2"), None);
        assert_eq!(Stamp::parse("stoxbench 1 2 3 4"), None);
        assert_eq!(Stamp::parse("stoxbench 1 -2 3"), None);
    }

    #[test]
    fn clock_is_monotonic() {
        let a = now_us();
        let b = now_us();
        assert!(b >= a);
    }
}
