//! A listener's share of handshake turns per source address: one address
//! that opens hundreds of handshakes and stalls them takes
//! [`HANDSHAKES_PER_SOURCE`] of the listener's turns, not all of them, and
//! its other connections wait in a queue of their own.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Semaphore;

/// Handshakes one source address may have under way at once on one
/// listener (its turn taken, or waiting in the listener's queue for one).
/// Its other connections wait behind them, in its own queue, and do not
/// touch the listener's: one address holds at most this many of the
/// listener's [`crate::HANDSHAKES_AT_ONCE`] turns, and as many places in
/// its queue.
///
/// Eight is more than a client needs (it handshakes once per connection)
/// and a small share of the listener's turns; many clients behind one NAT
/// are served eight at a time, and a handshake takes milliseconds.
pub const HANDSHAKES_PER_SOURCE: usize = 8;

/// Source addresses a listener tracks at once, each while it has a
/// connection waiting for a turn or handshaking (an entry is dropped with
/// its last connection). Beyond this, connections from addresses not yet
/// tracked share one more queue, itself [`HANDSHAKES_PER_SOURCE`] wide, so
/// that the map's memory is bounded whatever the number of addresses.
const SOURCES: usize = 4096;

/// Where a connection comes from, as the per-source share counts it: an
/// IPv4 address, or an IPv6 /64 (a single host is commonly given a whole
/// /64, and could otherwise take a fresh address per connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    V6Prefix(u64),
    /// Every address met while [`SOURCES`] others are tracked.
    Overflow,
}

impl Source {
    fn of(peer: SocketAddr) -> Self {
        match peer.ip().to_canonical() {
            IpAddr::V4(ip) => Source::V4(u32::from(ip)),
            IpAddr::V6(ip) => Source::V6Prefix((u128::from(ip) >> 64) as u64),
        }
    }
}

struct Entry {
    gate: Arc<Semaphore>,
    /// Connections holding a [`Share`] of this source.
    holders: usize,
}

/// The per-source queues of one listener (shared by its acceptor's clones).
#[derive(Clone, Default)]
pub(crate) struct Sources {
    map: Arc<Mutex<HashMap<Source, Entry>>>,
}

impl Sources {
    /// The queue of `peer`'s source, held until the returned share drops.
    pub(crate) fn share(&self, peer: SocketAddr) -> Share {
        let mut map = self.lock();
        let mut source = Source::of(peer);
        if !map.contains_key(&source) && map.len() >= SOURCES {
            source = Source::Overflow;
        }
        let entry = map.entry(source).or_insert_with(|| Entry {
            gate: Arc::new(Semaphore::new(HANDSHAKES_PER_SOURCE)),
            holders: 0,
        });
        entry.holders += 1;
        Share {
            gate: entry.gate.clone(),
            source,
            sources: self.clone(),
        }
    }

    /// Sources tracked now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Source, Entry>> {
        // Nothing panics while the lock is held (counts and a map insert),
        // and the map stays consistent if something did.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's hold on its source's queue.
pub(crate) struct Share {
    /// [`HANDSHAKES_PER_SOURCE`] turns, taken in order of arrival.
    pub(crate) gate: Arc<Semaphore>,
    source: Source,
    sources: Sources,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut map = self.sources.lock();
        if let Some(entry) = map.get_mut(&self.source) {
            entry.holders -= 1;
            if entry.holders == 0 {
                map.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 1883)
    }

    #[test]
    fn an_address_is_one_source_and_an_ipv6_host_is_its_slash_64() {
        let sources = Sources::default();
        let a = sources.share(peer("127.0.0.2"));
        let b = sources.share(peer("::ffff:127.0.0.2"));
        assert!(Arc::ptr_eq(&a.gate, &b.gate), "a v4-mapped address is v4");
        let c = sources.share(peer("2001:db8:1:2::1"));
        let d = sources.share(peer("2001:db8:1:2:ffff::9"));
        assert!(Arc::ptr_eq(&c.gate, &d.gate), "one /64");
        let e = sources.share(peer("2001:db8:1:3::1"));
        assert!(!Arc::ptr_eq(&c.gate, &e.gate), "another /64");
        assert!(!Arc::ptr_eq(&a.gate, &c.gate));
        assert_eq!(sources.len(), 3);
    }

    #[test]
    fn a_source_is_forgotten_with_its_last_connection_and_the_map_is_bounded() {
        let sources = Sources::default();
        let first = sources.share(peer("10.0.0.1"));
        let again = sources.share(peer("10.0.0.1"));
        drop(first);
        assert_eq!(sources.len(), 1, "one connection still holds it");
        drop(again);
        assert_eq!(sources.len(), 0);

        let held: Vec<Share> = (0..SOURCES as u32)
            .map(|i| sources.share(SocketAddr::new(IpAddr::V4(i.into()), 1)))
            .collect();
        assert_eq!(sources.len(), SOURCES);
        // New addresses share one queue; tracked ones keep theirs.
        let x = sources.share(peer("192.0.2.1"));
        let y = sources.share(peer("192.0.2.2"));
        assert!(Arc::ptr_eq(&x.gate, &y.gate));
        assert_eq!(sources.len(), SOURCES + 1);
        let known = sources.share(SocketAddr::new(IpAddr::V4(7u32.into()), 1));
        assert!(Arc::ptr_eq(&known.gate, &held[7].gate));
        drop((x, y, known, held));
        assert_eq!(sources.len(), 0);
    }
}
