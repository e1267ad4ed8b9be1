//! Async tasks, inspected like Deferred chains (tokio-console's task view, built in).
//!
//! Every future weft runs for a program — [`Reactor::spawn`](crate::Reactor::spawn), the
//! per-connection tasks of listeners (`listen`, `listen_stream`) and connectors, and
//! [`Deferred::from_future`](crate::defer::Deferred::from_future) — is wrapped once, at
//! spawn, in an instrumented future (`instrument`) with a [`TaskCell`]: its id, label,
//! spawn site, connection, state, poll count, busy and idle time, when it last ran and
//! the Deferred it awaits. The cell is the task's one allocation; each poll costs two
//! stopwatch reads and a few relaxed stores into it, no lock and no allocation.
//!
//! The same detectors as for chains apply, reported through the Deferred event path
//! (so the hub, history, `/api/deferreds` and `/ws` show tasks beside chains):
//! - `slow`: one poll ran longer than the slow-callback threshold (inline, after it);
//! - `stalled`: pending, not woken, for longer than the stall threshold of its label
//!   ([`set_stall_threshold_for`](crate::defer::set_stall_threshold_for), as for chains),
//!   unless what it waits on is its own peer (an idle connection is not a stall);
//! - `leaked`: pending while nothing holds its waker, so nothing can ever wake it.
//!
//! # Layout
//! - `cell.rs`: [`TaskCell`], the header every poll writes and any thread reads.
//! - `instrument.rs`: the wrapper future and the per-poll path.
//! - `clock.rs`: the time polls are measured in (the stopwatch, on the thread clock's
//!   timeline).
//! - `events.rs`: [`TaskSpawned`] and [`TaskEnded`], carried as Deferred events.
//! - `detect.rs`: the stall and leak scan, run with the Deferred stall scan.

mod cell;
mod clock;
mod detect;
mod events;
mod instrument;

pub use cell::{TaskCell, TaskFigures, TaskKind, TaskState};
pub(crate) use clock::PollClock;
pub use detect::{PendingTask, pending_tasks};
pub(crate) use detect::{TaskSlots, scan_for_stalls};
pub use events::{TaskEnded, TaskSpawned};
pub(crate) use instrument::{
    Scope, instrument, note_awaiting, note_connection, note_slow_inside, slow_reported_total,
    unreported,
};
pub use instrument::{awaiting_outside_events, waiting_on_peer};

#[cfg(test)]
mod tests;
