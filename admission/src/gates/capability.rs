//! G-CAP: every touched resource and every intended effect lies inside the registry's grants
//! for the mechanism AND inside the capability scope the mechanism declared in `describe`.
//!
//! The permission is the intersection of the two, checked on each concrete resource: a
//! `(capability, resource)` pair passes when some registry grant of that capability and some
//! declared-scope grant of that capability both match the resource. Checking the resource
//! against both is exact, where deciding whether one glob includes another would only
//! approximate it.
//!
//! Touches map to capabilities as follows:
//! - `read` needs no grant. The plan has already been computed, so the reads happened; a
//!   gate cannot undo them. The mechanism's `--root` (the workspace) bounds what it may read,
//!   and the resource must still be a safe relative path.
//! - `write` needs any granted capability that changes a resource: every capability except
//!   `fs.read` and the deleting ones (for git_apply_patch: `fs.write`, `fs.mode`,
//!   `git.commit`). The effects carry the precise capability and are checked exactly.
//! - `delete` needs a deleting capability: one whose last dotted word is `delete`
//!   (`fs.delete`).
//!
//! Each effect's `type` must also be one of the effect types the operation declared.
//! A resource that is absolute, contains `..`, `.` or empty components, or a backslash is
//! denied outright, whatever the grants say; so is any change inside the object store when
//! it lies in the workspace (`--store .mechanism` in a repository), whatever `**` grants.
//!
//! # Resource globs
//!
//! The grant language is deliberately small, so a registry means exactly what it says:
//! - a glob is `/`-separated components, relative (no leading `/`), with no empty, `.` or
//!   `..` component;
//! - `*` matches any run of characters inside one component, `?` exactly one character;
//! - a component that is exactly `**` matches zero or more whole components;
//! - every other character is literal, and `[`, `]`, `{`, `}`, `\` are refused rather than
//!   read as another glob dialect's classes, alternations or escapes;
//! - no wildcard ever matches a `.git` component (in any ASCII case, ignoring trailing dots
//!   and spaces): writing into a repository's `.git` runs code (hooks, config), so only a
//!   grant that spells `.git` out literally reaches inside one.
//!
//! We match components ourselves instead of using a glob crate: the semantics above are a
//! policy and fit in a page, `*` can never cross `/` whatever a builder's flags say, and the
//! dynamic-programming matcher is linear in the resource per pattern component.

use std::collections::BTreeSet;
use std::fmt;

use protocol::artifact::effect::{unsafe_resource, Access};
use protocol::artifact::kinds::{Gate, GateRecord, Grant};
use protocol::ErrorCode;

use super::{decide, Context, Problem};

/// The resource naming the root itself.
const ROOT: &str = ".";
/// The capability a read would need, which this gate grants implicitly.
const FS_READ: &str = "fs.read";

/// A parsed resource glob (see the module documentation for its language).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGlob {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`: zero or more components.
    AnyComponents,
    /// One component, matched character by character.
    Component(Vec<Token>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyChar,
    AnyRun,
}

/// Why a glob is not in the grant language.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource glob {glob:?}: {reason}")]
pub struct GlobError {
    /// The glob as written.
    pub glob: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl ResourceGlob {
    /// Parses a glob, refusing anything outside the grant language.
    pub fn parse(glob: &str) -> Result<Self, GlobError> {
        let fail = |reason| GlobError {
            glob: glob.to_owned(),
            reason,
        };
        if glob.is_empty() {
            return Err(fail("is empty"));
        }
        if glob.starts_with('/') {
            return Err(fail("is absolute; globs are relative to the workspace"));
        }
        if let Some(bad) = glob
            .chars()
            .find(|c| matches!(c, '[' | ']' | '{' | '}' | '\\'))
        {
            return Err(fail(match bad {
                '\\' => "contains a backslash; separate components with /",
                _ => "contains [ ] { or }: classes and alternations are not supported",
            }));
        }
        let mut segments = Vec::new();
        for component in glob.split('/') {
            match component {
                "" => return Err(fail("has an empty component")),
                "." | ".." => return Err(fail("has a . or .. component")),
                "**" => segments.push(Segment::AnyComponents),
                _ if component.contains("**") => {
                    return Err(fail(
                        "uses ** inside a component; ** must be a whole component",
                    ))
                }
                _ => segments.push(Segment::Component(
                    component
                        .chars()
                        .map(|c| match c {
                            '*' => Token::AnyRun,
                            '?' => Token::AnyChar,
                            c => Token::Literal(c),
                        })
                        .collect(),
                )),
            }
        }
        Ok(Self {
            text: glob.to_owned(),
            segments,
        })
    }

    /// Whether `resource` (a `/`-separated relative path) matches.
    pub fn matches(&self, resource: &str) -> bool {
        let components: Vec<&str> = resource.split('/').collect();
        wildcard_match(
            &self.segments,
            &components,
            |segment| matches!(segment, Segment::AnyComponents),
            |component| !is_git_dir(component),
            |segment, component| match segment {
                Segment::Component(tokens) => component_matches(tokens, component),
                Segment::AnyComponents => false,
            },
        )
    }
}

impl fmt::Display for ResourceGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One component against one pattern component; wildcards never match a `.git` component.
fn component_matches(tokens: &[Token], component: &str) -> bool {
    let has_wildcard = tokens.iter().any(|t| !matches!(t, Token::Literal(_)));
    if has_wildcard && is_git_dir(component) {
        return false;
    }
    let chars: Vec<char> = component.chars().collect();
    wildcard_match(
        tokens,
        &chars,
        |token| matches!(token, Token::AnyRun),
        |_| true,
        |token, c| match token {
            Token::Literal(l) => l == c,
            Token::AnyChar => true,
            Token::AnyRun => false,
        },
    )
}

/// `.git` in any ASCII case; trailing dots and spaces are dropped as Windows does on open.
fn is_git_dir(component: &str) -> bool {
    component
        .trim_end_matches(['.', ' '])
        .eq_ignore_ascii_case(".git")
}

/// Wildcard matching by dynamic programming over the text, one pattern element at a time:
/// `row[j]` says whether the pattern so far matches the first `j` text elements. A star
/// element matches any run of text elements it may absorb; any other element matches one.
fn wildcard_match<P, T>(
    pattern: &[P],
    text: &[T],
    is_star: impl Fn(&P) -> bool,
    star_absorbs: impl Fn(&T) -> bool,
    matches_one: impl Fn(&P, &T) -> bool,
) -> bool {
    let mut row = vec![false; text.len() + 1];
    row[0] = true;
    for element in pattern {
        let mut next = vec![false; text.len() + 1];
        if is_star(element) {
            next[0] = row[0];
            for (j, item) in text.iter().enumerate() {
                next[j + 1] = row[j + 1] || (next[j] && star_absorbs(item));
            }
        } else {
            for (j, item) in text.iter().enumerate() {
                next[j + 1] = row[j] && matches_one(element, item);
            }
        }
        row = next;
    }
    row[text.len()]
}

/// Grants with their globs parsed once per gate run rather than once per resource.
struct Compiled {
    grants: Vec<(String, Vec<ResourceGlob>)>,
}

impl Compiled {
    /// Parses every glob; each one that does not parse is reported and then matches nothing.
    fn new(grants: &[Grant], whose: &str, problems: &mut Vec<Problem>) -> Self {
        let grants = grants
            .iter()
            .map(|grant| {
                let globs = grant
                    .resources
                    .iter()
                    .filter_map(|glob| match ResourceGlob::parse(glob) {
                        Ok(glob) => Some(glob),
                        Err(e) => {
                            problems.push(Problem::new(
                                ErrorCode::CapabilityDenied,
                                format!("{whose} grant {}: {e}", grant.capability),
                            ));
                            None
                        }
                    })
                    .collect();
                (grant.capability.clone(), globs)
            })
            .collect();
        Self { grants }
    }

    fn covers(&self, capability: &str, resource: &str) -> bool {
        self.grants
            .iter()
            .any(|(cap, globs)| cap == capability && globs.iter().any(|g| g.matches(resource)))
    }
}

/// Whether a capability deletes: its last dotted word is `delete`.
fn is_deleting(capability: &str) -> bool {
    capability.rsplit('.').next() == Some("delete")
}

/// Runs G-CAP.
pub(super) fn check(ctx: &Context<'_>) -> GateRecord {
    let mut problems = Vec::new();
    let Some(plan) = ctx.plan(&mut problems) else {
        return decide(Gate::Cap, problems, String::new);
    };
    let registry = Compiled::new(&ctx.input.entry.grants, "registry", &mut problems);
    let scope = Compiled::new(
        &ctx.input.described.capability_scope,
        "declared scope",
        &mut problems,
    );
    let allowed = |capability: &str, resource: &str| -> Result<(), String> {
        match (
            registry.covers(capability, resource),
            scope.covers(capability, resource),
        ) {
            (true, true) => Ok(()),
            (false, _) => Err("outside the registry's grants".to_owned()),
            (true, false) => Err("outside the mechanism's declared capability scope".to_owned()),
        }
    };

    let in_store = |resource: &str| {
        ctx.input
            .store_location
            .is_some_and(|store| store.contains(resource))
    };
    let declared_types: Option<BTreeSet<&str>> = ctx
        .operation()
        .map(|op| op.effect_types.iter().map(String::as_str).collect());
    for effect in &plan.intended_effects {
        let (kind, resource) = (effect.effect_type.as_str(), effect.resource.as_str());
        // `.` alone is the root itself, as a repository at the root is (`"repo": "."`); only
        // a `.` among other components is a spelling to refuse.
        if let Some(why) = unsafe_resource(resource).filter(|_| resource != ROOT) {
            problems.push(denied(format!(
                "effect {kind} on {resource:?}: the path {why}"
            )));
            continue;
        }
        match &declared_types {
            Some(types) if !types.contains(kind) => problems.push(denied(format!(
                "effect {kind} on {resource}: not an effect type operation {} declares",
                plan.operation
            ))),
            None => problems.push(denied(format!(
                "effect {kind} on {resource}: operation {} is not described, so its effect types are unknown",
                plan.operation
            ))),
            Some(_) => {}
        }
        if let Err(why) = allowed(kind, resource) {
            problems.push(denied(format!("effect {kind} on {resource}: {why}")));
        }
        if in_store(resource) {
            problems.push(denied(format!("effect {kind} on {resource}: {IN_STORE}")));
        }
    }

    // The capabilities a write or delete touch may be granted by.
    let capabilities: BTreeSet<&str> = ctx
        .input
        .entry
        .grants
        .iter()
        .map(|g| g.capability.as_str())
        .collect();
    for touch in &plan.touches {
        let resource = touch.resource.as_str();
        if let Some(why) = unsafe_resource(resource).filter(|_| resource != ROOT) {
            problems.push(denied(format!(
                "{} touch of {resource:?}: the path {why}",
                access_name(touch.access)
            )));
            continue;
        }
        let fits: fn(&str) -> bool = match touch.access {
            Access::Read => continue,
            Access::Write => |c| c != FS_READ && !is_deleting(c),
            Access::Delete => is_deleting,
        };
        if in_store(resource) {
            problems.push(denied(format!(
                "{} touch of {resource}: {IN_STORE}",
                access_name(touch.access)
            )));
        }
        let granted = capabilities
            .iter()
            .filter(|c| fits(c))
            .any(|c| allowed(c, resource).is_ok());
        if !granted {
            problems.push(denied(format!(
                "{} touch of {resource}: no capability for it is both granted by the registry and declared by the mechanism",
                access_name(touch.access)
            )));
        }
    }

    decide(Gate::Cap, problems, || {
        format!(
            "{} and {} lie inside the registry grants and the declared scope",
            crate::text::count(plan.intended_effects.len(), "effect", "effects"),
            crate::text::count(plan.touches.len(), "touch", "touches")
        )
    })
}

/// Why no grant covers the object store: changing it could forge a result record or free
/// a spent force-ack nonce.
const IN_STORE: &str =
    "it lies in the object store, which no grant covers and no mechanism may change";

fn denied(reason: String) -> Problem {
    Problem::new(ErrorCode::CapabilityDenied, reason)
}

fn access_name(access: Access) -> &'static str {
    match access {
        Access::Read => "read",
        Access::Write => "write",
        Access::Delete => "delete",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(text: &str) -> ResourceGlob {
        ResourceGlob::parse(text).unwrap()
    }

    #[test]
    fn stars_stay_inside_a_component_and_double_stars_span_components() {
        assert!(glob("src/*.rs").matches("src/main.rs"));
        assert!(!glob("src/*.rs").matches("src/a/main.rs"));
        assert!(glob("src/**/*.rs").matches("src/main.rs"));
        assert!(glob("src/**/*.rs").matches("src/a/b/main.rs"));
        assert!(glob("**").matches("a"));
        assert!(glob("**").matches("a/b/c.txt"));
        assert!(glob("repo/**").matches("repo/x"));
        assert!(!glob("repo/**").matches("other/x"));
        assert!(glob("**/refs/heads/**").matches("repo/refs/heads/feature/x"));
        assert!(glob("a?c").matches("abc"));
        assert!(!glob("a?c").matches("ac"));
        assert!(glob("é*").matches("été"));
        assert!(!glob("a*").matches("b"));
        assert!(glob("*").matches(".github"));
    }

    #[test]
    fn wildcards_never_reach_into_git_directories() {
        for resource in [
            ".git/config",
            "repo/.git/hooks/pre-commit",
            "repo/.GIT/config",
            "repo/.Git./config",
            "repo/.git /config",
        ] {
            assert!(!glob("**").matches(resource), "{resource}");
            assert!(!glob("repo/*/config").matches(resource), "{resource}");
            assert!(!glob("**/config").matches(resource), "{resource}");
        }
        assert!(glob("repo/.git/**").matches("repo/.git/config"));
        assert!(glob("**").matches("repo/.gitignore"));
        assert!(glob("**").matches("repo/a.git"));
    }

    #[test]
    fn globs_outside_the_language_are_refused() {
        for bad in [
            "",
            "/etc/**",
            "a//b",
            "a/../b",
            "./a",
            "a/**b",
            "src/[ab].rs",
            "{a,b}",
            "a\\b",
        ] {
            assert!(ResourceGlob::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deleting_capabilities_are_recognised_by_their_last_word() {
        assert!(is_deleting("fs.delete"));
        assert!(is_deleting("k8s.object.delete"));
        assert!(!is_deleting("fs.write"));
        assert!(!is_deleting("fs.deleted"));
    }
}
