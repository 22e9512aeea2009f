//! The end-to-end tests over the real binaries, one test executable for them all (each module
//! was its own before; one executable links the support crate once, not ten times).

mod admission;
mod approve;
mod artifacts;
mod configuration;
mod conformance;
mod crash;
mod execute;
mod foreign_client;
mod fs_write;
mod guide;
mod jsonrpc;
mod mcp;
mod objects;
mod terraform;
mod tickets;
