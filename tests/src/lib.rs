//! Harness for end-to-end tests over the real binaries, each run in a scratch directory:
//! scratch directories, real git repositories, and a spawned `mechanism-server` spoken to
//! over its real pipes.

pub mod fixtures;
pub mod repo;
pub mod scratch;
pub mod server;

pub use scratch::{bin_path, Scratch};
