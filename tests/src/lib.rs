//! The tests' shared support: scratch directories, real git repositories, operator keys,
//! admitting witnesses and force-acks, a world holding them, a spawned `mechanism-server`
//! spoken to over its real pipes, and the in-toto project's own bindings to read what we
//! attest. The workspace's end-to-end tests over the real binaries live in this package too.

pub mod fixtures;
pub mod in_toto;
pub mod node;
pub mod output;
pub mod repo;
pub mod scratch;
pub mod server;
pub mod world;

pub use scratch::{bin_path, Scratch};
pub use world::World;
