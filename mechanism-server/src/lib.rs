//! The mechanism runtime: a [`Mechanism`] predicts and applies one kind of effect; the
//! runtime serves it over JSON-RPC 2.0 on stdio and does everything else: the plan artifact,
//! the plan store, execute by hash verified by recomputation, admission and force-ack
//! checks, results and in-toto witnesses, idempotence, one execution per plan at a time,
//! and finishing executions a kill interrupted.
//!
//! A mechanism's executable is one call:
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     mechanism_server::serve_stdio(MyMechanism)
//! }
//! ```
//!
//! which gives it the standard command line, `--root DIR --store DIR [--force-ack-signers
//! FILE]` ([`Options`]). [`testing`] runs one in process, for its tests. A mechanism whose
//! effects can be proven offline from its root implements [`CheckState`] too, for
//! `admission verify`.

mod cli;
pub mod failpoint;
pub mod flock;
mod mechanism;
mod server;
mod state_check;
pub mod testing;

pub use cli::{serve, serve_stdio, Options};
pub use mechanism::{
    parse_params, partly_applied, Env, ExecContext, Executed, Mechanism, PlanRequest, Proposal,
    Result,
};
/// The wire types every mechanism uses: effects, plans, operations, digests, error codes.
pub use protocol;
/// The one error type: a stable code, a message and structured facts.
pub use protocol::ErrorInfo;
pub use state_check::{CheckState, StateCheck, Verdict};
