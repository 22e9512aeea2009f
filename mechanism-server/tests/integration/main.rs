//! The runtime's integration tests, one test executable for them all (one link of the crate and
//! its dependencies instead of two).

mod defaults;
mod runtime;
