//! The ticket lifecycle above mechanisms: tickets, the events that schedule them, and the
//! cycle each scheduled event runs (context snapshot, workorder, run, output bundle, run
//! record, pause state), every step a stored artifact.

pub mod file;
pub mod ledger;
pub mod process;
pub mod trace;
