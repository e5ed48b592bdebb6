//! The leases of one shared keep-alive stream, without I/O: who waits for which lease, which keep-alive
//! is in flight since when, and when a lease may go up again ([`MIN_RENEW_INTERVAL`]).
//!
//! ```text
//!   ask(lease, client) ─▶ Send (nothing in flight, interval over) · Wait (in flight, or until the
//!                         interval ends: a timer) · Full (MAX_LEASES_PER_UPSTREAM leases kept)
//!   answered(lease)    ─▶ the clients that asked since the last answer
//!   due(now)           ─▶ the leases whose interval ended with clients waiting: to send now
//! ```

use std::collections::{BTreeSet, HashMap};

use tokio::time::Instant;

use super::{ClientId, MAX_LEASES_PER_UPSTREAM, MIN_RENEW_INTERVAL, STALL_TIMEOUT};

/// A lease of a shared stream.
pub(super) struct Waiting {
    /// The client streams that asked since the last answer.
    waiters: Vec<ClientId>,
    /// When its keep-alive in flight went up (none in flight: `None`).
    sent: Option<Instant>,
    /// Its next keep-alive may go up from then on.
    next: Instant,
}

/// What becomes of an ask.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ask {
    /// Send a keep-alive of the lease up now.
    Send,
    /// An answer is due: the one in flight, or the one after the pacing interval.
    Wait,
    /// The table is full.
    Full,
}

/// The leases of a shared stream (no I/O: see [`Shared`]).
#[derive(Default)]
pub(super) struct Table {
    leases: HashMap<i64, Waiting>,
    /// (time, lease): when a lease's pacing interval ends (stale entries are skipped).
    timers: BTreeSet<(Instant, i64)>,
}

impl Table {
    /// `client` asks for `lease` to be kept alive.
    pub(super) fn ask(&mut self, lease: i64, client: ClientId, now: Instant) -> Ask {
        if !self.leases.contains_key(&lease) && self.leases.len() >= MAX_LEASES_PER_UPSTREAM {
            return Ask::Full;
        }
        let w = self.leases.entry(lease).or_insert_with(|| Waiting { waiters: Vec::new(), sent: None, next: now });
        w.waiters.push(client);
        if w.sent.is_some() {
            return Ask::Wait;
        }
        if now >= w.next {
            w.sent = Some(now);
            w.next = now + MIN_RENEW_INTERVAL;
            return Ask::Send;
        }
        self.timers.insert((w.next, lease));
        Ask::Wait
    }

    /// The upstream answer for `lease`: the client streams it answers (`None`: none was in flight).
    pub(super) fn answered(&mut self, lease: i64, now: Instant) -> Option<Vec<ClientId>> {
        let w = self.leases.get_mut(&lease)?;
        w.sent.take()?;
        let waiters = std::mem::take(&mut w.waiters);
        if now >= w.next {
            self.leases.remove(&lease);
        } else {
            // Asks until then wait for this timer; without any, it forgets the lease.
            self.timers.insert((w.next, lease));
        }
        Some(waiters)
    }

    /// The next pacing deadline.
    pub(super) fn next_timer(&self) -> Option<Instant> {
        self.timers.first().map(|&(t, _)| t)
    }

    /// The leases whose pacing interval has ended with live client streams waiting, marked in flight:
    /// to be sent now. Leases nobody waits for are forgotten.
    pub(super) fn due(&mut self, now: Instant, alive: impl Fn(ClientId) -> bool) -> Vec<i64> {
        let mut send = Vec::new();
        while let Some(&(t, lease)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            let Some(w) = self.leases.get_mut(&lease) else { continue };
            if w.sent.is_some() || w.next > now {
                // In flight (its answer takes over), or sent again since (a later timer is set).
                continue;
            }
            w.waiters.retain(|c| alive(*c));
            if w.waiters.is_empty() {
                self.leases.remove(&lease);
                continue;
            }
            w.sent = Some(now);
            w.next = now + MIN_RENEW_INTERVAL;
            send.push(lease);
        }
        send
    }

    /// The leases in flight, to be sent again on a new upstream stream (their send time restarts).
    pub(super) fn resend(&mut self, now: Instant) -> Vec<i64> {
        let mut send = Vec::new();
        for (&lease, w) in &mut self.leases {
            if let Some(t) = &mut w.sent {
                *t = now;
                send.push(lease);
            }
        }
        send
    }

    pub(super) fn in_flight(&self) -> bool {
        self.leases.values().any(|w| w.sent.is_some())
    }

    /// Whether a keep-alive has been in flight for [`STALL_TIMEOUT`].
    pub(super) fn stalled(&self, now: Instant) -> bool {
        self.leases.values().any(|w| w.sent.is_some_and(|t| now >= t + STALL_TIMEOUT))
    }

    /// The upstream stream ended with a member's error: the client streams waiting for a keep-alive in
    /// flight (those leases forgotten).
    pub(super) fn fail(&mut self) -> Vec<ClientId> {
        let mut failed = Vec::new();
        self.leases.retain(|_, w| {
            if w.sent.is_none() {
                return true;
            }
            failed.append(&mut w.waiters);
            false
        });
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_keep_alive_in_flight_per_lease_answers_every_asker() {
        let mut t = Table::default();
        let t0 = Instant::now();
        assert_eq!(t.ask(7, 1, t0), Ask::Send);
        assert_eq!(t.ask(7, 2, t0), Ask::Wait, "in flight: waits for that answer");
        assert_eq!(t.ask(8, 2, t0), Ask::Send, "another lease goes up on its own");
        assert!(t.in_flight());
        assert_eq!(t.answered(7, t0 + Duration::from_millis(1)), Some(vec![1, 2]));
        assert_eq!(t.answered(7, t0 + Duration::from_millis(2)), None, "a second answer answers nobody");
        // Asked again within the pacing interval: sent when it ends, answering everyone who asked by then.
        assert_eq!(t.ask(7, 1, t0 + Duration::from_millis(3)), Ask::Wait);
        assert_eq!(t.ask(7, 3, t0 + Duration::from_millis(4)), Ask::Wait);
        assert_eq!(t.next_timer(), Some(t0 + MIN_RENEW_INTERVAL));
        assert_eq!(t.due(t0 + Duration::from_millis(50), |_| true), Vec::<i64>::new());
        assert_eq!(t.due(t0 + MIN_RENEW_INTERVAL, |_| true), vec![7]);
        assert_eq!(t.answered(7, t0 + MIN_RENEW_INTERVAL * 3), Some(vec![1, 3]));
        // Answered after its interval: forgotten; the next ask goes up at once.
        assert!(!t.leases.contains_key(&7));
        assert_eq!(t.ask(7, 1, t0 + MIN_RENEW_INTERVAL * 3), Ask::Send);
    }

    #[test]
    fn departed_askers_failures_and_resends() {
        let mut t = Table::default();
        let t0 = Instant::now();
        assert_eq!(t.ask(1, 1, t0), Ask::Send);
        assert_eq!(t.answered(1, t0), Some(vec![1]));
        assert_eq!(t.ask(1, 9, t0), Ask::Wait);
        // Nobody alive waits when the interval ends: no keep-alive goes up, the lease is forgotten.
        assert_eq!(t.due(t0 + MIN_RENEW_INTERVAL, |c| c != 9), Vec::<i64>::new());
        assert!(t.leases.is_empty());
        // A new upstream stream resends what was in flight; a member's error fails its waiters only.
        assert_eq!(t.ask(1, 1, t0 + MIN_RENEW_INTERVAL), Ask::Send);
        assert_eq!(t.ask(2, 2, t0 + MIN_RENEW_INTERVAL), Ask::Send);
        assert_eq!(t.answered(2, t0 + MIN_RENEW_INTERVAL), Some(vec![2]));
        assert_eq!(t.ask(2, 3, t0 + MIN_RENEW_INTERVAL), Ask::Wait);
        assert_eq!(t.resend(t0 + MIN_RENEW_INTERVAL * 2), vec![1]);
        assert!(!t.stalled(t0 + MIN_RENEW_INTERVAL * 2 + STALL_TIMEOUT / 2));
        assert!(t.stalled(t0 + MIN_RENEW_INTERVAL * 2 + STALL_TIMEOUT));
        assert_eq!(t.fail(), vec![1]);
        assert!(!t.in_flight());
        assert_eq!(t.due(t0 + MIN_RENEW_INTERVAL * 2, |_| true), vec![2], "the paced ask still goes up");
    }

    #[test]
    fn leases_per_shared_stream_are_capped() {
        let mut t = Table::default();
        let t0 = Instant::now();
        for lease in 0..MAX_LEASES_PER_UPSTREAM as i64 {
            assert_eq!(t.ask(lease, 1, t0), Ask::Send);
        }
        assert_eq!(t.ask(-1, 1, t0), Ask::Full);
        assert_eq!(t.ask(0, 2, t0), Ask::Wait, "a lease already kept is still served");
        assert_eq!(t.answered(0, t0 + MIN_RENEW_INTERVAL), Some(vec![1, 2]));
        assert_eq!(t.ask(-1, 1, t0 + MIN_RENEW_INTERVAL), Ask::Send);
    }
}
