//! One test's world: a scratch directory holding a workspace `ws/` (with the fixture git
//! repository at `ws/repo`), an operator key made by `ssh-keygen` (`keys/`) and a store
//! (`store/`).

use std::path::{Path, PathBuf};

use protocol::Digest;
use serde_json::{json, Value};

use crate::fixtures::{admit, put_patch, Operator};
use crate::repo;
use crate::server::Server;
use crate::Scratch;

/// A workspace, an operator and a store in one scratch directory.
pub struct World {
    /// The scratch directory holding everything.
    pub s: Scratch,
    /// The operator whose key signs force-acks.
    pub operator: Operator,
}

impl World {
    /// A workspace holding the fixture repository at `ws/repo`.
    pub fn new() -> Self {
        let world = Self::empty();
        repo::init(&world.repo());
        world
    }

    /// An empty workspace, for mechanisms other than git_apply_patch.
    pub fn empty() -> Self {
        let s = Scratch::new();
        std::fs::create_dir_all(s.path("ws")).expect("create the workspace");
        let operator = Operator::new(&s.path("keys"));
        Self { s, operator }
    }

    /// The workspace, the root the mechanisms work in.
    pub fn workspace(&self) -> PathBuf {
        self.s.path("ws")
    }

    /// The fixture repository.
    pub fn repo(&self) -> PathBuf {
        self.s.path("ws/repo")
    }

    /// The object store.
    pub fn store(&self) -> PathBuf {
        self.s.path("store")
    }

    /// Where `main` points now.
    pub fn head(&self) -> String {
        repo::rev(&self.repo(), "refs/heads/main")
    }

    /// `mechanism-server git_apply_patch` on the workspace and store, trusting the operator.
    pub fn server(&self) -> Server {
        self.server_env(&[])
    }

    /// The same with extra environment variables.
    pub fn server_env(&self, env: &[(&str, &str)]) -> Server {
        Server::spawn_env(
            &self.workspace(),
            &self.store(),
            Some(&self.operator.allowed_signers),
            &[],
            env,
        )
    }

    /// Stores the patch of what `edit` does to the repository (which is left as it was).
    pub fn patch(&self, edit: impl FnOnce(&Path)) -> Digest {
        let text = repo::patch_from_edits(&self.repo(), edit);
        assert!(!text.is_empty(), "the edit produced no patch");
        put_patch(&self.store(), &text)
    }

    /// Stores an admitting witness for a plan response (`plan_hash` and `plan`), as the
    /// admission would after all six gates passed; returns its digest.
    pub fn admit(&self, planned: &Value) -> Digest {
        admit(&self.store(), &plan_hash(planned), &planned["plan"])
    }

    /// Admits a plan response and returns the params of its execute, with a force-ack by
    /// the operator when the plan is destructive.
    pub fn execute_params(&self, planned: &Value) -> Value {
        let plan_hash = plan_hash(planned);
        let admission = self.admit(planned);
        let mut params = json!({"plan_hash": plan_hash, "admission": admission});
        if planned["plan"]["destructive"] == true {
            params["force_ack"] = self.operator.force_ack(&plan_hash, &admission);
        }
        params
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

/// The `plan_hash` of a plan response.
pub fn plan_hash(planned: &Value) -> Digest {
    planned["plan_hash"]
        .as_str()
        .and_then(|hash| hash.parse().ok())
        .unwrap_or_else(|| panic!("no valid plan_hash in {planned:#}"))
}
