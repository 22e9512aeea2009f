//! The admission side of the mechanism protocol.

pub mod cli;
pub mod client;
pub mod commands;
pub mod conformance;
pub mod exit;
pub mod gates;
pub mod journal;
pub mod locate;
pub mod logging;
pub mod mcp;
pub mod outcome;
pub mod pipeline;
pub mod registry;
mod result_checks;
pub mod session;
pub mod text;
pub mod tickets;
pub mod verify;
pub mod workorder;
