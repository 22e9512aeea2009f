//! Typed views of every artifact kind (in progress).
