//! The built-in mechanisms, by name: the command line of the `mechanism-server` executable
//! that serves one of them, `mechanism-server MECHANISM --root DIR --store DIR
//! [--force-ack-signers FILE]` (and `[--terraform PATH]` for terraform_plan_apply), and
//! their offline state checks for `admission verify`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mechanism_server::{CheckState, Options};

/// The names of the built-in mechanisms.
pub const BUILTIN: &[&str] = &[git_apply_patch::ID, terraform_plan_apply::ID];

/// terraform_plan_apply, for its state checks (which never run terraform).
static TERRAFORM: terraform_plan_apply::TerraformPlanApply =
    terraform_plan_apply::TerraformPlanApply::new();

/// The state checks of the built-in mechanism `id`, if it is one.
pub fn state_checker(id: &str) -> Option<&'static dyn CheckState> {
    match id {
        git_apply_patch::ID => Some(&git_apply_patch::GitApplyPatch),
        terraform_plan_apply::ID => Some(&TERRAFORM),
        _ => None,
    }
}

/// Serve a built-in mechanism over JSON-RPC 2.0 on stdio.
#[derive(Debug, Parser)]
#[command(name = "mechanism-server", version, about)]
struct Args {
    /// The mechanism to serve (built in: git_apply_patch, terraform_plan_apply).
    mechanism: String,
    #[command(flatten)]
    options: Options,
    /// The terraform executable (terraform_plan_apply only); default: $MECHANISM_TERRAFORM,
    /// else terraform on PATH.
    #[arg(long, value_name = "PATH")]
    terraform: Option<PathBuf>,
    /// Where terraform init finds providers that are not built in: a filesystem mirror or
    /// plugin cache (terraform_plan_apply only); default: none, nothing is ever downloaded.
    #[arg(long, value_name = "DIR")]
    terraform_plugin_dir: Option<PathBuf>,
}

/// Parses `args` (the program name first) and serves the mechanism they name until stdin
/// closes; returns the exit code (2 for an unknown mechanism or bad options).
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = Args::parse_from(args);
    match args.mechanism.as_str() {
        git_apply_patch::ID if args.terraform.is_some() || args.terraform_plugin_dir.is_some() => {
            eprintln!(
                "error: --terraform and --terraform-plugin-dir are options of terraform_plan_apply only"
            );
            ExitCode::from(2)
        }
        git_apply_patch::ID => {
            mechanism_server::serve(git_apply_patch::GitApplyPatch, &args.options)
        }
        terraform_plan_apply::ID => {
            let mut mechanism = match args.terraform {
                Some(program) => terraform_plan_apply::TerraformPlanApply::with_terraform(program),
                None => terraform_plan_apply::TerraformPlanApply::new(),
            };
            if let Some(dir) = args.terraform_plugin_dir {
                mechanism = mechanism.with_plugin_dir(dir);
            }
            mechanism_server::serve(mechanism, &args.options)
        }
        unknown => {
            eprintln!(
                "error: unknown mechanism {unknown:?}; built in: {}",
                BUILTIN.join(", ")
            );
            ExitCode::from(2)
        }
    }
}
