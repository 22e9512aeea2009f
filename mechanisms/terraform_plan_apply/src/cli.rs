//! Running the terraform CLI in an environment the mechanism controls: no prompts, no
//! colours, no version check, its own (empty) CLI configuration, its own data directory,
//! no provider downloads, and none of the caller's `TF_*` settings but `TF_VAR_*`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::applied::ApplyLog;
use crate::error::TerraformError;
use crate::private::Private;

/// The environment variable naming the terraform executable; without it, `terraform` is
/// looked up on `PATH`.
pub const TERRAFORM_ENV: &str = "MECHANISM_TERRAFORM";

/// One root module's terraform: the executable, the module and the workspace.
#[derive(Debug, Clone)]
pub struct Terraform {
    program: PathBuf,
    module: PathBuf,
    workspace: String,
    cli_config: PathBuf,
    data_dir: PathBuf,
    plugin_dir: PathBuf,
}

impl Terraform {
    /// terraform for the module at `module` in `workspace`, with its private files in
    /// `private`: the executable `program`, else the one [`TERRAFORM_ENV`] names, else
    /// `terraform` on `PATH`; providers only from `plugin_dir`, else from nowhere.
    pub fn new(
        program: Option<&Path>,
        plugin_dir: Option<&Path>,
        private: &Private,
        module: &Path,
        workspace: &str,
    ) -> Self {
        let program = program.map_or_else(
            || {
                std::env::var_os(TERRAFORM_ENV)
                    .filter(|p| !p.is_empty())
                    .map_or_else(|| PathBuf::from("terraform"), PathBuf::from)
            },
            Path::to_path_buf,
        );
        Self {
            program,
            module: module.to_owned(),
            workspace: workspace.to_owned(),
            cli_config: private.cli_config(),
            data_dir: private.data_dir(module),
            plugin_dir: plugin_dir.map_or_else(|| private.plugin_dir(), Path::to_path_buf),
        }
    }

    /// The executable.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Where `init` finds providers.
    pub fn plugin_dir(&self) -> &Path {
        &self.plugin_dir
    }

    /// The workspace.
    pub fn workspace(&self) -> &str {
        &self.workspace
    }

    /// terraform's data directory, in the private area.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `terraform init`, which may find providers only in an empty directory: a module
    /// that needs a provider from a registry fails here, fast and offline.
    pub fn init(&self) -> Result<(), TerraformError> {
        let plugin_dir = format!("-plugin-dir={}", self.plugin_dir.display());
        let args = [
            "init",
            "-input=false",
            "-backend=true",
            "-no-color",
            &plugin_dir,
        ];
        self.run(&args).map(drop).map_err(|e| match e {
            Failure::Exited(stderr) => TerraformError::InvalidParams(format!(
                "terraform init failed (nothing is ever downloaded: only local modules and \
                 providers built in or in the plugin directory {} can be used): {stderr}",
                self.plugin_dir.display()
            )),
            Failure::Other(e) => e,
        })
    }

    /// `terraform state pull`: the state's bytes, empty when there is none yet.
    pub fn state_pull(&self) -> Result<Vec<u8>, TerraformError> {
        self.run(&["state", "pull"]).map_err(Failure::internal)
    }

    /// `terraform plan -out=PLANFILE` with `vars`, destroying everything when `destroy`.
    pub fn plan(
        &self,
        planfile: &Path,
        vars: &[String],
        destroy: bool,
    ) -> Result<(), TerraformError> {
        let mut args = vec![
            "plan".to_owned(),
            "-input=false".to_owned(),
            "-no-color".to_owned(),
            "-lock=true".to_owned(),
            format!("-out={}", planfile.display()),
        ];
        if destroy {
            args.push("-destroy".to_owned());
        }
        args.extend(vars.iter().map(|v| format!("-var={v}")));
        self.run(&args).map(drop).map_err(|e| match e {
            Failure::Exited(stderr) => {
                TerraformError::InvalidParams(format!("terraform plan failed: {stderr}"))
            }
            Failure::Other(e) => e,
        })
    }

    /// `terraform show -json PLANFILE`.
    pub fn show(&self, planfile: &Path) -> Result<Vec<u8>, TerraformError> {
        self.run(&[
            "show".as_ref(),
            "-json".as_ref(),
            "-no-color".as_ref(),
            planfile.as_os_str(),
        ])
        .map_err(Failure::internal)
    }

    /// `terraform apply -json PLANFILE`: exactly the saved plan, which terraform itself
    /// refuses once the state moved on. Returns what it reported, and whether it failed.
    pub fn apply(&self, planfile: &Path) -> Result<(ApplyLog, bool), TerraformError> {
        let args = [
            "apply".as_ref(),
            "-input=false".as_ref(),
            "-no-color".as_ref(),
            "-json".as_ref(),
            planfile.as_os_str(),
        ];
        let output = self
            .command(&args)
            .output()
            .map_err(|e| self.cannot_run(&e))?;
        let mut log = ApplyLog::read(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !stderr.trim().is_empty() {
            log.errors.push(stderr.trim().to_owned());
        }
        Ok((log, !output.status.success()))
    }

    /// Runs terraform with `args` in the module; its stdout, or why it failed.
    fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<Vec<u8>, Failure> {
        let output = self
            .command(args)
            .output()
            .map_err(|e| Failure::Other(self.cannot_run(&e)))?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(Failure::Exited(stderr.trim().to_owned()))
        }
    }

    /// terraform with `args`, in the module, in the environment we control.
    fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new(&self.program);
        command.args(args).current_dir(&self.module);
        // Only what we set decides the plan: a caller's TF_LOG, TF_CLI_ARGS or
        // TF_CLI_CONFIG_FILE would change it; TF_VAR_* carry sensitive variables.
        for (name, _) in std::env::vars_os() {
            if is_foreign_setting(&name) {
                command.env_remove(&name);
            }
        }
        command
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("TF_DATA_DIR", &self.data_dir)
            .env("TF_WORKSPACE", &self.workspace);
        // Nothing is downloaded, modules included: every HTTP(S) request goes to a proxy
        // that is not there (the discard port), and git may use local repositories only.
        for name in ["NO_PROXY", "no_proxy"] {
            command.env_remove(name);
        }
        for name in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            command.env(name, NO_NETWORK_PROXY);
        }
        command.env("GIT_ALLOW_PROTOCOL", "file");
        command
    }

    fn cannot_run(&self, error: &std::io::Error) -> TerraformError {
        TerraformError::Internal(format!(
            "cannot run terraform ({}; pass --terraform, set {TERRAFORM_ENV} or put it on PATH): {error}",
            self.program.display()
        ))
    }
}

/// A proxy address where nothing listens, so that any download fails at once.
const NO_NETWORK_PROXY: &str = "http://127.0.0.1:9";

/// A `TF_*` variable of the caller's other than `TF_VAR_*`.
fn is_foreign_setting(name: &OsString) -> bool {
    name.to_str()
        .is_some_and(|n| n.starts_with("TF_") && !n.starts_with("TF_VAR_"))
}

/// Why a terraform command failed.
enum Failure {
    /// It ran and failed, saying this on stderr.
    Exited(String),
    /// It did not run.
    Other(TerraformError),
}

impl Failure {
    /// Any failure as an internal error: for commands that fail only when something is broken.
    fn internal(self) -> TerraformError {
        match self {
            Failure::Exited(stderr) => TerraformError::Internal(format!("terraform: {stderr}")),
            Failure::Other(e) => e,
        }
    }
}
