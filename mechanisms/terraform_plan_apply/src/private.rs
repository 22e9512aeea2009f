//! The mechanism's private working area, `<store>/private/terraform_plan_apply`, owner
//! only: the CLI configuration, terraform's data directories and the plan files. Plan files
//! hold variable values, sensitive ones included, so each is removed once used and none is
//! ever put in the object store.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use protocol::Digest;

use crate::error::TerraformError;

/// Tells plan files of one process apart.
static PLAN_FILES: AtomicU64 = AtomicU64::new(0);

/// The private working area.
#[derive(Debug, Clone)]
pub struct Private {
    dir: PathBuf,
}

impl Private {
    /// Opens (creating) the area under the store root `store`, mode 0700, with an empty
    /// CLI configuration and an empty plugin directory.
    pub fn open(store: &Path) -> Result<Self, TerraformError> {
        let dir = store.join("private").join("terraform_plan_apply");
        let shown = dir.display().to_string();
        let io = |what: &str, e: std::io::Error| {
            TerraformError::Internal(format!("the private area {shown}: {what}: {e}"))
        };
        for path in [
            dir.parent().unwrap_or(store),
            &dir,
            &dir.join("plugins"),
            &dir.join("plans"),
            &dir.join("data"),
            &dir.join("locks"),
        ] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|e| io("create", e))?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                .map_err(|e| io("chmod", e))?;
        }
        let area = Self { dir };
        area.remove_orphan_plan_files();
        let config = area.cli_config();
        if !config.exists() {
            fs::write(&config, "disable_checkpoint = true\n").map_err(|e| io("write", e))?;
        }
        Ok(area)
    }

    /// Removes the plan files of processes that are gone (killed mid-plan): they hold
    /// variable values, sensitive ones included, and nothing will ever use them.
    fn remove_orphan_plan_files(&self) {
        let Ok(entries) = fs::read_dir(self.dir.join("plans")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| n.split('-').next());
            let alive = pid.is_some_and(|pid| Path::new("/proc").join(pid).exists());
            if !alive {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// The CLI configuration terraform reads instead of the caller's.
    pub fn cli_config(&self) -> PathBuf {
        self.dir.join("cli.tfrc")
    }

    /// An empty directory: the only place `init` may find providers.
    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.join("plugins")
    }

    /// terraform's data directory (`.terraform`) for the module at `module`, so that
    /// planning writes nothing into the root.
    pub fn data_dir(&self, module: &Path) -> PathBuf {
        let key = Digest::of_bytes(module.as_os_str().as_encoded_bytes());
        self.dir.join("data").join(key.hex())
    }

    /// Takes the lock of the module at `module` in `workspace`, held until the returned
    /// guard is dropped: plans and applies of one module and workspace run one at a time.
    /// `BUSY` when another holds it still after a short while.
    pub fn lock(&self, module: &Path, workspace: &str) -> Result<ModuleLock, TerraformError> {
        let mut key = module.as_os_str().as_encoded_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(workspace.as_bytes());
        let path = self
            .dir
            .join("locks")
            .join(format!("{}.lock", Digest::of_bytes(&key).hex()));
        let io = |e: std::io::Error| {
            TerraformError::Internal(format!("the lock {}: {e}", path.display()))
        };
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        if mechanism_server::flock::lock_exclusive(&file).map_err(io)? {
            Ok(ModuleLock(file))
        } else {
            Err(TerraformError::Busy(format!(
                "another plan or apply of {} (workspace {workspace}) is running",
                module.display()
            )))
        }
    }

    /// A new plan file's name, removed when the returned guard is dropped.
    pub fn plan_file(&self) -> PlanFile {
        let n = PLAN_FILES.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{n}.tfplan", std::process::id());
        PlanFile(self.dir.join("plans").join(name))
    }
}

/// The lock of one module and workspace, released when dropped.
#[derive(Debug)]
pub struct ModuleLock(fs::File);

impl Drop for ModuleLock {
    fn drop(&mut self) {
        // Explicitly: a child forked meanwhile shares the file until it execs.
        let _ = self.0.unlock();
    }
}

/// A plan file, removed when dropped.
#[derive(Debug)]
pub struct PlanFile(PathBuf);

impl PlanFile {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PlanFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_files_of_processes_that_are_gone_are_removed_on_open() {
        let store = tempfile::tempdir().unwrap();
        let private = Private::open(store.path()).unwrap();
        let mine = private.plan_file();
        fs::write(mine.path(), "live").unwrap();
        // No process has a pid this large (the kernel's limit is 2^22).
        let orphan = private.dir.join("plans").join("4294967295-0.tfplan");
        fs::write(&orphan, "secret").unwrap();
        Private::open(store.path()).unwrap();
        assert!(!orphan.exists());
        assert!(mine.path().exists(), "a live process's plan file stays");
    }

    #[test]
    fn one_module_and_workspace_is_locked_by_one_holder_at_a_time() {
        let store = tempfile::tempdir().unwrap();
        let private = Private::open(store.path()).unwrap();
        let module = Path::new("/root/infra");
        let held = private.lock(module, "default").unwrap();
        let busy = private.lock(module, "default").unwrap_err();
        assert!(matches!(busy, TerraformError::Busy(_)), "{busy}");
        private.lock(module, "staging").unwrap();
        private.lock(Path::new("/root/other"), "default").unwrap();
        drop(held);
        private.lock(module, "default").unwrap();
    }
}
