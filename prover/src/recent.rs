//! A cache of the few most recently used values, each made once per key,
//! where making one is slow (compiling a proving key for our prover takes
//! seconds, and on the cuda engine its NVRTC kernels more): the list's lock
//! is held only to find or add a key's slot, and a value is made under its
//! own slot's lock, so values of other keys are found, or made, meanwhile.

use std::sync::{Arc, Mutex};

use anyhow::Result;

/// One key's value, empty until made (or after making it failed).
type Slot<T> = Arc<Mutex<Option<Arc<T>>>>;

pub struct Recent<T> {
    capacity: usize,
    /// Most recently used first.
    slots: Mutex<Vec<(String, Slot<T>)>>,
}

impl<T> Recent<T> {
    pub fn new(capacity: usize) -> Self {
        Recent { capacity: capacity.max(1), slots: Mutex::default() }
    }

    /// The value of `key`, made by `make` if no value is kept. Callers that
    /// ask for one key together wait for one `make`; a failed `make` keeps
    /// nothing, and the next caller tries again.
    pub fn get_or_make(&self, key: &str, make: impl FnOnce() -> Result<T>) -> Result<Arc<T>> {
        let slot = self.slot(key);
        let mut value = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = &*value {
            return Ok(v.clone());
        }
        match make() {
            Ok(v) => {
                let v = Arc::new(v);
                *value = Some(v.clone());
                Ok(v)
            }
            Err(e) => {
                drop(value);
                self.forget_if_empty(key, &slot);
                Err(e)
            }
        }
    }

    /// The key's slot, moved to the front, or a new empty one there (the
    /// least recently used beyond the capacity are dropped: their values
    /// live on while callers still hold them).
    fn slot(&self, key: &str) -> Slot<T> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let entry = match slots.iter().position(|(k, _)| k == key) {
            Some(at) => slots.remove(at),
            None => (key.to_string(), Arc::default()),
        };
        let slot = entry.1.clone();
        slots.insert(0, entry);
        slots.truncate(self.capacity);
        slot
    }

    /// Drops `slot` from the list if it is still there and empty, so that a
    /// failed key does not push out a good one.
    fn forget_if_empty(&self, key: &str, slot: &Slot<T>) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = slots.iter().position(|(k, s)| k == key && Arc::ptr_eq(s, slot)) {
            if slot.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
                slots.remove(at);
            }
        }
    }

    /// The keys kept, most recently used first.
    pub fn keys(&self) -> Vec<String> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, _)| k.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn values_are_made_once_and_the_least_recent_is_dropped() {
        let r = Recent::new(2);
        let made = AtomicUsize::new(0);
        let make = |v: u32| {
            made.fetch_add(1, Ordering::SeqCst);
            Ok(v)
        };
        assert_eq!(*r.get_or_make("a", || make(1)).unwrap(), 1);
        assert_eq!(*r.get_or_make("a", || make(9)).unwrap(), 1, "a kept value is not made again");
        assert_eq!(*r.get_or_make("b", || make(2)).unwrap(), 2);
        assert_eq!(*r.get_or_make("a", || make(9)).unwrap(), 1);
        assert_eq!(*r.get_or_make("c", || make(3)).unwrap(), 3);
        assert_eq!(r.keys(), ["c", "a"], "b, the least recently used, went");
        assert_eq!(made.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_failure_keeps_nothing_and_pushes_out_nothing() {
        let r = Recent::new(2);
        r.get_or_make("a", || Ok(1)).unwrap();
        r.get_or_make("b", || Ok(2)).unwrap();
        let err = r.get_or_make("c", || anyhow::bail!("no such key")).unwrap_err();
        assert_eq!(err.to_string(), "no such key");
        assert_eq!(r.keys(), ["b"], "the failed key's slot is gone; a went when it came");
        assert_eq!(*r.get_or_make("c", || Ok(3)).unwrap(), 3, "the next caller tries again");
    }

    #[test]
    fn one_slow_key_does_not_hold_up_another() {
        let r = Arc::new(Recent::new(2));
        let (started, wait_started) = mpsc::channel();
        let (release, wait_release) = mpsc::channel::<()>();
        let slow = {
            let r = r.clone();
            std::thread::spawn(move || {
                r.get_or_make("slow", || {
                    started.send(()).unwrap();
                    // Made only after the other key's value, which would
                    // deadlock if the list stayed locked while making.
                    wait_release.recv_timeout(Duration::from_secs(30)).unwrap();
                    Ok(1)
                })
                .map(|v| *v)
            })
        };
        wait_started.recv().unwrap();
        assert_eq!(*r.get_or_make("quick", || Ok(2)).unwrap(), 2);
        release.send(()).unwrap();
        assert_eq!(slow.join().unwrap().unwrap(), 1);
        // A second caller of the slow key gets the value made once.
        assert_eq!(*r.get_or_make("slow", || Ok(9)).unwrap(), 1);
    }
}
