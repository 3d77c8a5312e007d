//! The states a task and a job move through, spelled as strings only in SQL
//! and on the wire.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use zkfarm_prover::Tier;

/// A task: queued → running (leased) → done, failed or cancelled; a
/// retryable failure or an expired lease puts it back in the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl TaskState {
    pub const ALL: [TaskState; 5] =
        [TaskState::Queued, TaskState::Running, TaskState::Done, TaskState::Failed, TaskState::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// Done, failed or cancelled: nothing changes the task any more.
    pub fn is_final(self) -> bool {
        match self {
            TaskState::Queued | TaskState::Running => false,
            TaskState::Done | TaskState::Failed | TaskState::Cancelled => true,
        }
    }
}

/// A job runs until every task is final, then takes the state of the worst
/// of them: cancelled, else failed, else done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 4] = [JobState::Running, JobState::Done, JobState::Failed, JobState::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        self != JobState::Running
    }
}

/// `as_str`, `Display`, `FromStr` and the SQL conversions of a state enum.
macro_rules! text_enum {
    ($ty:ident, $what:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = anyhow::Error;
            fn from_str(s: &str) -> Result<Self> {
                match $ty::ALL.into_iter().find(|x| x.as_str() == s) {
                    Some(x) => Ok(x),
                    None => bail!("unknown {} {s:?}", $what),
                }
            }
        }

        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value.as_str()?.parse().map_err(|e: anyhow::Error| FromSqlError::Other(e.into()))
            }
        }
    };
}

text_enum!(TaskState, "task state");
text_enum!(JobState, "job state");

/// Reads a tier column (the tier type belongs to the proving library, so it
/// cannot implement SQLite's traits itself).
pub(super) fn tier_column(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Tier> {
    let text: String = row.get(idx)?;
    text.parse().map_err(|e: anyhow::Error| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
        }
        for s in JobState::ALL {
            assert_eq!(s.to_string().parse::<JobState>().unwrap(), s);
        }
        assert!("lost".parse::<TaskState>().is_err());
        assert_eq!(TaskState::ALL.iter().filter(|s| s.is_final()).count(), 3);
        assert!(!JobState::Running.is_final() && JobState::Cancelled.is_final());
    }
}
