//! Failpoints: the process aborts itself (or pauses) at a named step, so tests can kill an
//! execute at every step boundary for real, or hold it there, and check what follows.
//!
//! `MECHANISM_FAILPOINT=STEP` acts the first time `STEP` is reached, `STEP@N` the N-th
//! time. The action is to abort (no unwinding, no destructors, no flushing, as `kill -9`),
//! or, with `MECHANISM_FAILPOINT_SLEEP_MS=MS`, to sleep that long and go on. Only debug
//! builds (the ones the tests run) read these variables; release builds compile every
//! failpoint to nothing.

/// The environment variable naming the step.
pub const ENV: &str = "MECHANISM_FAILPOINT";

/// The environment variable that turns the abort into a pause of this many milliseconds.
pub const SLEEP_ENV: &str = "MECHANISM_FAILPOINT_SLEEP_MS";

/// Acts if `step` is the failpoint's step and this is the hit it names.
#[cfg(debug_assertions)]
pub fn hit(step: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;

    struct Target {
        step: String,
        nth: usize,
        sleep_ms: Option<u64>,
    }
    static TARGET: OnceLock<Option<Target>> = OnceLock::new();
    static HITS: AtomicUsize = AtomicUsize::new(0);
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var(ENV).ok()?;
        let (step, nth) = match spec.rsplit_once('@') {
            Some((step, n)) => (step.to_owned(), n.parse().unwrap_or(1)),
            None => (spec, 1),
        };
        let sleep_ms = std::env::var(SLEEP_ENV).ok().and_then(|ms| ms.parse().ok());
        Some(Target {
            step,
            nth,
            sleep_ms,
        })
    });
    let Some(target) = target else { return };
    if target.step != step || HITS.fetch_add(1, Ordering::SeqCst) + 1 != target.nth {
        return;
    }
    match target.sleep_ms {
        Some(ms) => {
            tracing::warn!(step, ms, "failpoint: pausing");
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        None => {
            tracing::warn!(step, "failpoint: aborting");
            std::process::abort();
        }
    }
}

/// Release builds have no failpoints.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_step: &str) {}
