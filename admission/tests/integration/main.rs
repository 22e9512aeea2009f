//! The admission crate's integration tests, one test executable for them all (one link of the
//! crate and its dependencies instead of four).

mod cli;
mod client;
mod gates;
mod journal;
