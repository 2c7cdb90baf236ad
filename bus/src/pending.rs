use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Waiters keyed by request id: the asker [`insert`](Pending::insert)s and
/// awaits the receiver, the dispatcher [`complete`](Pending::complete)s.
#[derive(Debug)]
pub struct Pending<K, T> {
    waiters: Mutex<HashMap<K, oneshot::Sender<T>>>,
}

impl<K: Hash + Eq, T> Default for Pending<K, T> {
    fn default() -> Self {
        Pending {
            waiters: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq, T> Pending<K, T> {
    fn lock(&self) -> MutexGuard<'_, HashMap<K, oneshot::Sender<T>>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (each operation is a single insert or remove), so recover it.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a waiter. A second insert for the same key replaces the
    /// first, whose receiver then sees a closed channel.
    pub fn insert(&self, key: K) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(key, tx);
        rx
    }

    /// Hands `value` to the waiter for `key`. Returns false if nobody was
    /// waiting (a late or unsolicited answer).
    pub fn complete(&self, key: &K, value: T) -> bool {
        match self.lock().remove(key) {
            Some(tx) => tx.send(value).is_ok(),
            None => false,
        }
    }

    pub fn contains(&self, key: &K) -> bool {
        self.lock().contains_key(key)
    }

    pub fn remove(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Drops every waiter: each receiver sees a closed channel. For when
    /// the answers can no longer come (the link that carried the questions
    /// was lost). Returns how many there were.
    pub fn cancel_all(&self) -> usize {
        let mut waiters = self.lock();
        let n = waiters.len();
        waiters.clear();
        n
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_reach_their_waiter_only() {
        let p: Pending<String, u32> = Pending::default();
        let a = p.insert("a".into());
        let b = p.insert("b".into());
        assert!(p.complete(&"b".to_string(), 2));
        assert!(!p.complete(&"zzz".to_string(), 9));
        assert!(p.complete(&"a".to_string(), 1));
        assert_eq!(a.await.unwrap(), 1);
        assert_eq!(b.await.unwrap(), 2);
        assert!(p.is_empty());
    }

    #[tokio::test]
    async fn cancel_all_closes_every_waiter() {
        let p: Pending<String, u32> = Pending::default();
        let a = p.insert("a".into());
        let b = p.insert("b".into());
        assert_eq!(p.cancel_all(), 2);
        assert!(a.await.is_err() && b.await.is_err());
        assert!(!p.complete(&"a".to_string(), 1));
    }
}
