//! The mechanism runtime: a [`Mechanism`] predicts and applies one kind of effect; the
//! runtime serves it over JSON-RPC 2.0 on stdio and does everything else.

pub mod failpoint;
pub mod mechanism;
pub mod server;

pub use mechanism::Mechanism;
