//! Verification requests waiting for the device request they answer.
//!
//! The broker delivers the verifier's subscriptions in no guaranteed order
//! across topics: under load, an AP's question can reach the verifier
//! before the device's access request that prompted it. Such a question
//! waits here, for at most [`PARK_FOR`], and is answered the moment the
//! request arrives (or refused when its time is up) instead of being
//! refused at once and costing the device a retry.
//!
//! Bounded: at most [`MAX_PARKED`] at once; beyond that a question is
//! refused at once. Only registered APs within their rate get here.

use super::requests::RequestKey;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a question waits for its device request.
pub(super) const PARK_FOR: Duration = Duration::from_secs(2);

/// Questions waiting at once, at most.
const MAX_PARKED: usize = 4096;

pub(super) struct Parked<T> {
    waiting: HashMap<RequestKey, Vec<(Instant, T)>>,
    /// Deadlines in arrival order (every question waits as long), for
    /// expiry. An entry whose question was answered meanwhile stays until
    /// its deadline and then finds nothing.
    order: VecDeque<(Instant, RequestKey)>,
    capacity: usize,
}

impl<T> Parked<T> {
    pub(super) fn new() -> Self {
        Self::with_capacity(MAX_PARKED)
    }

    fn with_capacity(capacity: usize) -> Self {
        Parked {
            waiting: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Parks `item` until `now + PARK_FOR`; gives it back if full.
    pub(super) fn park(&mut self, key: RequestKey, item: T, now: Instant) -> Result<(), T> {
        if self.order.len() >= self.capacity {
            return Err(item);
        }
        let deadline = now + PARK_FOR;
        self.order.push_back((deadline, key));
        self.waiting.entry(key).or_default().push((deadline, item));
        Ok(())
    }

    /// Everything waiting for `key`, now that its request has arrived.
    /// Free when nothing waits, which is nearly always.
    pub(super) fn take(&mut self, key: &RequestKey) -> Vec<T> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        self.waiting
            .remove(key)
            .map(|items| items.into_iter().map(|(_, item)| item).collect())
            .unwrap_or_default()
    }

    /// Everything whose time is up at `now`.
    pub(super) fn expired(&mut self, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        while let Some(&(deadline, key)) = self.order.front() {
            if deadline > now {
                break;
            }
            self.order.pop_front();
            if let Some(items) = self.waiting.get_mut(&key) {
                let mut i = 0;
                while i < items.len() {
                    if items[i].0 <= now {
                        out.push(items.remove(i).1);
                    } else {
                        i += 1;
                    }
                }
                if items.is_empty() {
                    self.waiting.remove(&key);
                }
            }
        }
        out
    }

    /// When the next question's time is up, if any waits.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(deadline, _)| *deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::DeviceUuid;

    fn key(n: u8) -> RequestKey {
        let uuid =
            DeviceUuid::parse(&format!("00000000-0000-4000-8000-0000000000{n:02x}")).unwrap();
        RequestKey::new(&uuid, [n; 12])
    }

    #[test]
    fn a_question_waits_until_its_request_or_its_deadline() {
        let t0 = Instant::now();
        let mut p = Parked::new();
        assert_eq!(p.next_deadline(), None);
        p.park(key(1), "a", t0).unwrap();
        p.park(key(1), "b", t0).unwrap();
        p.park(key(2), "c", t0 + Duration::from_millis(10)).unwrap();
        assert_eq!(p.next_deadline(), Some(t0 + PARK_FOR));
        assert_eq!(p.take(&key(1)), vec!["a", "b"]);
        assert!(p.take(&key(1)).is_empty());
        assert!(p.expired(t0 + PARK_FOR).is_empty(), "answered already");
        assert_eq!(
            p.expired(t0 + PARK_FOR + Duration::from_millis(10)),
            vec!["c"]
        );
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn a_full_lot_gives_the_question_back() {
        let t0 = Instant::now();
        let mut p = Parked::with_capacity(2);
        p.park(key(1), 1, t0).unwrap();
        p.park(key(2), 2, t0).unwrap();
        assert_eq!(p.park(key(3), 3, t0), Err(3));
        assert_eq!(p.expired(t0 + PARK_FOR), vec![1, 2]);
        assert!(p.park(key(3), 3, t0 + PARK_FOR).is_ok());
    }
}
