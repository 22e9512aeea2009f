//! A root module opened for terraform: locked against other plans and applies of it, and
//! initialised, with `terraform init` skipped while the data directory was initialised by
//! the same terraform for the same configuration.

use std::fs;
use std::path::Path;

use protocol::Digest;

use crate::cli::Terraform;
use crate::error::TerraformError;
use crate::paths::ModuleDir;
use crate::private::{ModuleLock, Private};
use crate::state;

/// The file in terraform's data directory saying what the last `init` there was for.
const STAMP: &str = "mechanism-init";

/// A locked, initialised module.
pub struct Opened {
    /// The module.
    pub module: ModuleDir,
    /// terraform for it.
    pub terraform: Terraform,
    /// The digest of its configuration, local modules included.
    pub configuration: Digest,
    /// The lock, held as long as this is.
    _lock: ModuleLock,
    /// Whether `init` ran since the module was opened.
    initialised: bool,
}

impl Opened {
    /// Locks `module` in `terraform`'s workspace (`BUSY` when another holds it) and
    /// initialises it unless its data directory is initialised for this configuration.
    pub fn open(
        root: &Path,
        private: &Private,
        module: ModuleDir,
        terraform: Terraform,
    ) -> Result<Self, TerraformError> {
        let lock = private.lock(&module.path, terraform.workspace())?;
        let configuration = state::configuration_digest(root, &module.path, terraform.data_dir())?;
        let mut opened = Self {
            module,
            terraform,
            configuration,
            _lock: lock,
            initialised: false,
        };
        let stamp = fs::read_to_string(opened.terraform.data_dir().join(STAMP)).ok();
        if stamp.as_deref() != Some(opened.stamp().as_str()) {
            opened.init(root)?;
        }
        Ok(opened)
    }

    /// Runs `f` with terraform; when it fails and `init` was skipped, initialises and runs it
    /// again: what the stamp cannot see (a workspace's state directory removed, a
    /// terraform upgraded in place) then fails only once.
    pub fn retrying_init<T>(
        &mut self,
        root: &Path,
        f: impl Fn(&Terraform) -> Result<T, TerraformError>,
    ) -> Result<T, TerraformError> {
        match f(&self.terraform) {
            Err(_) if !self.initialised => {
                self.init(root)?;
                f(&self.terraform)
            }
            done => done,
        }
    }

    /// `terraform init`, then the configuration read again (init installs the modules) and
    /// stamped.
    fn init(&mut self, root: &Path) -> Result<(), TerraformError> {
        let data_dir = self.terraform.data_dir().to_owned();
        // A failed init must not leave an old stamp that says the directory is ready.
        let _ = fs::remove_file(data_dir.join(STAMP));
        self.terraform.init()?;
        self.initialised = true;
        self.configuration = state::configuration_digest(root, &self.module.path, &data_dir)?;
        fs::write(data_dir.join(STAMP), self.stamp()).map_err(|e| {
            TerraformError::Internal(format!("writing {}: {e}", data_dir.join(STAMP).display()))
        })
    }

    /// What `init` was for: the executable, its plugin directory, the workspace and the
    /// configuration.
    fn stamp(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n",
            self.terraform.program().display(),
            self.terraform.plugin_dir().display(),
            self.terraform.workspace(),
            self.configuration
        )
    }
}
