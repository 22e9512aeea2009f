//! The registry and the gate pipeline over realistic inputs: a git_apply_patch describe
//! result, a plan built from typed parts, and its patch in a real temporary store.
//!
//! Each denial test breaks one thing and checks that its gate fails with the right code
//! while the other five still ran and passed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use admission::gates::{self, GateInput, GateOutcome};
use admission::registry::{self, LaunchPaths, Registry, RegistryError, RegistryOrigin};
use protocol::artifact::effect::{Access, Effect, Touch, FS_DELETE, FS_WRITE, GIT_COMMIT};
use protocol::artifact::kinds::{
    AdmissionDecision, Budget, Costs, Determinism, Gate, GateDecision, Grant, MechanismRef, Plan,
    RecipeStep, RegistryEntry, Workorder,
};
use protocol::artifact::Artifact;
use protocol::schema;
use protocol::store::{Provenance, Store, StoreLocation};
use protocol::verbs::{
    DescribeResult, Destructiveness, Example, Limits, Operation, PROTOCOL_VERSION,
};
use protocol::{Digest, ErrorCode};
use serde_json::{json, Value};

const PATCH: &str = "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1 +1 @@\n-old\n+new\n";
const BASE: &str = "1f0e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c";
const NEXT: &str = "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d";

/// Everything one admission of one plan needs, each part editable before [`World::run`].
struct World {
    _dir: tempfile::TempDir,
    store: Store,
    policy_digest: Digest,
    entry: RegistryEntry,
    described: DescribeResult,
    workorder: Workorder,
    plan: Plan,
    patch: Digest,
    /// Where the store lies in the workspace; none by default.
    store_location: Option<StoreLocation>,
}

fn pinned() -> MechanismRef {
    MechanismRef {
        id: "git_apply_patch".into(),
        version: "0.1.0".into(),
    }
}

fn params() -> Value {
    json!({
        "repo": "repo",
        "message": "apply a patch",
        "author": {"name": "Ada", "email": "ada@example.com"},
    })
}

fn grants(globs: &[&str]) -> Vec<Grant> {
    [FS_WRITE, FS_DELETE, "fs.mode", GIT_COMMIT]
        .iter()
        .map(|capability| Grant {
            capability: (*capability).to_owned(),
            resources: globs.iter().map(|g| (*g).to_owned()).collect(),
        })
        .collect()
}

fn describe_result() -> DescribeResult {
    DescribeResult {
        protocol_version: PROTOCOL_VERSION.into(),
        mechanism: pinned(),
        operations: vec![Operation {
            name: "apply".into(),
            description: "apply a unified diff to a branch and commit it".into(),
            params_schema: json!({
                "type": "object",
                "required": ["repo", "message", "author"],
                "additionalProperties": false,
                "properties": {
                    "repo": {"type": "string", "minLength": 1},
                    "branch": {"type": "string", "minLength": 1},
                    "message": {"type": "string", "minLength": 1},
                    "author": {
                        "type": "object",
                        "required": ["name", "email"],
                        "properties": {
                            "name": {"type": "string"},
                            "email": {"type": "string"}
                        }
                    },
                    "time": {"type": "string", "format": "date-time"}
                }
            }),
            inputs: vec!["patch".into()],
            effect_types: vec![
                FS_WRITE.into(),
                FS_DELETE.into(),
                "fs.mode".into(),
                GIT_COMMIT.into(),
            ],
            destructive: Destructiveness::Maybe,
            determinism: Determinism::D0,
            examples: vec![Example {
                params: params(),
                inputs: Some(BTreeMap::from([("patch".into(), PATCH.into())])),
            }],
        }],
        capability_scope: grants(&["**"]),
        limits: Limits::default(),
    }
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let patch = store
            .put_blob_bytes(PATCH.as_bytes(), &Provenance::new("admission put"))
            .unwrap();
        let registry = Registry::embedded().unwrap();
        let entry = registry.entry("git_apply_patch").unwrap().clone();
        let workorder = Workorder {
            work_order_id: "wo-42".into(),
            mechanism: "git_apply_patch".into(),
            operation: "apply".into(),
            params: params(),
            inputs: BTreeMap::from([("patch".into(), "fix.diff".into())]),
            budget: Budget {
                wall_ms: 60_000,
                bytes_written: None,
                files_touched: Some(100),
            },
            ticket_id: Some("T-7".into()),
            context_snapshot_id: None,
            budget_ms: None,
            branch: None,
            runner: None,
        };
        let plan = Plan {
            mechanism: pinned(),
            operation: "apply".into(),
            params: params(),
            inputs: BTreeMap::from([("patch".into(), patch)]),
            state: json!({"repo": "repo", "ref": "refs/heads/main", "base_commit": BASE}),
            intended_effects: vec![
                Effect::new(FS_WRITE, "repo/src/lib.rs")
                    .with("before", "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391")
                    .with("after", "d670460b4b4aece5915caf5c68d12f560a9fe3e4"),
                Effect::new(FS_DELETE, "repo/docs/old.txt"),
                Effect::new(GIT_COMMIT, "repo/refs/heads/main")
                    .with("from", BASE)
                    .with("to", NEXT),
            ],
            touches: vec![
                Touch {
                    resource: "repo/src/lib.rs".into(),
                    access: Access::Write,
                },
                Touch {
                    resource: "repo/docs/old.txt".into(),
                    access: Access::Delete,
                },
                Touch {
                    resource: "repo/Cargo.toml".into(),
                    access: Access::Read,
                },
            ],
            destructive: true,
            destructive_reasons: vec!["deletes repo/docs/old.txt".into()],
            determinism: Determinism::D0,
            estimated_costs: Costs {
                wall_ms: Some(50),
                bytes_written: Some(2048),
                files_touched: Some(2),
            },
            exec_recipe: vec![RecipeStep {
                op: "git.update_ref".into(),
                args: json!({"ref": "refs/heads/main", "from": BASE, "to": NEXT}),
            }],
        };
        Self {
            _dir: dir,
            store,
            policy_digest: registry.policy_digest(),
            entry,
            described: describe_result(),
            workorder,
            plan,
            patch,
            store_location: None,
        }
    }

    fn run(&self) -> GateOutcome {
        self.run_with(|_, _| {})
    }

    /// Plans (the typed plan, hashed), lets `edit` change the response as received and the
    /// second plan hash, then runs the gates.
    fn run_with(&self, edit: impl FnOnce(&mut Value, &mut Option<Digest>)) -> GateOutcome {
        let artifact = Artifact::from_typed(&self.plan).unwrap();
        let mut response = json!({
            "plan_hash": artifact.digest(),
            "plan": artifact.value(),
            "preview": PATCH,
        });
        let mut second = Some(artifact.digest());
        edit(&mut response, &mut second);
        let describe = serde_json::to_value(&self.described).unwrap();
        let workorder_digest = Artifact::from_typed(&self.workorder).unwrap().digest();
        gates::run(&GateInput {
            entry: &self.entry,
            policy_digest: self.policy_digest,
            describe: &describe,
            described: &self.described,
            plan_response: &response,
            workorder: &self.workorder,
            workorder_digest,
            store: &self.store,
            store_location: self.store_location.as_ref(),
            second_plan_hash: second,
        })
    }

    /// Sets the params on both the workorder and the plan, as a mechanism echoes them.
    fn set_params(&mut self, params: Value) {
        self.workorder.params = params.clone();
        self.plan.params = params;
    }
}

/// The witness as an artifact, after checking it against its schema.
fn validated_witness(outcome: &GateOutcome) -> Artifact {
    let witness = outcome
        .witness
        .as_ref()
        .expect("a plan was named, so a witness");
    let artifact = Artifact::from_typed(witness).unwrap();
    if let Err(e) = schema::validate_artifact(&artifact) {
        panic!("the witness does not validate: {e}\n{:#}", artifact.value());
    }
    artifact
}

/// Every gate ran, in order; exactly those in `failing` failed, the first with `code`. Failures
/// name `case`.
fn assert_denied_by(
    case: &str,
    outcome: &GateOutcome,
    failing: &[Gate],
    gate: Gate,
    code: ErrorCode,
) {
    let order: Vec<Gate> = outcome.records.iter().map(|r| r.gate).collect();
    assert_eq!(order, Gate::ALL, "{case}: every gate runs, in order");
    for record in &outcome.records {
        let expected = if failing.contains(&record.gate) {
            GateDecision::Fail
        } else {
            GateDecision::Pass
        };
        assert_eq!(
            record.decision,
            expected,
            "{case}: {} decided {:?}: {}",
            record.gate.as_str(),
            record.decision,
            record.reason
        );
        if record.decision == GateDecision::Fail {
            assert!(record.code.is_some(), "{case}: a FAIL carries a code");
        }
    }
    let record = outcome.records.iter().find(|r| r.gate == gate).unwrap();
    assert_eq!(
        record.code,
        Some(code),
        "{case}: {}: {}",
        gate.as_str(),
        record.reason
    );
    assert!(!outcome.admitted(), "{case}: admitted");
    let witness = validated_witness(outcome);
    assert_eq!(witness.value()["decision"], "DENY", "{case}");
}

fn reason(outcome: &GateOutcome, gate: Gate) -> &str {
    &outcome
        .records
        .iter()
        .find(|r| r.gate == gate)
        .unwrap()
        .reason
}

// ---------------------------------------------------------------------------------------
// All pass
// ---------------------------------------------------------------------------------------

#[test]
fn all_gates_pass_and_the_witness_admits_and_validates() {
    let w = World::new();
    let outcome = w.run();
    for record in &outcome.records {
        assert_eq!(
            record.decision,
            GateDecision::Pass,
            "{}: {}",
            record.gate.as_str(),
            record.reason
        );
        assert_eq!(record.code, None);
        assert!(!record.reason.is_empty());
    }
    assert!(outcome.admitted());
    assert_eq!(
        outcome.deadline_ms, 60_000,
        "min(workorder 60 s, registry 120 s)"
    );

    let witness = outcome.witness.clone().unwrap();
    assert_eq!(witness.decision, AdmissionDecision::Admit);
    assert!(witness.force_ack_required, "the plan deletes a file");
    assert_eq!(witness.mechanism, pinned());
    assert_eq!(witness.policy_digest, w.policy_digest);
    assert_eq!(
        witness.plan_hash,
        Artifact::from_typed(&w.plan).unwrap().digest()
    );
    assert_eq!(
        witness.workorder,
        Some(Artifact::from_typed(&w.workorder).unwrap().digest())
    );
    assert_eq!(witness.gates, outcome.records);
    validated_witness(&outcome);
    assert!(reason(&outcome, Gate::Provenance).contains("admission put"));
    assert!(reason(&outcome, Gate::Budget).contains("60000 ms"));
}

#[test]
fn a_non_destructive_plan_needs_no_force_ack() {
    let mut w = World::new();
    w.plan
        .intended_effects
        .retain(|e| e.effect_type != FS_DELETE);
    w.plan.touches.retain(|t| t.access != Access::Delete);
    w.plan.destructive = false;
    w.plan.destructive_reasons.clear();
    let outcome = w.run();
    assert!(outcome.admitted(), "{:#?}", outcome.records);
    assert!(!outcome.witness.unwrap().force_ack_required);
}

// ---------------------------------------------------------------------------------------
// Denials: one case a way to break one gate
// ---------------------------------------------------------------------------------------

/// One denial: what the case breaks (returning the outcome), the gates that then fail (the
/// other ones still run and pass), the gate whose code is checked, and what that gate's reason
/// must and must not say.
struct Denial {
    name: &'static str,
    breaks: fn(&mut World) -> GateOutcome,
    /// Empty for `gate` alone.
    failing: &'static [Gate],
    gate: Gate,
    code: ErrorCode,
    says: &'static [&'static str],
    never_says: &'static [&'static str],
    /// The deadline the outcome sets, where the case checks it.
    deadline_ms: Option<u64>,
}

/// A denial of `gate` alone with `code`, checking nothing more until the fields are set.
const fn denial(
    name: &'static str,
    breaks: fn(&mut World) -> GateOutcome,
    gate: Gate,
    code: ErrorCode,
) -> Denial {
    Denial {
        name,
        breaks,
        failing: &[],
        gate,
        code,
        says: &[],
        never_says: &[],
        deadline_ms: None,
    }
}

const DENIALS: &[Denial] = &[
    // G-SCHEMA
    Denial {
        says: &["params of apply", "message"],
        ..denial(
            "g_schema: params that do not fit the operation schema",
            |w| {
                w.set_params(json!({"repo": "repo", "author": {"name": "Ada"}, "colour": "red"}));
                w.run()
            },
            Gate::Schema,
            ErrorCode::InvalidParams,
        )
    },
    Denial {
        says: &["/preview"],
        ..denial(
            "g_schema: a plan response that breaks its schema",
            |w| w.run_with(|response, _| response["preview"] = json!(42)),
            Gate::Schema,
            ErrorCode::InvalidParams,
        )
    },
    // Without a described operation its effect types are unknown, so G-CAP cannot pass
    // either; the other four still judge the plan on its own and pass.
    Denial {
        failing: &[Gate::Schema, Gate::Cap],
        says: &["it offers: apply"],
        ..denial(
            "g_schema: an operation the mechanism does not describe",
            |w| {
                w.workorder.operation = "revert".into();
                w.plan.operation = "revert".into();
                w.entry
                    .determinism_ceiling
                    .insert("revert".into(), Determinism::D0);
                w.run()
            },
            Gate::Schema,
            ErrorCode::UnknownOperation,
        )
    },
    // G-INTEGRITY
    Denial {
        says: &["hashes to"],
        ..denial(
            "g_integrity: a plan tampered with after hashing",
            |w| {
                w.run_with(|response, _| {
                    response["plan"]["estimated_costs"]["wall_ms"] = json!(1);
                })
            },
            Gate::Integrity,
            ErrorCode::IntegrityMismatch,
        )
    },
    Denial {
        says: &["input patch"],
        ..denial(
            "g_integrity: an input whose stored bytes changed",
            |w| {
                let path = w.store.path_of(&w.patch);
                let mut perms = std::fs::metadata(&path).unwrap().permissions();
                #[allow(clippy::permissions_set_readonly_false)]
                perms.set_readonly(false);
                std::fs::set_permissions(&path, perms).unwrap();
                std::fs::write(&path, PATCH.replace("new", "evil")).unwrap();
                w.run()
            },
            Gate::Integrity,
            ErrorCode::IntegrityMismatch,
        )
    },
    // With no object there is no origin either, so G-PROVENANCE fails with it.
    Denial {
        failing: &[Gate::Integrity, Gate::Provenance],
        ..denial(
            "g_integrity: an input missing from the store",
            |w| {
                let missing = Digest::of_bytes(b"a patch nobody stored");
                w.plan.inputs.insert("patch".into(), missing);
                w.workorder
                    .inputs
                    .insert("patch".into(), missing.to_string());
                w.run()
            },
            Gate::Integrity,
            ErrorCode::UnknownArtifact,
        )
    },
    Denial {
        says: &["pins version 0.1.0"],
        ..denial(
            "g_integrity: a version other than the pin",
            |w| {
                w.described.mechanism.version = "0.2.0".into();
                w.plan.mechanism.version = "0.2.0".into();
                w.run()
            },
            Gate::Integrity,
            ErrorCode::UnsupportedVersion,
        )
    },
    denial(
        "g_integrity: a large inline payload",
        |w| {
            let mut params = params();
            params["message"] = json!("x".repeat(40 * 1024));
            w.set_params(params);
            w.run()
        },
        Gate::Integrity,
        ErrorCode::ArtifactRequired,
    ),
    Denial {
        says: &["params differ"],
        ..denial(
            "g_integrity: a plan for another request",
            |w| {
                let mut params = params();
                params["message"] = json!("something else");
                w.plan.params = params;
                w.run()
            },
            Gate::Integrity,
            ErrorCode::IntegrityMismatch,
        )
    },
    // G-CAP
    Denial {
        says: &[
            "write touch of other/notes.txt",
            "effect fs.chown on repo/src/lib.rs: outside the registry's grants",
        ],
        ..denial(
            "g_cap: a touch outside the grants and an effect type not granted",
            |w| {
                w.entry.grants = grants(&["repo/**"]);
                w.plan.touches.push(Touch {
                    resource: "other/notes.txt".into(),
                    access: Access::Write,
                });
                // Declared by the mechanism and inside its scope, but the registry does not
                // grant it.
                w.described.operations[0]
                    .effect_types
                    .push("fs.chown".into());
                w.described.capability_scope.push(Grant {
                    capability: "fs.chown".into(),
                    resources: vec!["**".into()],
                });
                w.plan
                    .intended_effects
                    .push(Effect::new("fs.chown", "repo/src/lib.rs").with("owner", "root"));
                w.run()
            },
            Gate::Cap,
            ErrorCode::CapabilityDenied,
        )
    },
    Denial {
        says: &["effect fs.delete on repo/docs/old.txt: outside the mechanism's declared capability scope"],
        never_says: &["repo/src/lib.rs"],
        ..denial(
            "g_cap: what the mechanism did not declare in its scope",
            |w| {
                w.described.capability_scope = vec![Grant {
                    capability: FS_WRITE.into(),
                    resources: vec!["repo/src/**".into()],
                }];
                w.run()
            },
            Gate::Cap,
            ErrorCode::CapabilityDenied,
        )
    },
    denial(
        "g_cap: writes into git directories, even under a ** grant",
        |w| {
            w.plan
                .intended_effects
                .push(Effect::new(FS_WRITE, "repo/.git/hooks/post-checkout"));
            w.run()
        },
        Gate::Cap,
        ErrorCode::CapabilityDenied,
    ),
    Denial {
        says: &[
            "delete touch of repo/.Mechanism/nonces/0123abcd: it lies in the object store",
            "effect fs.write on repo/.mechanism/refs/results/x.json: it lies in the object store",
        ],
        ..denial(
            "g_cap: changes to a store inside the workspace, even under a ** grant",
            |w| {
                w.store_location = Some(StoreLocation {
                    resource: "repo/.mechanism".into(),
                });
                assert!(
                    w.run().admitted(),
                    "nothing in the plan touches the store yet"
                );
                w.plan.touches.push(Touch {
                    resource: "repo/.Mechanism/nonces/0123abcd".into(),
                    access: Access::Delete,
                });
                w.plan
                    .intended_effects
                    .push(Effect::new(FS_WRITE, "repo/.mechanism/refs/results/x.json"));
                w.run()
            },
            Gate::Cap,
            ErrorCode::CapabilityDenied,
        )
    },
    // The plan schema refuses such resources as well.
    Denial {
        failing: &[Gate::Schema, Gate::Cap],
        says: &["climbs out with ..", "is absolute"],
        ..denial(
            "g_cap: paths that climb out or are absolute",
            |w| {
                w.plan.touches.push(Touch {
                    resource: "repo/../../etc/passwd".into(),
                    access: Access::Read,
                });
                w.plan
                    .intended_effects
                    .push(Effect::new(FS_WRITE, "/etc/passwd"));
                w.run()
            },
            Gate::Cap,
            ErrorCode::CapabilityDenied,
        )
    },
    // G-BUDGET
    Denial {
        says: &["estimated wall_ms 90000 exceeds the workorder budget of 60000"],
        // 90 s fits the registry's 120 s.
        never_says: &["registry"],
        deadline_ms: Some(60_000),
        ..denial(
            "g_budget: an estimate over the workorder budget",
            |w| {
                w.plan.estimated_costs.wall_ms = Some(90_000);
                w.run()
            },
            Gate::Budget,
            ErrorCode::BudgetExceeded,
        )
    },
    Denial {
        says: &["registry budget of 10000"],
        // The registry's bound wins.
        deadline_ms: Some(120_000),
        ..denial(
            "g_budget: an estimate over the registry budget",
            |w| {
                w.workorder.budget.wall_ms = 600_000;
                w.workorder.budget.files_touched = None;
                w.plan.estimated_costs.files_touched = Some(50_000);
                w.run()
            },
            Gate::Budget,
            ErrorCode::BudgetExceeded,
        )
    },
    // G-PROVENANCE
    Denial {
        says: &["origin is unknown"],
        ..denial(
            "g_provenance: an input without a provenance record",
            |w| {
                let object = w.store.path_of(&w.patch);
                let sidecar = PathBuf::from(format!("{}.prov.json", object.display()));
                std::fs::remove_file(&sidecar).unwrap();
                w.run()
            },
            Gate::Provenance,
            ErrorCode::UnknownArtifact,
        )
    },
    // G-DET
    Denial {
        says: &["D2, above the registry ceiling D0"],
        ..denial(
            "g_det: a level above the registry ceiling",
            |w| {
                w.plan.determinism = Determinism::D2;
                w.run()
            },
            Gate::Det,
            ErrorCode::CapabilityDenied,
        )
    },
    Denial {
        says: &["does not reproduce"],
        ..denial(
            "g_det: a D0 plan whose second plan hashes otherwise",
            |w| w.run_with(|_, second| *second = Some(Digest::of_bytes(b"another plan"))),
            Gate::Det,
            ErrorCode::StalePlan,
        )
    },
    denial(
        "g_det: a D0 plan without a second plan",
        |w| w.run_with(|_, second| *second = None),
        Gate::Det,
        ErrorCode::StalePlan,
    ),
    denial(
        "g_det: an operation the registry sets no ceiling for",
        |w| {
            w.entry.determinism_ceiling.clear();
            w.run()
        },
        Gate::Det,
        ErrorCode::CapabilityDenied,
    ),
];

#[test]
fn each_gate_denies_what_breaks_it_while_the_others_still_run() {
    for case in DENIALS {
        let mut w = World::new();
        let outcome = (case.breaks)(&mut w);
        let failing = if case.failing.is_empty() {
            std::slice::from_ref(&case.gate)
        } else {
            case.failing
        };
        assert_denied_by(case.name, &outcome, failing, case.gate, case.code);
        let why = reason(&outcome, case.gate);
        for needle in case.says {
            assert!(
                why.contains(needle),
                "{}: {needle:?} not in {why}",
                case.name
            );
        }
        for needle in case.never_says {
            assert!(!why.contains(needle), "{}: {needle:?} in {why}", case.name);
        }
        if let Some(deadline_ms) = case.deadline_ms {
            assert_eq!(outcome.deadline_ms, deadline_ms, "{}", case.name);
        }
    }
}

#[test]
fn a_d1_plan_under_a_d1_ceiling_needs_no_second_plan() {
    let mut w = World::new();
    w.entry
        .determinism_ceiling
        .insert("apply".into(), Determinism::D1);
    w.plan.determinism = Determinism::D1;
    let plan = serde_json::to_value(&w.plan).unwrap();
    assert!(!gates::requires_second_plan(&w.entry, "apply", &plan));
    let outcome = w.run_with(|_, second| *second = None);
    assert!(outcome.admitted(), "{:#?}", outcome.records);

    let embedded = Registry::embedded().unwrap();
    let entry = embedded.entry("git_apply_patch").unwrap();
    assert!(
        gates::requires_second_plan(entry, "apply", &plan),
        "ceiling D0"
    );
    assert!(
        gates::requires_second_plan(&w.entry, "apply", &json!({})),
        "unreadable level"
    );
}

// ---------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------

#[test]
fn garbage_plan_responses_fail_every_plan_gate_without_panicking() {
    let w = World::new();
    for garbage in [
        json!("garbage"),
        json!({}),
        json!({"plan_hash": 7, "plan": [1]}),
    ] {
        let outcome = w.run_with(|response, _| *response = garbage.clone());
        assert_eq!(outcome.records.len(), 6);
        assert!(outcome.witness.is_none(), "no plan is named: {garbage}");
        assert!(outcome.failures().count() >= 5, "{:#?}", outcome.records);
    }
    // A hash alone names a plan, so the denial is witnessed.
    let outcome = w.run_with(|response, _| {
        response["plan"] = json!({"kind": "mechanism.plan/v0"});
    });
    assert!(!outcome.admitted());
    let witness = validated_witness(&outcome);
    assert_eq!(witness.value()["force_ack_required"], true);
}

// ---------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------

#[test]
fn the_embedded_registry_validates_and_pins_git_apply_patch() {
    let registry = Registry::load(None).unwrap();
    assert_eq!(registry.origin(), &RegistryOrigin::Embedded);
    schema::validate_artifact(registry.artifact()).unwrap();
    assert_eq!(
        registry.policy_digest(),
        Artifact::from_bytes(registry::EMBEDDED.as_bytes())
            .unwrap()
            .digest()
    );
    let entry = registry.entry("git_apply_patch").unwrap();
    assert_eq!(entry.version, "0.1.0");
    assert_eq!(entry.command.program, "mechanism-server");
    assert_eq!(entry.determinism_ceiling["apply"], Determinism::D0);
    let capabilities: Vec<&str> = entry.grants.iter().map(|g| g.capability.as_str()).collect();
    assert_eq!(capabilities, [FS_WRITE, FS_DELETE, "fs.mode", GIT_COMMIT]);

    let err = registry.entry("rm_rf").unwrap_err();
    assert!(
        err.to_string().contains("it pins: git_apply_patch"),
        "{err}"
    );
}

#[test]
fn the_registry_pin_matches_the_shipped_mechanism_version() {
    let manifest = include_str!("../../../mechanisms/git_apply_patch/Cargo.toml");
    let workspace = include_str!("../../../Cargo.toml");
    let registry = Registry::embedded().unwrap();
    let pinned = &registry.entry("git_apply_patch").unwrap().version;
    // git_apply_patch inherits the workspace version and reports CARGO_PKG_VERSION.
    assert!(manifest.contains("version.workspace = true"));
    assert!(
        workspace.contains(&format!("version = \"{pinned}\"")),
        "the registry pins {pinned}; bump both together"
    );
}

#[test]
fn launch_arguments_fill_the_placeholders_and_append_the_signers() {
    let registry = Registry::embedded().unwrap();
    let entry = registry.entry("git_apply_patch").unwrap();
    let paths = LaunchPaths {
        workspace: Path::new("/srv/ws"),
        store: Path::new("/srv/ws/.mechanism"),
        allowed_signers: Some(Path::new("/etc/mechanism/allowed_signers")),
    };
    let args = registry::command_args(entry, &paths).unwrap();
    assert_eq!(
        args,
        [
            "git_apply_patch",
            "--root",
            "/srv/ws",
            "--store",
            "/srv/ws/.mechanism",
            "--force-ack-signers",
            "/etc/mechanism/allowed_signers",
        ]
    );
    let relative = LaunchPaths {
        workspace: Path::new("."),
        store: Path::new(".mechanism"),
        allowed_signers: None,
    };
    let args = registry::command_args(entry, &relative).unwrap();
    assert_eq!(args.len(), 5, "no signers, no flag");
    let cwd = std::env::current_dir().unwrap();
    assert!(Path::new(&args[2]).is_absolute());
    assert_eq!(Path::new(&args[4]), cwd.join(".mechanism"));
}

fn write_registry(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("registry.json");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_registry_file_overrides_the_embedded_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut value: Value = serde_json::from_str(registry::EMBEDDED).unwrap();
    value["mechanisms"][0]["budgets"]["wall_ms"] = json!(1000);
    let path = write_registry(dir.path(), &value.to_string());
    let registry = Registry::load(Some(&path)).unwrap();
    assert_eq!(registry.origin(), &RegistryOrigin::File(path));
    assert_eq!(registry.mechanisms()[0].budgets.wall_ms, 1000);
    assert_ne!(
        registry.policy_digest(),
        Registry::embedded().unwrap().policy_digest()
    );
}

#[test]
fn a_malformed_registry_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let embedded: Value = serde_json::from_str(registry::EMBEDDED).unwrap();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut value = embedded.clone();
        edit(&mut value);
        value.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        (
            "{\"kind\": \"mechanism.registry/v0\",".into(),
            "registry.json",
        ),
        (
            r#"{"kind": "mechanism.registry/v0", "kind": "x", "mechanisms": []}"#.into(),
            "duplicate",
        ),
        (
            with(&|v| {
                v["mechanisms"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("budgets");
            }),
            "budgets",
        ),
        (
            with(&|v| v["kind"] = json!("mechanism.plan/v0")),
            "mechanism.registry/v0",
        ),
        (
            with(&|v| v["mechanisms"][0]["grants"][0]["resources"] = json!(["../**"])),
            "a . or .. component",
        ),
        (
            with(&|v| v["mechanisms"][0]["command"]["args"][2] = json!("{root}")),
            "unknown placeholder {root}",
        ),
        (
            with(&|v| v["mechanisms"][0]["command"]["args"] = json!(["--force-ack-signers", "x"])),
            "must not pass --force-ack-signers",
        ),
        (
            with(&|v| v["mechanisms"][0]["command"]["program"] = json!("bin/server")),
            "bare name",
        ),
        (
            with(&|v| {
                let first = v["mechanisms"][0].clone();
                v["mechanisms"].as_array_mut().unwrap().push(first);
            }),
            "registered twice",
        ),
    ];
    for (text, says) in cases {
        let path = write_registry(dir.path(), &text);
        let err = Registry::load(Some(&path)).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&path.display().to_string()),
            "names the file: {message}"
        );
        assert!(message.contains(says), "{says:?} not in: {message}");
    }

    let err = Registry::load(Some(&dir.path().join("absent.json"))).unwrap_err();
    assert!(matches!(err, RegistryError::Io { .. }), "{err}");
    assert!(err.to_string().contains("absent.json"), "{err}");
}
