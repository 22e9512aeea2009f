//! The mechanism side of the protocol: the server runtime and the built-in mechanisms.

pub mod git_apply_patch;
