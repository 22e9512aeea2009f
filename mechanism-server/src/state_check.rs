//! Offline checks of the state an executed plan left, which `admission verify` (and
//! `admission run`, once the mechanism reports success) makes for the mechanism the plan
//! names: a mechanism that can prove its effects from its root alone implements
//! [`CheckState`] (git: the predicted commit exists, on its branch, changing exactly the
//! planned files).

use std::collections::BTreeMap;
use std::path::Path;

use protocol::artifact::effect::Effect;
use protocol::artifact::kinds::{Plan, ResultArtifact};
use protocol::ErrorCode;

/// What a mechanism proves, offline, about the state its executed plans leave.
pub trait CheckState: Send + Sync {
    /// The `state.*` checks of `plan`, executed under `root` (the mechanism's root, read
    /// only), with its recorded `result` when the caller has it. Effects it does not check
    /// are named by one skipped `state.other` check ([`StateCheck::unchecked`]).
    fn check_state(
        &self,
        root: &Path,
        plan: &Plan,
        result: Option<&ResultArtifact>,
    ) -> Vec<StateCheck>;
}

/// One line of a state check: its name (`state.*`), whether it held, and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateCheck {
    /// What was checked, e.g. `state.commit`.
    pub name: String,
    /// Whether it held.
    pub verdict: Verdict,
    /// What was found, for people.
    pub detail: String,
}

/// Whether a check held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It held.
    Pass,
    /// It failed, with the code a refusal of the same thing would carry.
    Fail(ErrorCode),
    /// It could not be made; nothing contradicts the plan.
    Skip,
}

impl StateCheck {
    /// A check that held.
    pub fn pass(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, Verdict::Pass, detail)
    }

    /// A check that failed with `code`.
    pub fn fail(name: &str, code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(name, Verdict::Fail(code), detail)
    }

    /// A check that could not be made.
    pub fn skip(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, Verdict::Skip, detail)
    }

    /// Passes with `ok` or fails with `code` and `failed`, as `held` says.
    pub fn holds(
        name: &str,
        held: bool,
        code: ErrorCode,
        ok: impl Into<String>,
        failed: impl Into<String>,
    ) -> Self {
        if held {
            Self::pass(name, ok)
        } else {
            Self::fail(name, code, failed)
        }
    }

    /// `state.other`, skipped, counting `effects` by type: they have no offline check.
    /// `None` when there are none.
    pub fn unchecked<'a>(effects: impl IntoIterator<Item = &'a Effect>) -> Option<Self> {
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for effect in effects {
            *count.entry(effect.effect_type.as_str()).or_default() += 1;
        }
        if count.is_empty() {
            return None;
        }
        let list: Vec<String> = count.iter().map(|(t, n)| format!("{n} {t}")).collect();
        Some(Self::skip(
            "state.other",
            format!("no offline state check for {}", list.join(", ")),
        ))
    }

    fn new(name: &str, verdict: Verdict, detail: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            verdict,
            detail: detail.into(),
        }
    }
}
