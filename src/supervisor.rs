//! The supervisor: the one owner of what runs. Every input (a complete build, an instance's
//! readiness or exit, a verdict, a finished piece of work, a timer) goes through [`decide()`], a pure
//! function of the [`State`], the input and the time, which answers with [`Action`]s. The
//! [`executor`] carries the actions out off the supervisor's task and reports each completion back
//! as an input, so nothing slow ever holds a decision up and every decision can be tested without
//! processes, files or sleeps.

pub mod control;
mod decide;
pub mod executor;
mod files;
mod live;
mod resume;
pub mod schedule;
mod state;

pub use control::{Command, CommandError, CommandRequest, Status, SupervisorHandle};
pub use decide::{
    decide, Action, Filed, Input, Launched, RestoreFailure, Routing, StartFailure, Target,
    Withdrawn,
};
pub use executor::{run, Wiring};
pub use live::LiveGroups;
pub use schedule::{Now, Schedule};
pub use state::{
    HandedPort, HistoryShare, JournaledFiling, JournaledGuard, Persisted, Phase, Resumed, Slot,
    State, Txn, TxnKind, TxnStep,
};

#[cfg(test)]
mod tests;
