//! The schemas of this crate's `schemas/`: every one is embedded and compiles, accepts its
//! good example (a fixture under `tests/fixtures/`, at the schema's own path) and refuses bad
//! ones; every typed view and verb type built in Rust validates and round-trips.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use protocol::artifact::effect::{Access, Effect, Touch, FS_DELETE, FS_WRITE, GIT_COMMIT};
use protocol::artifact::kinds::*;
use protocol::artifact::{Artifact, ArtifactError, Kind};
use protocol::schema::{self, SchemaError, SchemaName};
use protocol::verbs::*;
use protocol::{force_ack, Digest, ErrorCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

fn schema_source(path: &str) -> Value {
    serde_json::from_str(&fs::read_to_string(schemas_dir().join(path)).unwrap()).unwrap()
}

fn fixture(name: SchemaName) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name.path());
    serde_json::from_slice(&fs::read(&path).unwrap()).unwrap()
}

fn d(label: &str) -> Digest {
    Digest::of_bytes(label.as_bytes())
}

fn violations(result: Result<(), SchemaError>) -> Vec<String> {
    match result {
        Err(SchemaError::Invalid { violations, .. }) => violations
            .iter()
            .map(|v| format!("{}|{}", v.instance_path, v.message))
            .collect(),
        other => panic!("expected violations, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Embedding and compilation
// ---------------------------------------------------------------------------------------

fn json_files_under(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if entry.file_type().unwrap().is_dir() {
            json_files_under(&entry.path(), &format!("{prefix}{name}/"), out);
        } else if name.ends_with(".json") {
            out.insert(format!("{prefix}{name}"));
        }
    }
}

#[test]
fn every_schema_file_is_embedded_current_and_compiles() {
    let mut on_disk = BTreeSet::new();
    json_files_under(&schemas_dir(), "", &mut on_disk);
    let embedded = schema::embedded_files();
    let embedded_paths: BTreeSet<String> = embedded.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(
        on_disk, embedded_paths,
        "schemas/ and the embedded list differ"
    );
    assert_eq!(
        embedded.len(),
        embedded_paths.len(),
        "a file is embedded twice"
    );
    for (path, source) in &embedded {
        let disk = fs::read_to_string(schemas_dir().join(path)).unwrap();
        assert_eq!(&disk, source, "{path} changed since the build");
    }
    // Every schema but the shared definitions has a good and a bad fixture, and no fixture
    // is left over from a schema that is gone.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut expected = on_disk.clone();
    expected.remove(schema::DEFS_PATH);
    let mut good = BTreeSet::new();
    json_files_under(&fixtures, "", &mut good);
    let mut bad = BTreeSet::new();
    json_files_under(&fixtures.join("bad"), "", &mut bad);
    let good: BTreeSet<String> = good
        .into_iter()
        .filter(|p| !p.starts_with("bad/"))
        .collect();
    assert_eq!(good, expected, "good fixtures");
    assert_eq!(bad, expected, "bad fixtures");
    for &name in SchemaName::ALL {
        // Any answer but `Embedded` means the validator exists.
        match schema::validate(name, &json!({})) {
            Ok(()) | Err(SchemaError::Invalid { .. }) => {}
            Err(other) => panic!("{}: {other}", name.path()),
        }
    }
}

#[test]
fn every_kind_and_verb_has_its_schema() {
    for &kind in ALL_KINDS {
        let name = SchemaName::for_kind(kind).unwrap_or_else(|| panic!("no schema for {kind}"));
        let source = schema_source(name.path());
        if let Some((predicate_type, _)) = PREDICATE_KINDS.iter().find(|(_, k)| *k == kind) {
            // An in-toto statement: exactly the Statement's fields, recognised by their values.
            assert_eq!(source["properties"]["_type"]["const"], IN_TOTO_STATEMENT_V1);
            assert_eq!(
                source["properties"]["predicateType"]["const"],
                *predicate_type
            );
            assert_eq!(source["additionalProperties"], false, "{}", name.path());
            let fields: BTreeSet<&str> = source["properties"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                fields,
                BTreeSet::from(["_type", "subject", "predicateType", "predicate"]),
                "{}",
                name.path()
            );
            continue;
        }
        assert_eq!(
            source["properties"]["kind"]["const"],
            kind,
            "{}",
            name.path()
        );
        assert!(
            source["required"]
                .as_array()
                .unwrap()
                .contains(&json!("kind")),
            "{} must require kind",
            name.path()
        );
    }
    assert_eq!(SchemaName::for_kind("mechanism.plan/v1"), None);
    for method in [DESCRIBE, PLAN, DECLARE_COST, EXECUTE, STATUS] {
        assert!(SchemaName::for_params(method).is_some(), "{method}");
        assert!(SchemaName::for_result(method).is_some(), "{method}");
    }
    assert!(SchemaName::for_params(PROGRESS).is_some());
    assert_eq!(SchemaName::for_params("nope"), None);
    assert_eq!(ForceAck::KIND, force_ack::KIND);
}

#[test]
fn schema_enums_match_the_rust_enums() {
    let defs = schema_source(schema::DEFS_PATH);
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(defs["$defs"]["error_code"]["enum"], json!(codes));

    let admission = schema_source(SchemaName::AdmissionWitness.path());
    let gates: Vec<&str> = Gate::ALL.iter().map(|g| g.as_str()).collect();
    assert_eq!(
        admission["$defs"]["gate_record"]["properties"]["gate"]["enum"],
        json!(gates)
    );
    for gate in Gate::ALL {
        assert_eq!(serde_json::to_value(gate).unwrap(), json!(gate.as_str()));
    }
    assert!(Determinism::D0 < Determinism::D1 && Determinism::D2 < Determinism::D3);

    // A run record names the failed gate as a witness does (the order may differ).
    let run_record = schema_source(SchemaName::RunRecord.path());
    let failed_gate: BTreeSet<&str> = run_record["properties"]["failed_gate"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(failed_gate, gates.iter().copied().collect::<BTreeSet<_>>());
    let ticket = schema_source(SchemaName::Ticket.path());
    let statuses = [
        TicketStatus::New,
        TicketStatus::Todo,
        TicketStatus::Ready,
        TicketStatus::Running,
        TicketStatus::Done,
        TicketStatus::Failed,
        TicketStatus::Blocked,
    ];
    let spelt: Vec<Value> = statuses
        .iter()
        .map(|s| serde_json::to_value(s).unwrap())
        .collect();
    assert_eq!(ticket["$defs"]["status"]["enum"], json!(spelt));
    for status in statuses {
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            json!(status.as_str())
        );
    }
    let event = schema_source(SchemaName::Event.path());
    let outcomes = [
        EventOutcome::Scheduled,
        EventOutcome::MissingTicket,
        EventOutcome::NonExecutableStatus,
        EventOutcome::Blocked,
    ];
    assert_eq!(
        event["properties"]["resolution"]["properties"]["outcome"]["enum"],
        json!(outcomes)
    );
    assert_eq!(
        event["properties"]["type"]["enum"],
        json!([EventType::TicketReady])
    );
}

// ---------------------------------------------------------------------------------------
// Good and bad examples of every schema
// ---------------------------------------------------------------------------------------

/// A bad example: a change to the good one, and where the violation must be reported.
///
/// Read from `tests/fixtures/bad/<schema path>`, a JSON array of
/// `{"what", "set"?: {pointer: value}, "remove"?: [pointer], "at": pointer}`, so that
/// implementations in other languages can reuse them. `set` is applied before `remove`;
/// `at` is the instance path of a violation at or above the change (`""` accepts any).
struct Bad {
    what: String,
    set: Vec<(String, Value)>,
    remove: Vec<String>,
    at: String,
}

fn bad_examples(name: SchemaName) -> Vec<Bad> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bad")
        .join(name.path());
    let cases: Vec<Value> = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let mut bad: Vec<Bad> = cases
        .into_iter()
        .map(|case| Bad {
            what: case["what"].as_str().unwrap().to_owned(),
            set: case
                .get("set")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            remove: case
                .get("remove")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|p| p.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default(),
            at: case["at"].as_str().unwrap().to_owned(),
        })
        .collect();
    // Every artifact schema refuses a missing, foreign or future kind; an in-toto statement has
    // no kind field, and its fixture lists a wrong _type and predicateType instead.
    if let Some(kind) = ALL_KINDS.iter().find(|k| {
        SchemaName::for_kind(k) == Some(name) && !PREDICATE_KINDS.iter().any(|(_, p)| p == *k)
    }) {
        let other = if *kind == Plan::KIND {
            ResultArtifact::KIND
        } else {
            Plan::KIND
        };
        for (what, set) in [
            ("wrong kind", Some(json!(other))),
            (
                "kind from the future",
                Some(json!(kind.replace("/v0", "/v1"))),
            ),
            ("no kind", None),
        ] {
            bad.push(Bad {
                what: what.to_owned(),
                at: if set.is_some() { "/kind" } else { "" }.to_owned(),
                remove: if set.is_none() {
                    vec!["/kind".to_owned()]
                } else {
                    vec![]
                },
                set: set
                    .map(|v| vec![("/kind".to_owned(), v)])
                    .unwrap_or_default(),
            });
        }
    }
    bad
}

/// Sets or (with `None`) removes the value at a JSON Pointer whose parent exists.
fn change(value: &mut Value, pointer: &str, new: Option<Value>) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = value
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"));
    match (target, new) {
        (Value::Object(map), Some(v)) => {
            map.insert(key.to_owned(), v);
        }
        (Value::Object(map), None) => {
            map.remove(key).unwrap_or_else(|| panic!("no {pointer}"));
        }
        (Value::Array(items), Some(v)) => items[key.parse::<usize>().unwrap()] = v,
        (Value::Array(items), None) => {
            items.remove(key.parse::<usize>().unwrap());
        }
        _ => panic!("{parent} is not a container"),
    }
}

fn apply(mut value: Value, bad: &Bad) -> Value {
    for (pointer, new) in &bad.set {
        change(&mut value, pointer, Some(new.clone()));
    }
    for pointer in &bad.remove {
        change(&mut value, pointer, None);
    }
    value
}

#[test]
fn every_schema_accepts_its_good_example_and_refuses_the_bad_ones() {
    for &name in SchemaName::ALL {
        let good = fixture(name);
        if let Err(e) = schema::validate(name, &good) {
            panic!("good {} refused: {e}", name.path());
        }
        let bad = bad_examples(name);
        assert!(bad.len() >= 2, "{} needs more bad examples", name.path());
        for case in bad {
            let found = violations(schema::validate(name, &apply(good.clone(), &case)));
            let at = &case.at;
            assert!(
                at.is_empty()
                    || found
                        .iter()
                        .any(|v| v.starts_with(&format!("{at}|"))
                            || v.starts_with(&format!("{at}/"))),
                "{} / {}: no violation at {at:?}, got {found:#?}",
                name.path(),
                case.what
            );
        }
    }
}

#[test]
fn artifact_fixtures_read_as_their_typed_views() {
    fn check<T: Kind + Serialize + DeserializeOwned>() {
        let name = SchemaName::for_kind(T::KIND).unwrap();
        let artifact = Artifact::from_value(fixture(name)).unwrap();
        schema::validate_artifact(&artifact).unwrap();
        let typed: T = artifact.view().unwrap();
        // Fixtures carry only known fields, so the typed view rebuilds the same artifact.
        assert_eq!(
            Artifact::from_typed(&typed).unwrap(),
            artifact,
            "{}",
            T::KIND
        );
    }
    check::<Plan>();
    check::<CostWitness>();
    check::<AdmissionWitness>();
    check::<ForceAck>();
    check::<ResultArtifact>();
    check::<ResultWitness>();
    check::<Workorder>();
    check::<RunRecord>();
    check::<NextActions>();
    check::<Registry>();
    check::<ExecutionDocument>();
    check::<Ticket>();
    check::<Event>();
    check::<ContextSnapshot>();
    check::<OutputBundle>();
    check::<PauseState>();
}

#[test]
fn verb_fixtures_read_as_their_types() {
    fn check<T: Serialize + DeserializeOwned>(name: SchemaName) {
        let value = fixture(name);
        let typed: T = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&typed).unwrap(),
            value,
            "{}",
            name.path()
        );
    }
    check::<DescribeParams>(SchemaName::DescribeParams);
    check::<DescribeResult>(SchemaName::DescribeResult);
    check::<PlanParams>(SchemaName::PlanParams);
    check::<PlanResult>(SchemaName::PlanResult);
    check::<DeclareCostParams>(SchemaName::DeclareCostParams);
    check::<DeclareCostResult>(SchemaName::DeclareCostResult);
    check::<ExecuteParams>(SchemaName::ExecuteParams);
    check::<ExecuteResult>(SchemaName::ExecuteResult);
    check::<StatusParams>(SchemaName::StatusParams);
    check::<StatusResult>(SchemaName::StatusResult);
    check::<ProgressParams>(SchemaName::ProgressParams);
}

/// A witness built in Rust is a bare in-toto Statement v1: exactly its four fields, no `kind`
/// (in-toto's parsers refuse unknown fields), yet still read as our kind.
#[test]
fn a_result_witness_is_an_in_toto_statement_without_kind() {
    let witness = ResultWitness::new(
        vec![Subject {
            name: "repo/refs/heads/main".into(),
            digest: BTreeMap::from([("gitCommit".to_owned(), NEXT.to_owned())]),
        }],
        ResultPredicate {
            plan_hash: d("plan"),
            admission_hash: d("admission"),
            force_ack_hash: None,
            result_hash: d("result"),
            mechanism: mechanism(),
            state_before: json!({"commit": BASE}),
            state_after: json!({"commit": NEXT}),
        },
    );
    let artifact = Artifact::from_typed(&witness).unwrap();
    let fields: BTreeSet<&str> = artifact.object().keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        BTreeSet::from(["_type", "subject", "predicateType", "predicate"])
    );
    assert_eq!(artifact.kind(), ResultWitness::KIND);
    schema::validate_artifact(&artifact).unwrap();
    let reread = Artifact::from_bytes(&artifact.canonical_bytes()).unwrap();
    assert_eq!(reread.kind(), ResultWitness::KIND);
    assert_eq!(reread.view::<ResultWitness>().unwrap(), witness);

    // The old shape, with our kind beside the Statement's fields, is refused by the schema.
    let mut old = artifact.value().clone();
    old["kind"] = json!(ResultWitness::KIND);
    let old = Artifact::from_value(old).unwrap();
    assert_eq!(old.kind(), ResultWitness::KIND);
    let err = schema::validate_artifact(&old).unwrap_err();
    assert!(err.to_string().contains("kind"), "{err}");

    // A statement names its kind by predicateType only: a `kind` field cannot rename it.
    let mut renamed = artifact.value().clone();
    renamed["kind"] = json!(Plan::KIND);
    let renamed = Artifact::from_value(renamed).unwrap();
    assert_eq!(renamed.kind(), ResultWitness::KIND);
    assert!(renamed.view::<Plan>().is_err());

    // A witness built with a foreign predicate type is not a ResultWitness.
    let mut foreign = witness.clone();
    foreign.predicate_type = "https://slsa.dev/provenance/v1".into();
    let err = Artifact::from_typed(&foreign).unwrap_err();
    assert!(
        matches!(err, ArtifactError::WrongKind { ref found, .. } if found == "https://slsa.dev/provenance/v1"),
        "{err}"
    );
}

/// A statement of a predicate type this build does not know is an artifact of that kind, which
/// no schema covers; a statement without a predicate type is no artifact at all.
#[test]
fn a_statement_is_identified_by_its_predicate_type() {
    let slsa = Artifact::from_value(json!({
        "_type": IN_TOTO_STATEMENT_V1,
        "subject": [],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {},
    }))
    .unwrap();
    assert_eq!(slsa.kind(), "https://slsa.dev/provenance/v1");
    let err = schema::validate_artifact(&slsa).unwrap_err();
    assert!(matches!(err, SchemaError::UnknownKind { .. }), "{err}");
    for untyped in [
        json!({"_type": IN_TOTO_STATEMENT_V1, "subject": [], "predicate": {}}),
        json!({"_type": IN_TOTO_STATEMENT_V1, "predicateType": 1, "kind": Plan::KIND}),
        json!({"_type": "https://in-toto.io/Statement/v0.1", "predicateType": RESULT_WITNESS_PREDICATE}),
    ] {
        let err = Artifact::from_value(untyped.clone()).unwrap_err();
        assert!(
            matches!(err, ArtifactError::MissingKind),
            "{untyped}: {err}"
        );
        assert!(err.to_string().contains("predicateType"), "{err}");
    }
}

#[test]
fn unknown_kind_is_an_error() {
    let artifact = Artifact::from_value(json!({"kind": "mechanism.vibes/v0"})).unwrap();
    let err = schema::validate_artifact(&artifact).unwrap_err();
    assert!(matches!(err, SchemaError::UnknownKind { .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::InvalidParams);
    assert!(err.to_string().contains("mechanism.vibes/v0"));
}

#[test]
fn errors_list_every_violation_with_its_path() {
    let mut plan = fixture(SchemaName::Plan);
    change(&mut plan, "/intended_effects/0/type", Some(json!("x")));
    change(&mut plan, "/touches/0/access", Some(json!("poke")));
    change(&mut plan, "/state", None);
    let err = schema::validate(SchemaName::Plan, &plan).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("does not match https://schemas.mechanism.invalid/v0/plan.v0: "));
    assert!(text.contains("/intended_effects/0/type: \"x\""), "{text}");
    assert!(
        text.contains("/touches/0/access: \"poke\" is not one of"),
        "{text}"
    );
    assert!(text.contains("\"state\" is a required property"), "{text}");
    assert_eq!(err.code(), ErrorCode::InvalidParams);
}

// ---------------------------------------------------------------------------------------
// Typed views built in Rust
// ---------------------------------------------------------------------------------------

fn mechanism() -> MechanismRef {
    MechanismRef {
        id: "git_apply_patch".into(),
        version: "0.1.0".into(),
    }
}

const BASE: &str = "1f0e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c";
const NEXT: &str = "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d";

fn effects() -> Vec<Effect> {
    vec![
        Effect::new(FS_WRITE, "repo/a.txt")
            .with("before", "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391")
            .with("after", "d670460b4b4aece5915caf5c68d12f560a9fe3e4"),
        Effect::new(FS_DELETE, "repo/b.txt"),
        Effect::new(GIT_COMMIT, "repo/refs/heads/main")
            .with("from", BASE)
            .with("to", NEXT),
    ]
}

fn plan(destructive: bool) -> Plan {
    Plan {
        mechanism: mechanism(),
        operation: "apply".into(),
        params: json!({"repo": "repo", "message": "m"}),
        inputs: BTreeMap::from([("patch".to_owned(), d("patch"))]),
        state: json!({"repo": "repo", "ref": "refs/heads/main", "base_commit": BASE}),
        intended_effects: effects(),
        touches: vec![
            Touch {
                resource: "repo/a.txt".into(),
                access: Access::Write,
            },
            Touch {
                resource: "repo/b.txt".into(),
                access: Access::Delete,
            },
        ],
        destructive,
        destructive_reasons: if destructive {
            vec!["deletes repo/b.txt".into()]
        } else {
            vec![]
        },
        determinism: Determinism::D0,
        estimated_costs: Costs {
            wall_ms: Some(5),
            bytes_written: None,
            files_touched: Some(2),
        },
        exec_recipe: vec![RecipeStep {
            op: "git.update_ref".into(),
            args: json!({"old": BASE, "new": NEXT}),
        }],
    }
}

fn gates(failing: Option<Gate>) -> Vec<GateRecord> {
    Gate::ALL
        .iter()
        .map(|&gate| {
            if Some(gate) == failing {
                GateRecord {
                    gate,
                    decision: GateDecision::Fail,
                    code: Some(ErrorCode::CapabilityDenied),
                    reason: "repo/b.txt is outside the grant".into(),
                }
            } else {
                GateRecord {
                    gate,
                    decision: GateDecision::Pass,
                    code: None,
                    reason: "ok".into(),
                }
            }
        })
        .collect()
}

fn actions() -> Vec<NextAction> {
    vec![NextAction {
        priority: 1,
        command: "admission show r1".into(),
        why: "see what happened".into(),
    }]
}

fn budget() -> Budget {
    Budget {
        wall_ms: 60_000,
        bytes_written: Some(1 << 20),
        files_touched: None,
    }
}

/// Builds the artifact, validates it against its schema and reads the same struct back.
fn round_trip<T: Kind + PartialEq + std::fmt::Debug>(typed: &T) -> Artifact {
    let artifact = Artifact::from_typed(typed).unwrap();
    if let Err(e) = schema::validate_artifact(&artifact) {
        panic!(
            "{} built in Rust is refused: {e}\n{:#}",
            T::KIND,
            artifact.value()
        );
    }
    assert_eq!(&artifact.view::<T>().unwrap(), typed, "{}", T::KIND);
    let reread = Artifact::from_bytes(&artifact.canonical_bytes()).unwrap();
    assert_eq!(reread.digest(), artifact.digest());
    artifact
}

#[test]
fn every_typed_view_validates_and_round_trips() {
    round_trip(&plan(true));
    round_trip(&plan(false));
    round_trip(&CostWitness {
        plan_hash: d("plan"),
        costs: Costs::default(),
        basis: "one file".into(),
    });
    for (failing, decision) in [
        (None, AdmissionDecision::Admit),
        (Some(Gate::Cap), AdmissionDecision::Deny),
    ] {
        round_trip(&AdmissionWitness {
            plan_hash: d("plan"),
            mechanism: mechanism(),
            policy_digest: d("policy"),
            gates: gates(failing),
            decision,
            force_ack_required: failing.is_none(),
            workorder: failing.map(|_| d("workorder")),
        });
    }
    let mut ack = ForceAck {
        plan_hash: d("plan"),
        admission_hash: d("admission"),
        approver: "alice@example.com".into(),
        expires_at: "2026-11-22T18:00:00Z".into(),
        nonce: "0123456789abcdef0123456789abcdef".into(),
        signature: None,
    };
    round_trip(&ack);
    ack.signature =
        Some("-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n".into());
    round_trip(&ack);
    round_trip(&ResultArtifact {
        plan_hash: d("plan"),
        status: ResultStatus::Success,
        effects_applied: effects(),
        evidence: json!({"commit": NEXT}),
        error: None,
    });
    round_trip(&ResultArtifact {
        plan_hash: d("plan"),
        status: ResultStatus::Failure,
        effects_applied: vec![],
        evidence: json!({}),
        error: Some(ErrorInfo::new(ErrorCode::ExecutionFailed, "ref moved")),
    });
    // A failed execution produced nothing, so its witness has no subject.
    for (force_ack_hash, produced) in [(None, true), (Some(d("force-ack")), true), (None, false)] {
        let subject = Subject {
            name: "repo/refs/heads/main".into(),
            digest: BTreeMap::from([("gitCommit".to_owned(), NEXT.to_owned())]),
        };
        round_trip(&ResultWitness::new(
            if produced { vec![subject] } else { vec![] },
            ResultPredicate {
                plan_hash: d("plan"),
                admission_hash: d("admission"),
                force_ack_hash,
                result_hash: d("result"),
                mechanism: mechanism(),
                state_before: json!({"commit": BASE}),
                state_after: json!({"commit": NEXT}),
            },
        ));
    }
    for ticket_id in [None, Some("OPS-1".to_owned())] {
        round_trip(&Workorder {
            work_order_id: "wo-1".into(),
            mechanism: "git_apply_patch".into(),
            operation: "apply".into(),
            params: json!({"repo": "repo"}),
            inputs: BTreeMap::from([("patch".to_owned(), d("patch").to_string())]),
            budget: budget(),
            context_snapshot_id: ticket_id.as_ref().map(|_| d("snapshot")),
            budget_ms: ticket_id.as_ref().map(|_| 60_000),
            branch: ticket_id.as_ref().map(|_| "main".to_owned()),
            runner: ticket_id.as_ref().map(|_| mechanism()),
            ticket_id,
        });
    }
    round_trip(&RunRecord {
        work_order_id: "wo-1".into(),
        run_uid: "r1".into(),
        mechanism: "git_apply_patch".into(),
        operation: "apply".into(),
        decision: GateDecision::Pass,
        outcome: RunOutcome::Succeeded,
        workorder: Some(d("workorder")),
        ticket_id: Some("OPS-1".into()),
        failed_gate: None,
        output_id: Some(d("output")),
        plan_hash: Some(d("plan")),
        admission_hash: Some(d("admission")),
        force_ack_hash: Some(d("force-ack")),
        result_hash: Some(d("result")),
        witness_hash: Some(d("witness")),
        error: None,
        next_actions: NextActionsRef::Inline(actions()),
        started_at: Some("2026-11-22T18:00:00Z".into()),
        finished_at: Some("2026-11-22T18:00:02Z".into()),
    });
    round_trip(&RunRecord {
        work_order_id: "wo-2".into(),
        run_uid: "r2".into(),
        mechanism: "nope".into(),
        operation: "apply".into(),
        decision: GateDecision::Fail,
        outcome: RunOutcome::Error,
        workorder: None,
        ticket_id: None,
        failed_gate: None,
        output_id: None,
        plan_hash: None,
        admission_hash: None,
        force_ack_hash: None,
        result_hash: None,
        witness_hash: None,
        error: Some(ErrorInfo::new(
            ErrorCode::InvalidParams,
            "no mechanism nope in the registry",
        )),
        next_actions: NextActionsRef::Digest(d("next-actions")),
        started_at: None,
        finished_at: None,
    });
    round_trip(&NextActions { actions: actions() });
    round_trip(&Registry {
        mechanisms: vec![RegistryEntry {
            id: "git_apply_patch".into(),
            version: "0.1.0".into(),
            command: Command {
                program: "mechanism-server".into(),
                args: vec!["git_apply_patch".into()],
            },
            grants: vec![Grant {
                capability: FS_WRITE.into(),
                resources: vec!["**".into()],
            }],
            budgets: budget(),
            determinism_ceiling: BTreeMap::from([("apply".to_owned(), Determinism::D0)]),
        }],
    });
    round_trip(&ExecutionDocument {
        uid: "r1".into(),
        protocol: PROTOCOL_VERSION.into(),
        context: json!({"cwd": "/tmp"}),
        parent: Some("r0".into()),
        status: ExecStatus::Paused,
        config: json!({}),
        input: json!(["run", "wo.json"]),
        result: Some(json!({"exit": 4})),
        steps: vec![ExecStep {
            label: "plan".into(),
            status: ExecStatus::Completed,
            detail: json!({"plan_hash": d("plan")}),
            at: Some("2026-11-22T18:00:00.5Z".into()),
        }],
        started_at: Some("2026-11-22T18:00:00Z".into()),
        updated_at: None,
    });
}

#[test]
fn every_verb_type_validates_and_round_trips() {
    fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
        name: SchemaName,
        typed: &T,
    ) {
        let value = serde_json::to_value(typed).unwrap();
        if let Err(e) = schema::validate(name, &value) {
            panic!("{} built in Rust is refused: {e}\n{value:#}", name.path());
        }
        assert_eq!(&serde_json::from_value::<T>(value).unwrap(), typed);
    }
    let plan = Artifact::from_typed(&plan(true)).unwrap();
    check(SchemaName::DescribeParams, &DescribeParams::default());
    check(
        SchemaName::DescribeParams,
        &DescribeParams {
            protocol_versions: Some(vec![PROTOCOL_VERSION.into()]),
        },
    );
    check(
        SchemaName::DescribeResult,
        &DescribeResult {
            protocol_version: PROTOCOL_VERSION.into(),
            mechanism: mechanism(),
            operations: vec![Operation {
                name: "apply".into(),
                description: "apply a patch".into(),
                params_schema: json!({"type": "object"}),
                inputs: vec!["patch".into()],
                effect_types: vec![FS_WRITE.into(), GIT_COMMIT.into()],
                destructive: Destructiveness::Maybe,
                determinism: Determinism::D0,
                examples: vec![
                    Example {
                        params: json!({"repo": "r"}),
                        inputs: Some(BTreeMap::from([("patch".into(), "+x\n".into())])),
                    },
                    Example {
                        params: json!({}),
                        inputs: None,
                    },
                ],
            }],
            capability_scope: vec![Grant {
                capability: FS_WRITE.into(),
                resources: vec!["**".into()],
            }],
            limits: Limits::default(),
        },
    );
    check(
        SchemaName::PlanParams,
        &PlanParams {
            operation: "apply".into(),
            params: json!({"repo": "r"}),
            inputs: BTreeMap::from([("patch".into(), d("patch"))]),
        },
    );
    check(
        SchemaName::PlanResult,
        &PlanResult {
            plan_hash: plan.digest(),
            plan: plan.value().clone(),
            preview: Some("--- a\n+++ b\n".into()),
        },
    );
    check(
        SchemaName::DeclareCostParams,
        &DeclareCostParams {
            plan_hash: plan.digest(),
        },
    );
    let witness = Artifact::from_typed(&CostWitness {
        plan_hash: plan.digest(),
        costs: Costs::default(),
        basis: "b".into(),
    })
    .unwrap();
    check(
        SchemaName::DeclareCostResult,
        &DeclareCostResult {
            cost_witness: witness.value().clone(),
            cost_witness_hash: witness.digest(),
        },
    );
    check(
        SchemaName::ExecuteParams,
        &ExecuteParams {
            plan_hash: plan.digest(),
            admission: d("admission"),
            force_ack: None,
            deadline_ms: Some(60_000),
        },
    );
    check(
        SchemaName::StatusParams,
        &StatusParams {
            plan_hash: plan.digest(),
        },
    );
    check(
        SchemaName::StatusResult,
        &StatusResult {
            state: PlanState::Succeeded,
            result_hash: Some(d("result")),
            progress: None,
        },
    );
    check(
        SchemaName::StatusResult,
        &StatusResult {
            state: PlanState::Running,
            result_hash: None,
            progress: Some(Progress {
                done: 1,
                total: 2,
                message: "half".into(),
            }),
        },
    );
    check(
        SchemaName::ProgressParams,
        &ProgressParams {
            plan_hash: plan.digest(),
            done: 0,
            total: 0,
            message: String::new(),
        },
    );
    let result = Artifact::from_value(fixture(SchemaName::Result)).unwrap();
    let witness = Artifact::from_value(fixture(SchemaName::ResultWitness)).unwrap();
    check(
        SchemaName::ExecuteResult,
        &ExecuteResult {
            result: result.value().clone(),
            result_hash: result.digest(),
            witness: witness.value().clone(),
            witness_hash: witness.digest(),
        },
    );
}

#[test]
fn a_force_ack_signed_by_the_verifier_module_fits_the_schemas() {
    use force_ack::ssh_key::rand_core::OsRng;
    use force_ack::ssh_key::{Algorithm, PrivateKey};

    let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
    let expires = time::macros::datetime!(2026-11-22 18:00:30.7 UTC);
    let nonce = force_ack::random_nonce().unwrap();
    let mut unsigned = force_ack::new_unsigned(
        &d("plan"),
        &d("admission"),
        "alice@example.com",
        expires,
        &nonce,
    );
    schema::validate(SchemaName::ForceAck, &unsigned).unwrap();
    let signature = force_ack::sign(&unsigned, &key).unwrap();
    let payload = unsigned.clone();
    unsigned["signature"] = json!(signature);
    let signed = Artifact::from_value(unsigned).unwrap();
    schema::validate_artifact(&signed).unwrap();
    assert_eq!(ForceAck::signed_payload(signed.value()), payload);
    let typed: ForceAck = signed.view().unwrap();
    assert_eq!(typed.nonce, nonce);
    assert_eq!(typed.expires_at, "2026-11-22T18:00:30Z");
    schema::validate(
        SchemaName::ExecuteParams,
        &json!({"plan_hash": d("plan"), "admission": d("admission"), "force_ack": signed.value()}),
    )
    .unwrap();
}

#[test]
fn a_future_field_is_kept_in_the_digest_and_survives_canonical_bytes() {
    let plan = fixture(SchemaName::Plan);
    let today = Artifact::from_value(plan.clone()).unwrap();
    let mut newer = plan;
    newer["rollback_recipe"] = json!([{"op": "git.update_ref", "args": {"new": BASE}}]);
    let tomorrow = Artifact::from_value(newer.clone()).unwrap();
    assert_ne!(
        today.digest(),
        tomorrow.digest(),
        "the new field must be hashed"
    );
    schema::validate_artifact(&tomorrow).unwrap();

    let received = Artifact::from_bytes(&tomorrow.canonical_bytes()).unwrap();
    assert_eq!(received.digest(), tomorrow.digest());
    assert_eq!(
        received.value()["rollback_recipe"],
        newer["rollback_recipe"]
    );
    // The typed view ignores it; the artifact keeps it.
    let typed: Plan = received.view().unwrap();
    assert_eq!(
        Artifact::from_typed(&typed).unwrap().digest(),
        today.digest()
    );
    assert_eq!(received.canonical_bytes(), tomorrow.canonical_bytes());
}

#[test]
fn a_force_ack_refuses_a_future_field() {
    let mut ack = fixture(SchemaName::ForceAck);
    ack["scope"] = json!("all plans");
    let artifact = Artifact::from_value(ack).unwrap();
    let found = violations(schema::validate_artifact(&artifact));
    assert!(found.iter().any(|v| v.contains("scope")), "{found:?}");
}

#[test]
fn typed_views_refuse_another_kind() {
    let artifact = Artifact::from_value(fixture(SchemaName::Plan)).unwrap();
    assert!(artifact.view::<ResultArtifact>().is_err());
    assert!(artifact.view::<Plan>().is_ok());
}

/// The schema `name`, the list `fields` and the serialised keys of `full` (a value with every
/// member set) name the same members, and the schema refuses any other (a misspelt optional
/// member would otherwise vanish unseen).
fn fields_agree<T: Kind>(name: SchemaName, fields: &[&str], full: &T) -> Artifact {
    let source = schema::embedded_files()
        .into_iter()
        .find(|(path, _)| *path == name.path())
        .map(|(_, source)| source)
        .unwrap();
    let document: serde_json::Value = serde_json::from_str(source).unwrap();
    assert_eq!(
        document["additionalProperties"],
        json!(false),
        "{}",
        T::KIND
    );
    let in_schema: BTreeSet<&str> = document["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let listed: BTreeSet<&str> = fields.iter().copied().collect();
    assert_eq!(in_schema, listed, "{}", T::KIND);
    let full = Artifact::from_typed(full).unwrap();
    schema::validate_artifact(&full).unwrap();
    let serialised: BTreeSet<&str> = full
        .value()
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(serialised, listed, "{}", T::KIND);
    let mut extra = full.value().clone();
    extra["ticketid"] = json!("OPS-1");
    assert!(schema::validate(name, &extra).is_err(), "{}", T::KIND);
    full
}

/// The workorder schema, its Rust type and `Workorder::FIELDS` name the same members.
#[test]
fn workorder_fields_agree_between_schema_type_and_list() {
    fields_agree(
        SchemaName::Workorder,
        Workorder::FIELDS,
        &Workorder {
            work_order_id: "wo-1".into(),
            mechanism: "git_apply_patch".into(),
            operation: "apply".into(),
            params: json!({}),
            inputs: BTreeMap::new(),
            budget: budget(),
            ticket_id: Some("OPS-1".into()),
            context_snapshot_id: Some(d("snapshot")),
            budget_ms: Some(60_000),
            branch: Some("main".into()),
            runner: Some(mechanism()),
        },
    );
}

/// The ticket schema, its Rust type and `Ticket::FIELDS` name the same members; so do the
/// event's, which `events add` checks files against.
#[test]
fn ticket_and_event_fields_agree_between_schema_type_and_list() {
    fields_agree(
        SchemaName::Ticket,
        Ticket::FIELDS,
        &ticket(TicketStatus::Done),
    );
    fields_agree(
        SchemaName::Event,
        Event::FIELDS,
        &Event {
            source: Some("admission ticket ready".into()),
            ..processed_event(EventOutcome::Scheduled)
        },
    );
}

fn ticket(status: TicketStatus) -> Ticket {
    Ticket {
        ticket_id: "OPS-1".into(),
        objective: "Fix the frobnicator in the main repository".into(),
        acceptance: vec!["the patch applies on main".into()],
        status,
        blocked_on: vec![
            Blocker {
                ticket_id: Some("OPS-0".into()),
                reason: None,
            },
            Blocker {
                ticket_id: None,
                reason: Some("needs the new API".into()),
            },
        ],
        work: TicketWork {
            mechanism: "git_apply_patch".into(),
            operation: "apply".into(),
            params: json!({"repo": "repo"}),
            inputs: BTreeMap::from([("patch".to_owned(), d("patch").to_string())]),
            budget: budget(),
            budget_ms: Some(120_000),
            branch: Some("main".into()),
        },
        previous: Some(d("ticket-before")),
        event_id: Some("ready-1".into()),
        resolution: Some(TicketResolution {
            run_record: Some(d("run-record")),
            commit: Some(NEXT.into()),
            error: None,
        }),
        updated_at: Some("2026-11-22T18:00:02Z".into()),
    }
}

fn processed_event(outcome: EventOutcome) -> Event {
    let scheduled = outcome == EventOutcome::Scheduled;
    let has_ticket = outcome != EventOutcome::MissingTicket;
    Event {
        event_id: "ready-1".into(),
        event_type: EventType::TicketReady,
        ticket_id: "OPS-1".into(),
        processed: true,
        resolution: Some(EventResolution {
            outcome,
            reason: "because".into(),
            run_uid: scheduled.then(|| "r1".to_owned()),
            run_record: scheduled.then(|| d("run-record")),
            ticket: has_ticket.then(|| d("ticket")),
            pause_state: has_ticket.then(|| d("pause-state")),
            blockers: if outcome == EventOutcome::Blocked {
                vec![Blocker {
                    ticket_id: Some("OPS-0".into()),
                    reason: None,
                }]
            } else {
                vec![]
            },
            processed_at: "2026-11-22T18:00:02Z".into(),
        }),
        source: None,
        previous: Some(d("pending")),
    }
}

#[test]
fn every_ticket_kind_validates_and_round_trips() {
    round_trip(&ticket(TicketStatus::Done));
    round_trip(&Ticket {
        blocked_on: vec![],
        previous: None,
        event_id: None,
        resolution: None,
        updated_at: None,
        work: TicketWork {
            inputs: BTreeMap::new(),
            budget_ms: None,
            branch: None,
            ..ticket(TicketStatus::New).work
        },
        ..ticket(TicketStatus::New)
    });
    // A workorder that could not run leaves a FAILED ticket without a run record.
    round_trip(&Ticket {
        resolution: Some(TicketResolution {
            run_record: None,
            commit: None,
            error: Some(ErrorInfo::new(ErrorCode::InvalidParams, "no such input")),
        }),
        ..ticket(TicketStatus::Failed)
    });
    round_trip(&Event {
        processed: false,
        resolution: None,
        previous: None,
        ..processed_event(EventOutcome::Scheduled)
    });
    for outcome in [
        EventOutcome::Scheduled,
        EventOutcome::MissingTicket,
        EventOutcome::NonExecutableStatus,
        EventOutcome::Blocked,
    ] {
        round_trip(&processed_event(outcome));
    }
    // SCHEDULED whose workorder could not run: the ticket failed, no run exists.
    let mut unrun = processed_event(EventOutcome::Scheduled);
    if let Some(resolution) = unrun.resolution.as_mut() {
        resolution.run_uid = None;
        resolution.run_record = None;
    }
    round_trip(&unrun);
    let snapshot = ContextSnapshot {
        snapshot_id: "snap-r1".into(),
        ticket_id: "OPS-1".into(),
        ticket: d("ticket"),
        mechanism: "git_apply_patch".into(),
        operation: "apply".into(),
        params: json!({"repo": "repo", "branch": "main"}),
        inputs: BTreeMap::from([("patch".to_owned(), d("patch"))]),
        plan_hash: Some(d("plan")),
        state: Some(json!({"repo": "repo", "base_commit": BASE})),
        error: None,
        taken_at: "2026-11-22T18:00:00Z".into(),
    };
    round_trip(&snapshot);
    round_trip(&ContextSnapshot {
        plan_hash: None,
        state: None,
        error: Some(ErrorInfo::new(ErrorCode::ExecutionFailed, "does not apply")),
        ..snapshot
    });
    let bundle = OutputBundle {
        output_id: "out-r1".into(),
        run_uid: "r1".into(),
        work_order_id: "OPS-1@ready-1".into(),
        plan_hash: Some(d("plan")),
        admission_hash: Some(d("admission")),
        force_ack_hash: Some(d("force-ack")),
        result_hash: Some(d("result")),
        witness_hash: Some(d("witness")),
        commit: Some(NEXT.into()),
        state: Some(json!({"commit": NEXT})),
        evidence: Some(json!({"commit": NEXT})),
    };
    round_trip(&bundle);
    // A run refused before planning produced nothing but its bundle.
    round_trip(&OutputBundle {
        plan_hash: None,
        admission_hash: None,
        force_ack_hash: None,
        result_hash: None,
        witness_hash: None,
        commit: None,
        state: None,
        evidence: None,
        ..bundle
    });
    let pause = PauseState {
        ticket_id: "OPS-1".into(),
        ticket: d("ticket"),
        status: TicketStatus::Running,
        reason: "the plan waits for a force-ack".into(),
        event_id: Some("ready-1".into()),
        run_uid: Some("r1".into()),
        run_record: Some(d("run-record")),
        actions: actions(),
        paused_at: "2026-11-22T18:00:01Z".into(),
    };
    round_trip(&pause);
    round_trip(&PauseState {
        status: TicketStatus::Blocked,
        event_id: None,
        run_uid: None,
        run_record: None,
        ..pause
    });
    round_trip(&RunRecord {
        work_order_id: "OPS-1@ready-1".into(),
        run_uid: "r3".into(),
        mechanism: "git_apply_patch".into(),
        operation: "apply".into(),
        decision: GateDecision::Fail,
        outcome: RunOutcome::Denied,
        workorder: Some(d("workorder")),
        ticket_id: Some("OPS-1".into()),
        failed_gate: Some(Gate::Cap),
        output_id: Some(d("output")),
        plan_hash: Some(d("plan")),
        admission_hash: Some(d("admission")),
        force_ack_hash: None,
        result_hash: None,
        witness_hash: None,
        error: Some(ErrorInfo::new(ErrorCode::CapabilityDenied, "outside")),
        next_actions: NextActionsRef::Inline(actions()),
        started_at: None,
        finished_at: None,
    });
}
