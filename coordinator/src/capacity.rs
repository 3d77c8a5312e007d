//! What the live workers can take: which tiers some worker offers, and why
//! a queued task waits. Submissions warn about (or fail) requests that no
//! live worker can serve, and `job status` shows each queued task's reason,
//! so a job never waits silently for a worker that does not exist.

use zkfarm_prover::Tier;

use crate::farm::Caps;
use crate::store::TaskRow;

/// The live workers' capabilities, read once per question.
pub struct Capacity {
    pub live: Vec<Caps>,
}

impl Capacity {
    /// Whether some live worker offers `tier`.
    pub fn offers(&self, tier: Tier) -> bool {
        self.live.iter().any(|c| c.tiers.contains(&tier))
    }

    /// Why a queued task waits. `mem_bytes` is what its model needs for a
    /// proof (zk tasks only look at it).
    pub fn why_waiting(&self, task: &TaskRow, mem_bytes: u64) -> String {
        if self.live.is_empty() {
            return "no live worker".into();
        }
        let offering: Vec<&Caps> = self.live.iter().filter(|c| c.tiers.contains(&task.tier)).collect();
        if offering.is_empty() {
            return format!("no live worker offers tier {}", task.tier);
        }
        if task.tier == Tier::Zk {
            // 0 means the worker did not say, and the scheduler lets it try.
            let fits = |c: &&&Caps| c.memory_bytes == 0 || c.memory_bytes >= mem_bytes;
            if !offering.iter().any(|c| fits(&c)) {
                let largest = offering.iter().map(|c| c.memory_bytes).max().unwrap_or(0);
                return format!(
                    "no live worker has the memory the model needs ({} MiB; the largest offers {} MiB)",
                    mem_bytes.div_ceil(1 << 20),
                    largest >> 20
                );
            }
        }
        if task.retries > 0 && !task.error.is_empty() {
            return format!("queued again after: {}", task.error);
        }
        format!("waiting for a free worker ({} can take it)", offering.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TaskState;

    fn caps(tiers: &[Tier], memory_bytes: u64) -> Caps {
        Caps { tiers: tiers.to_vec(), memory_bytes, ..Caps::default() }
    }

    fn task(tier: Tier) -> TaskRow {
        TaskRow {
            task_id: "t".into(),
            job_id: "j".into(),
            idx: 0,
            model_id: "m".into(),
            tier,
            input: "{}".into(),
            priority: 0,
            state: TaskState::Queued,
            attempt: 0,
            retries: 0,
            worker_id: String::new(),
            lease_expires_ms: 0,
            error: String::new(),
            created_ms: 0,
            finished_ms: 0,
        }
    }

    #[test]
    fn each_reason_a_task_waits_is_named() {
        let none = Capacity { live: vec![] };
        assert_eq!(none.why_waiting(&task(Tier::Signed), 0), "no live worker");
        assert!(!none.offers(Tier::Signed));

        let cpu = Capacity { live: vec![caps(&[Tier::Zk, Tier::Signed], 8 << 30), caps(&[Tier::Signed], 0)] };
        assert!(cpu.offers(Tier::Zk) && !cpu.offers(Tier::Tee));
        assert_eq!(cpu.why_waiting(&task(Tier::Tee), 0), "no live worker offers tier tee");
        let big = cpu.why_waiting(&task(Tier::Zk), 16 << 30);
        assert!(big.contains("16384 MiB") && big.contains("8192 MiB"), "{big}");
        assert_eq!(cpu.why_waiting(&task(Tier::Zk), 1 << 30), "waiting for a free worker (1 can take it)");
        assert_eq!(cpu.why_waiting(&task(Tier::Signed), 0), "waiting for a free worker (2 can take it)");

        let mut retried = task(Tier::Signed);
        (retried.retries, retried.error) = (1, "the key cache failed".into());
        assert_eq!(cpu.why_waiting(&retried, 0), "queued again after: the key cache failed");

        // A worker that does not report its memory may try any model.
        let unknown = Capacity { live: vec![caps(&[Tier::Zk], 0)] };
        assert!(unknown.why_waiting(&task(Tier::Zk), 1 << 40).starts_with("waiting"));
    }
}
