//! The `zkfarm.v1` gRPC API: generated messages and services, and the channel
//! set-up that clients and workers share (TLS and bearer authentication).

pub mod net;

/// Messages and services generated from `zkfarm/v1/farm.proto`.
pub mod v1 {
    tonic::include_proto!("zkfarm.v1");
}

pub use v1::{JobState, TaskState, Tier};

impl Tier {
    /// The tier as receipts and batch files spell it.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Zk => "zk",
            Tier::Tee => "tee",
            Tier::Signed => "signed",
            Tier::Unspecified => "unspecified",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "zk" => Ok(Tier::Zk),
            "tee" => Ok(Tier::Tee),
            "signed" => Ok(Tier::Signed),
            other => anyhow::bail!("unknown tier {other:?}: expected zk, tee or signed"),
        }
    }
}

impl TaskState {
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Unspecified => "unspecified",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "queued" => TaskState::Queued,
            "running" => TaskState::Running,
            "done" => TaskState::Done,
            "failed" => TaskState::Failed,
            "cancelled" => TaskState::Cancelled,
            _ => TaskState::Unspecified,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, TaskState::Done | TaskState::Failed | TaskState::Cancelled)
    }
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Unspecified => "unspecified",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => JobState::Unspecified,
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Running | JobState::Unspecified)
    }
}
