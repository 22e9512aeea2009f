//! Verb params and results (in progress).
