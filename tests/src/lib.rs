//! Harness for end-to-end tests over the real binaries, each run in a scratch directory:
//! scratch directories, real git repositories, a spawned `mechanism-server` spoken to over
//! its real pipes, and the in-toto project's own bindings to read what we attest.

pub mod fixtures;
pub mod in_toto;
pub mod repo;
pub mod scratch;
pub mod server;

pub use scratch::{bin_path, Scratch};
