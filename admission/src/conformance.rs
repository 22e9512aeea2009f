//! `admission conformance`: checks that any mechanism, in any language, speaks the protocol.
//!
//! The harness starts the mechanism in a throw-away world (an empty workspace, or a copy of
//! a seed directory, and a fresh store), with the same command-line conventions the
//! registry uses (`{workspace}` and `{store}` placeholders, `--force-ack-signers FILE`
//! appended), and checks it only through the protocol: framing, JSON-RPC 2.0 errors, stdout
//! hygiene, describe, then every operation's examples from plan to a second execute, and
//! executes killed at seeded instants and finished by the next. See [`suite`] for the checks. It is the test a mechanism author runs before registering one.

pub mod peer;
pub mod report;
pub mod suite;
pub mod world;

use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::force_ack::ssh_key::rand_core::{OsRng, RngCore};

use crate::registry::{self, LaunchPaths};
use peer::Launch;
use report::Report;
use world::World;

/// The mechanism to check: a program and its argument templates.
#[derive(Debug, Clone)]
pub struct Target {
    /// A bare name (looked for next to `admission`, then on `PATH`) or a path.
    pub program: String,
    /// Arguments; `{workspace}` and `{store}` are filled in as in a registry.
    pub args: Vec<String>,
}

/// How to check it.
#[derive(Debug, Clone)]
pub struct Options {
    /// A directory the workspace starts as a copy of (it is never modified itself).
    pub seed: Option<PathBuf>,
    /// How long to wait for any one reply.
    pub timeout: Duration,
    /// The seed of `execute.killed`'s kill instants, to replay a run; random when `None`.
    pub kill_seed: Option<u64>,
}

/// Why the harness could not run at all (a failing mechanism is a report, not an error).
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// The scratch world could not be made.
    #[error("setting up the scratch workspace: {0}")]
    World(#[from] world::WorldError),
    /// The command is unusable.
    #[error("{0}")]
    Command(String),
}

/// Runs every check and returns the findings.
pub fn check(target: &Target, options: &Options) -> Result<Report, ConformanceError> {
    let world = World::new(options.seed.as_deref())?;
    let launch = Launch {
        program: resolve(&target.program)?,
        args: registry::fill_args(
            "the mechanism under test",
            &target.args,
            &LaunchPaths {
                workspace: &world.workspace,
                store: &world.store_dir,
                allowed_signers: Some(&world.allowed_signers),
            },
        )
        .map_err(|e| ConformanceError::Command(e.to_string()))?,
    };
    let kill_seed = options.kill_seed.unwrap_or_else(|| OsRng.next_u64());
    Ok(suite::run(&world, &launch, options.timeout, kill_seed))
}

/// A path with a separator is taken as given (relative to the current directory); a bare
/// name is found as a registry's would be.
fn resolve(program: &str) -> Result<PathBuf, ConformanceError> {
    if Path::new(program).components().count() > 1 {
        return std::path::absolute(program)
            .map_err(|e| ConformanceError::Command(format!("{program}: {e}")));
    }
    registry::resolve_program(program).map_err(|e| ConformanceError::Command(e.to_string()))
}
