//! Failpoints: the process aborts itself at a named step, so tests can kill an execute at
//! every step boundary for real and check what the next execute makes of it.
//!
//! `MECHANISM_FAILPOINT=STEP` aborts the first time `STEP` is reached, `STEP@N` the N-th
//! time. Only debug builds (the ones the tests run) read the variable; release builds
//! compile every failpoint to nothing.

/// The environment variable naming the step to abort at.
pub const ENV: &str = "MECHANISM_FAILPOINT";

/// Aborts the process (no unwinding, no destructors, no flushing) if `step` is the
/// failpoint's step and this is the hit it names.
#[cfg(debug_assertions)]
pub fn hit(step: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;

    static TARGET: OnceLock<Option<(String, usize)>> = OnceLock::new();
    static HITS: AtomicUsize = AtomicUsize::new(0);
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var(ENV).ok()?;
        Some(match spec.rsplit_once('@') {
            Some((name, n)) => (name.to_owned(), n.parse().unwrap_or(1)),
            None => (spec, 1),
        })
    });
    if let Some((name, n)) = target {
        if name == step && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            tracing::warn!(step, "failpoint: aborting");
            std::process::abort();
        }
    }
}

/// Release builds have no failpoints.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_step: &str) {}
