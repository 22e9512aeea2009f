//! The `terraform_plan_apply` mechanism: plans a terraform root module with the real CLI
//! and applies exactly that plan. Each resource or output change is one typed effect whose
//! values appear only as digests; the plan pins the state (lineage, serial, digest), the
//! configuration and the terraform version, so a plan whose world moved on is stale.
//!
//! terraform is the executable given to [`TerraformPlanApply::with_terraform`] (`--terraform`),
//! else the one `MECHANISM_TERRAFORM` names, else `terraform` on `PATH`.

mod applied;
mod check;
mod cli;
mod error;
mod mechanism;
mod opened;
mod paths;
mod plan_json;
mod private;
mod state;

pub use cli::TERRAFORM_ENV;
pub use error::TerraformError;
pub use mechanism::{TerraformPlanApply, APPLY, DESTROY, ID};
