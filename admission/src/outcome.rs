//! How one check came out: `verify` and `conformance` report their checks alike.

use serde::Serialize;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    /// The check held.
    Pass,
    /// It did not; the detail says how.
    Fail,
    /// The check could not be made (the detail says why); not a failure.
    Skip,
}

impl Outcome {
    /// `PASS`, `FAIL` or `SKIP`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "SKIP",
        }
    }

    /// Whether nothing contradicts what was checked: it passed, or could not be made.
    pub fn held(self) -> bool {
        self != Outcome::Fail
    }
}
