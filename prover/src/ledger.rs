//! Device memory by reservation. Everything the cuda engine puts on the
//! GPU is reserved here first, by the estimates of
//! [`zkfarm_plonk::WorkingSet`]: the SRS bases and prepared keys, which
//! stay, and each proof's working set, which comes and goes. The local
//! workers of one `serve` share one engine and so one ledger: a proof that
//! does not fit beside the ones running waits for them, and one that could
//! never fit beside what stays is refused at once, naming the sizes, so the
//! coordinator hands the task to a worker with more memory.

use std::sync::{Arc, Condvar, Mutex};

use anyhow::{bail, Result};

/// The device memory the engine may use, and what is reserved of it.
#[derive(Debug)]
pub struct Ledger {
    capacity: u64,
    state: Mutex<Reserved>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct Reserved {
    /// Bases and prepared keys.
    lasting: u64,
    /// Proofs running.
    proofs: u64,
}

/// Memory reserved until this is dropped.
#[derive(Debug)]
pub struct Reservation {
    ledger: Arc<Ledger>,
    bytes: u64,
    lasting: bool,
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

impl Ledger {
    pub fn new(capacity: u64) -> Arc<Self> {
        Arc::new(Ledger { capacity, state: Mutex::default(), freed: Condvar::new() })
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes reserved now.
    pub fn reserved(&self) -> u64 {
        let s = self.lock();
        s.lasting + s.proofs
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Reserved> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves memory that stays while the returned reservation lives
    /// (bases, a prepared key); refused at once when it does not fit now.
    pub fn hold(self: &Arc<Self>, bytes: u64, what: &str) -> Result<Reservation> {
        let mut s = self.lock();
        let free = self.capacity.saturating_sub(s.lasting + s.proofs);
        if bytes > free {
            bail!("device memory: {what} needs {}, and {} of {} are free", gib(bytes), gib(free), gib(self.capacity));
        }
        s.lasting += bytes;
        Ok(Reservation { ledger: self.clone(), bytes, lasting: true })
    }

    /// Reserves one proof's working set, waiting while other proofs hold
    /// the memory it needs; refused when it exceeds what the lasting
    /// reservations leave.
    pub fn admit(self: &Arc<Self>, bytes: u64, what: &str) -> Result<Reservation> {
        let mut s = self.lock();
        loop {
            let room = self.capacity.saturating_sub(s.lasting);
            if bytes > room {
                bail!(
                    "device memory: {what} needs {}, and this device has {} beside its keys and bases ({} in all)",
                    gib(bytes),
                    gib(room),
                    gib(self.capacity)
                );
            }
            if s.proofs + bytes <= room {
                s.proofs += bytes;
                return Ok(Reservation { ledger: self.clone(), bytes, lasting: false });
            }
            s = self.freed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut s = self.ledger.lock();
        if self.lasting {
            s.lasting -= self.bytes;
        } else {
            s.proofs -= self.bytes;
        }
        drop(s);
        self.ledger.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn lasting_reservations_are_refused_when_they_do_not_fit_now() {
        let l = Ledger::new(100);
        let bases = l.hold(60, "the bases").unwrap();
        let err = l.hold(50, "a key").unwrap_err().to_string();
        assert!(err.contains("a key needs") && err.contains("free"), "{err}");
        drop(bases);
        assert!(l.hold(50, "a key").is_ok());
    }

    #[test]
    fn a_proof_that_can_never_fit_is_refused_and_names_the_sizes() {
        let l = Ledger::new(100 << 30);
        let _key = l.hold(70 << 30, "a key").unwrap();
        let err = l.admit(40 << 30, "a proof of k = 22").unwrap_err().to_string();
        assert!(err.contains("a proof of k = 22 needs 40.00 GiB"), "{err}");
        assert!(err.contains("30.00 GiB beside its keys"), "{err}");
        assert_eq!(l.reserved(), 70 << 30);
    }

    #[test]
    fn proofs_wait_for_room_and_are_admitted_when_it_is_freed() {
        let l = Ledger::new(100);
        let first = l.admit(70, "proof 1").unwrap();
        let (tx, rx) = mpsc::channel();
        let l2 = l.clone();
        let waiter = std::thread::spawn(move || {
            let r = l2.admit(50, "proof 2").unwrap();
            tx.send(()).unwrap();
            drop(r);
        });
        // Two proofs together would oversubscribe the device: the second waits.
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        assert_eq!(l.reserved(), 70);
        drop(first);
        rx.recv_timeout(Duration::from_secs(10)).expect("admitted once the first proof ended");
        waiter.join().unwrap();
        assert_eq!(l.reserved(), 0);
    }
}
