//! The admission side of the mechanism protocol.

pub mod cli;
pub mod commands;
pub mod exit;
pub mod logging;
