//! The protocol crate's integration tests, one test executable for them all (one link of the
//! crate and its dependencies instead of three).

mod force_ack;
mod schemas;
mod store;
