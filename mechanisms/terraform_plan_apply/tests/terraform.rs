//! terraform_plan_apply over the real terraform CLI, served in process by the Harness, on
//! modules that use only the built-in `terraform_data` resource and local state.

use std::path::{Path, PathBuf};
use std::process::Command;

use mechanism_server::protocol::artifact::kinds::{Plan, ResultArtifact};
use mechanism_server::protocol::store::Store;
use mechanism_server::protocol::{Digest, ErrorCode};
use mechanism_server::testing::{Harness, HarnessError};
use mechanism_server::{CheckState, Verdict};
use serde_json::{json, Value};
use terraform_plan_apply::{TerraformPlanApply, TERRAFORM_ENV};
use tests::fixtures::Operator;

/// Two resources and an output.
const TWO: &str = r#"
resource "terraform_data" "a" {
  input = "alpha"
}
resource "terraform_data" "b" {
  input            = "beta"
  triggers_replace = ["one"]
}
output "a" {
  value = terraform_data.a.output
}
"#;

/// The terraform the mechanism runs; fails the test, naming it, when it does not run.
fn terraform() -> PathBuf {
    let program = std::env::var_os(TERRAFORM_ENV).map_or_else(|| "terraform".into(), PathBuf::from);
    let runs = Command::new(&program).arg("version").output();
    assert!(
        runs.is_ok_and(|o| o.status.success()),
        "these tests need terraform: {} does not run (set {TERRAFORM_ENV} or put terraform on PATH)",
        program.display()
    );
    program
}

/// A harness trusting a test operator's force-acks, and the operator.
fn start() -> (Harness, Operator) {
    terraform();
    let keys = tempfile::tempdir().unwrap().keep();
    let operator = Operator::new(&keys);
    let signers = operator.allowed_signers.clone();
    let harness = Harness::start_with(TerraformPlanApply::new(), |o| {
        o.force_ack_signers = Some(signers)
    })
    .unwrap();
    (harness, operator)
}

fn write_module(harness: &Harness, text: &str) {
    let dir = harness.root().join("infra");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("main.tf"), text).unwrap();
}

/// Plans `operation` on `infra`: the hash, the plan and the preview.
fn plan_op(harness: &mut Harness, operation: &str) -> (Digest, Value, String) {
    let planned = harness
        .call(
            "plan",
            json!({"operation": operation, "params": {"dir": "infra"}}),
        )
        .unwrap();
    let hash = planned["plan_hash"].as_str().unwrap().parse().unwrap();
    let preview = planned["preview"].as_str().unwrap_or_default().to_owned();
    (hash, planned["plan"].clone(), preview)
}

/// Executes `hash`, with a force-ack when the plan is destructive.
fn execute(
    harness: &mut Harness,
    operator: &Operator,
    hash: &Digest,
    plan: &Value,
) -> Result<Value, mechanism_server::testing::HarnessError> {
    let admission = harness.admit(hash).unwrap();
    let mut params = json!({"plan_hash": hash, "admission": admission});
    if plan["destructive"] == true {
        params["force_ack"] = operator.force_ack(hash, &admission);
    }
    harness.call("execute", params)
}

/// The effect types of a plan and the addresses they act on.
fn effects(plan: &Value) -> Vec<(String, String)> {
    plan["intended_effects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["address"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn state_bytes(harness: &Harness) -> Vec<u8> {
    std::fs::read(harness.root().join("infra/terraform.tfstate")).unwrap()
}

fn create(harness: &mut Harness, operator: &Operator) {
    write_module(harness, TWO);
    let (hash, plan, _) = plan_op(harness, "apply");
    let executed = execute(harness, operator, &hash, &plan).unwrap();
    assert_eq!(executed["result"]["status"], "success", "{executed}");
}

#[test]
fn it_creates_what_it_planned_and_then_plans_no_change() {
    let (mut harness, operator) = start();
    write_module(&harness, TWO);
    let (hash, plan, preview) = plan_op(&mut harness, "apply");
    assert_eq!(
        effects(&plan),
        [
            ("terraform.create".to_owned(), "terraform_data.a".to_owned()),
            ("terraform.create".to_owned(), "terraform_data.b".to_owned()),
            ("terraform.create".to_owned(), "output.a".to_owned()),
        ]
    );
    let a = &plan["intended_effects"][0];
    assert_eq!(a["resource"], "infra/terraform_data.a");
    assert_eq!(a["provider"], "terraform.io/builtin/terraform");
    assert_eq!(a["before"], Value::Null);
    assert!(a["after"].as_str().unwrap().starts_with("sha256:"), "{a}");
    assert_eq!(plan["destructive"], false, "{plan}");
    assert_eq!(plan["state"]["state"]["serial"], Value::Null);
    assert!(plan["touches"]
        .as_array()
        .unwrap()
        .contains(&json!({"resource": "infra/terraform.tfstate", "access": "write"})));
    assert!(
        preview.contains("+ terraform_data.a\n+ terraform_data.b\n"),
        "{preview}"
    );
    assert!(
        preview.contains("2 to add, 0 to change, 0 to destroy."),
        "{preview}"
    );

    let executed = execute(&mut harness, &operator, &hash, &plan).unwrap();
    assert_eq!(executed["result"]["status"], "success", "{executed}");
    let state: Value = serde_json::from_slice(&state_bytes(&harness)).unwrap();
    assert_eq!(state["resources"].as_array().unwrap().len(), 2, "{state}");
    let evidence = &executed["result"]["evidence"]["state"];
    assert_eq!(evidence["lineage"], state["lineage"]);
    assert_eq!(evidence["serial"], state["serial"]);
    // Executing again while the state is as the apply left it returns the recorded result.
    let again = execute(&mut harness, &operator, &hash, &plan).unwrap();
    assert_eq!(again["result"], executed["result"]);

    let (_, noop, preview) = plan_op(&mut harness, "apply");
    assert_eq!(noop["intended_effects"], json!([]), "{noop}");
    assert_eq!(noop["destructive"], false);
    assert_eq!(noop["state"]["state"]["serial"], state["serial"]);
    assert_eq!(preview, "No changes.\n");
    // Planning wrote nothing into the module: terraform's data lives in the private area.
    let mut names: Vec<_> = std::fs::read_dir(harness.root().join("infra"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["main.tf", "terraform.tfstate"]);
    harness.finish().unwrap();
}

#[test]
fn the_plan_hash_is_the_same_across_plans_and_servers() {
    let (mut first, _) = start();
    let (mut second, _) = start();
    write_module(&first, TWO);
    write_module(&second, TWO);
    let (one, _, _) = plan_op(&mut first, "apply");
    let (two, _, _) = plan_op(&mut first, "apply");
    let (three, _, _) = plan_op(&mut second, "apply");
    assert_eq!(one, two);
    assert_eq!(one, three);
    first.finish().unwrap();
    second.finish().unwrap();
}

#[test]
fn an_input_change_is_an_update_and_a_trigger_change_a_replace() {
    let (mut harness, operator) = start();
    create(&mut harness, &operator);

    write_module(&harness, &TWO.replace("\"alpha\"", "\"alpha2\""));
    let (hash, plan, preview) = plan_op(&mut harness, "apply");
    assert_eq!(
        effects(&plan)[0],
        ("terraform.update".to_owned(), "terraform_data.a".to_owned())
    );
    assert_eq!(plan["destructive"], false, "{plan}");
    assert!(preview.contains("~ terraform_data.a\n"), "{preview}");
    let a = &plan["intended_effects"][0];
    assert!(a["before"].as_str().unwrap().starts_with("sha256:"), "{a}");
    assert_ne!(a["before"], a["after"]);
    execute(&mut harness, &operator, &hash, &plan).unwrap();

    write_module(
        &harness,
        &TWO.replace("\"alpha\"", "\"alpha2\"")
            .replace("\"one\"", "\"two\""),
    );
    let (hash, plan, preview) = plan_op(&mut harness, "apply");
    assert_eq!(
        effects(&plan),
        [(
            "terraform.replace".to_owned(),
            "terraform_data.b".to_owned()
        )]
    );
    assert_eq!(
        plan["intended_effects"][0]["action_reason"],
        "replace_because_cannot_update"
    );
    assert_eq!(plan["destructive"], true);
    assert_eq!(
        plan["destructive_reasons"],
        json!(["replaces terraform_data.b: destroys it and creates it again"])
    );
    assert!(
        preview.contains("-/+ terraform_data.b\n1 to add, 0 to change, 1 to destroy."),
        "{preview}"
    );
    let executed = execute(&mut harness, &operator, &hash, &plan).unwrap();
    assert_eq!(executed["result"]["status"], "success", "{executed}");
    harness.finish().unwrap();
}

#[test]
fn destroying_or_removing_resources_is_destructive() {
    let (mut harness, operator) = start();
    create(&mut harness, &operator);

    write_module(
        &harness,
        "resource \"terraform_data\" \"a\" {\n  input = \"alpha\"\n}\n",
    );
    let (_, removed, preview) = plan_op(&mut harness, "apply");
    assert_eq!(
        effects(&removed),
        [
            ("terraform.delete".to_owned(), "terraform_data.b".to_owned()),
            ("terraform.delete".to_owned(), "output.a".to_owned()),
        ]
    );
    assert_eq!(
        removed["destructive_reasons"],
        json!(["destroys terraform_data.b"])
    );
    assert!(preview.contains("- terraform_data.b\n"), "{preview}");

    write_module(&harness, TWO);
    let (hash, plan, _) = plan_op(&mut harness, "destroy");
    assert_eq!(plan["destructive"], true);
    assert_eq!(
        plan["destructive_reasons"].as_array().unwrap().len(),
        2,
        "{plan}"
    );
    let executed = execute(&mut harness, &operator, &hash, &plan).unwrap();
    assert_eq!(executed["result"]["status"], "success", "{executed}");
    let state: Value = serde_json::from_slice(&state_bytes(&harness)).unwrap();
    assert_eq!(state["resources"], json!([]), "{state}");
    harness.finish().unwrap();
}

#[test]
fn an_apply_out_of_band_makes_the_plan_stale_and_changes_nothing() {
    let (mut harness, operator) = start();
    create(&mut harness, &operator);
    write_module(&harness, &TWO.replace("\"alpha\"", "\"alpha2\""));
    let (hash, plan, _) = plan_op(&mut harness, "apply");

    let module = harness.root().join("infra");
    let config = module.join("empty.tfrc");
    std::fs::write(&config, "").unwrap();
    let data = tempfile::tempdir().unwrap();
    for args in [
        &["init", "-input=false"][..],
        &["apply", "-input=false", "-auto-approve"],
    ] {
        out_of_band(&module, &config, data.path(), args);
    }
    let state = state_bytes(&harness);

    let refused = execute(&mut harness, &operator, &hash, &plan).unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::StalePlan), "{refused}");
    assert_eq!(state_bytes(&harness), state);
    harness.finish().unwrap();
}

/// Runs terraform in `module` as someone else would, beside the mechanism.
fn out_of_band(module: &Path, config: &Path, data: &Path, args: &[&str]) {
    let out = Command::new(terraform())
        .args(args)
        .arg("-no-color")
        .current_dir(module)
        .env("TF_CLI_CONFIG_FILE", config)
        .env("TF_DATA_DIR", data)
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_sensitive_value_never_reaches_the_store() {
    const SECRET: &str = "s3cr3t-do-not-store";
    let (mut harness, operator) = start();
    write_module(
        &harness,
        &format!(
            "variable \"secret\" {{\n  type = string\n  sensitive = true\n  default = \"{SECRET}\"\n}}\n\
             resource \"terraform_data\" \"s\" {{\n  input = var.secret\n}}\n\
             output \"s\" {{\n  value = terraform_data.s.output\n  sensitive = true\n}}\n"
        ),
    );
    let (hash, plan, _) = plan_op(&mut harness, "apply");
    assert_eq!(
        plan["intended_effects"][0]["after"], "(sensitive)",
        "{plan}"
    );
    let executed = execute(&mut harness, &operator, &hash, &plan).unwrap();
    assert_eq!(
        executed["result"]["evidence"]["outputs"]["s"],
        "(sensitive)"
    );
    let mut files = Vec::new();
    walk(&harness.store(), &mut files);
    assert!(files.len() > 3, "{files:?}");
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(SECRET),
            "{} holds the secret",
            file.display()
        );
    }
    harness.finish().unwrap();
}

#[test]
fn a_sensitive_variable_comes_from_the_environment_and_never_from_params() {
    const SECRET: &str = "p4ram-secret";
    let (mut harness, _operator) = start();
    write_module(
        &harness,
        "variable \"secret\" {\n  type = string\n  sensitive = true\n  default = \"d\"\n}\n\
         variable \"plain\" {\n  type = string\n  default = \"p\"\n}\n\
         resource \"terraform_data\" \"s\" {\n  input = \"${var.secret}-${var.plain}\"\n}\n",
    );
    // The plan names the sensitive variables, whose values it never holds.
    let (_, plan, _) = plan_op(&mut harness, "apply");
    assert_eq!(
        plan["state"]["sensitive_variables_from_environment"],
        json!(["secret"]),
        "{plan}"
    );
    // A value for one in params would be stored in the plan in clear: refused, nothing stored.
    let before = stored_files(&harness);
    let refused = harness
        .call(
            "plan",
            json!({"operation": "apply", "params": {"dir": "infra", "vars": {"plain": "x", "secret": SECRET}}}),
        )
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::InvalidParams), "{refused}");
    assert!(refused.to_string().contains("TF_VAR_secret"), "{refused}");
    assert_eq!(stored_files(&harness), before);
    // A plain variable in params is fine.
    harness
        .call(
            "plan",
            json!({"operation": "apply", "params": {"dir": "infra", "vars": {"plain": "x"}}}),
        )
        .unwrap();
    harness.finish().unwrap();
}

/// The object store's files (its private area left out).
fn stored_files(harness: &Harness) -> Vec<PathBuf> {
    let mut files = Vec::new();
    walk(&harness.store(), &mut files);
    files.retain(|f| !f.starts_with(harness.store().join("private")));
    files.sort();
    files
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}

#[test]
fn anything_to_download_is_refused_and_nothing_is_written() {
    // Providers come only from terraform itself (or an operator's plugin directory), modules
    // only from the root: a registry provider, a git, an HTTP and a registry module.
    let cases = [
        (
            "a registry provider",
            "terraform {\n  required_providers {\n    null = { source = \"hashicorp/null\" }\n  }\n}\n\
             resource \"null_resource\" \"x\" {}\n",
        ),
        (
            "a git module",
            "module \"m\" {\n  source = \"git::https://example.invalid/m.git\"\n}\n",
        ),
        (
            "an HTTP module",
            "module \"m\" {\n  source = \"https://example.invalid/m.zip\"\n}\n",
        ),
        (
            "a registry module",
            "module \"m\" {\n  source = \"hashicorp/consul/aws\"\n  version = \"0.1.0\"\n}\n",
        ),
    ];
    for (case, config) in cases {
        let (mut harness, _) = start();
        write_module(&harness, config);
        let refused = harness
            .call(
                "plan",
                json!({"operation": "apply", "params": {"dir": "infra"}}),
            )
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Some(ErrorCode::InvalidParams),
            "{case}: {refused}"
        );
        assert!(
            refused.to_string().contains("nothing is ever downloaded"),
            "{case}: {refused}"
        );
        let names: Vec<_> = std::fs::read_dir(harness.root().join("infra"))
            .unwrap()
            .collect();
        assert_eq!(names.len(), 1, "{case}: only main.tf: {names:?}");
        let mut objects = Vec::new();
        walk(&harness.store().join("objects"), &mut objects);
        assert_eq!(objects, Vec::<PathBuf>::new(), "{case}");
        harness.finish().unwrap();
    }
}

#[test]
fn a_dir_outside_the_root_is_refused() {
    let (mut harness, _) = start();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), harness.root().join("link")).unwrap();
    for dir in ["../x", "/tmp", "link"] {
        let refused = harness
            .call(
                "plan",
                json!({"operation": "apply", "params": {"dir": dir}}),
            )
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Some(ErrorCode::PathRefused),
            "{dir}: {refused}"
        );
    }
    harness.finish().unwrap();
}

#[test]
fn vars_and_the_workspace_reach_terraform() {
    let (mut harness, operator) = start();
    write_module(
        &harness,
        "variable \"name\" {\n  type = string\n}\nvariable \"count_of\" {\n  type = number\n}\n\
         variable \"on\" {\n  type = bool\n}\n\
         resource \"terraform_data\" \"v\" {\n  input = \"${var.name}-${var.count_of}-${var.on}\"\n}\n",
    );
    let params = json!({"dir": "infra", "terraform_workspace": "staging",
        "vars": {"name": "n", "count_of": 3, "on": true}});
    let planned = harness
        .call("plan", json!({"operation": "apply", "params": params}))
        .unwrap();
    let plan = &planned["plan"];
    let hash: Digest = planned["plan_hash"].as_str().unwrap().parse().unwrap();
    assert_eq!(plan["state"]["workspace"], "staging");
    assert!(plan["touches"].as_array().unwrap().contains(&json!(
        {"resource": "infra/terraform.tfstate.d/staging/terraform.tfstate", "access": "write"}
    )));
    execute(&mut harness, &operator, &hash, plan).unwrap();
    let state = harness
        .root()
        .join("infra/terraform.tfstate.d/staging/terraform.tfstate");
    let state: Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    let input = &state["resources"][0]["instances"][0]["attributes"]["input"]["value"];
    assert_eq!(input, "n-3-true", "{state}");
    harness.finish().unwrap();
}

#[test]
fn a_failed_apply_says_terraform_cannot_roll_back_and_records_what_landed() {
    let (mut harness, operator) = start();
    write_module(
        &harness,
        "resource \"terraform_data\" \"ok\" {\n  input = \"fine\"\n}\n\
         resource \"terraform_data\" \"f\" {\n  depends_on = [terraform_data.ok]\n  \
         provisioner \"local-exec\" {\n    command = \"false\"\n  }\n}\n",
    );
    let (hash, plan, _) = plan_op(&mut harness, "apply");
    let failed = execute(&mut harness, &operator, &hash, &plan).unwrap_err();
    assert_eq!(failed.code(), Some(ErrorCode::ExecutionFailed), "{failed}");
    let text = failed.to_string();
    assert!(text.contains("cannot roll back"), "{failed}");
    assert!(text.contains("1 of 2 planned change(s) landed"), "{failed}");
    assert!(
        text.contains("local-exec"),
        "terraform's own diagnostic: {failed}"
    );

    // The failed result records the change that landed and stays, and only that one.
    let HarnessError::Rpc { error, .. } = &failed else {
        panic!("{failed}")
    };
    let result_hash: Digest = error.data.as_ref().unwrap()["result"]["result_hash"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let store = Store::open(harness.store()).unwrap();
    let result: ResultArtifact = store.get_artifact(&result_hash).unwrap().view().unwrap();
    let landed: Vec<&str> = result
        .effects_applied
        .iter()
        .map(|e| e.detail["address"].as_str().unwrap())
        .collect();
    assert_eq!(landed, ["terraform_data.ok"]);
    assert!(result.error.is_some());
    harness.finish().unwrap();
}

/// A root module calling the local module `./net`.
const CALLER: &str = r#"
module "net" {
  source = "./net"
}
"#;

#[test]
fn a_local_modules_files_are_part_of_the_plan() {
    let (mut harness, operator) = start();
    write_module(&harness, CALLER);
    let net = harness.root().join("infra/net");
    std::fs::create_dir_all(&net).unwrap();
    std::fs::write(
        net.join("main.tf"),
        "resource \"terraform_data\" \"n\" {\n  input = \"n\"\n}\n",
    )
    .unwrap();
    let (hash, plan, _) = plan_op(&mut harness, "apply");
    assert_eq!(
        effects(&plan),
        [(
            "terraform.create".to_owned(),
            "module.net.terraform_data.n".to_owned()
        )]
    );

    // A file of the module that changes no resource still changes the configuration.
    std::fs::write(
        net.join("variables.tf"),
        "variable \"unused\" {\n  default = 1\n}\n",
    )
    .unwrap();
    let (changed, replanned, _) = plan_op(&mut harness, "apply");
    assert_eq!(effects(&replanned), effects(&plan));
    assert_ne!(changed, hash, "the module's new file is part of the plan");
    let stale = execute(&mut harness, &operator, &hash, &plan).unwrap_err();
    assert_eq!(stale.code(), Some(ErrorCode::StalePlan), "{stale}");
    assert!(!harness.root().join("infra/terraform.tfstate").exists());
    let executed = execute(&mut harness, &operator, &changed, &replanned).unwrap();
    assert_eq!(executed["result"]["status"], "success", "{executed}");
    harness.finish().unwrap();
}

#[test]
fn a_local_module_outside_the_root_is_refused() {
    let (mut harness, _) = start();
    write_module(&harness, CALLER);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("main.tf"),
        "resource \"terraform_data\" \"n\" {}\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), harness.root().join("infra/net")).unwrap();
    let refused = harness
        .call(
            "plan",
            json!({"operation": "apply", "params": {"dir": "infra"}}),
        )
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::PathRefused), "{refused}");
    harness.finish().unwrap();
}

#[test]
fn init_runs_again_only_when_the_configuration_changed() {
    let real = terraform();
    let dir = tempfile::tempdir().unwrap();
    let (log, wrapper) = (dir.path().join("calls"), dir.path().join("terraform"));
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut harness = Harness::start(TerraformPlanApply::with_terraform(&wrapper)).unwrap();
    let inits = || {
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        calls.lines().filter(|l| *l == "init").count()
    };
    write_module(&harness, TWO);
    plan_op(&mut harness, "apply");
    plan_op(&mut harness, "apply");
    assert_eq!(
        inits(),
        1,
        "the second plan reuses the initialised data directory"
    );
    write_module(&harness, &TWO.replace("\"alpha\"", "\"alpha2\""));
    plan_op(&mut harness, "apply");
    assert_eq!(inits(), 2, "a new configuration is initialised again");
    harness.finish().unwrap();
}

/// The verdicts of the offline state checks of `plan` with its recorded `executed` result.
fn state_checks(harness: &Harness, plan: &Value, executed: &Value) -> Vec<(String, Verdict)> {
    let plan: Plan = serde_json::from_value(plan.clone()).unwrap();
    let result: ResultArtifact = serde_json::from_value(executed["result"].clone()).unwrap();
    TerraformPlanApply::new()
        .check_state(&harness.root(), &plan, Some(&result))
        .into_iter()
        .map(|c| (c.name, c.verdict))
        .collect()
}

#[test]
fn the_state_check_passes_after_apply_and_on_a_descendant_and_fails_on_another_lineage() {
    let (mut harness, operator) = start();
    write_module(&harness, TWO);
    let (hash, plan, _) = plan_op(&mut harness, "apply");
    let executed = execute(&mut harness, &operator, &hash, &plan).unwrap();
    let pass = |name: &str| (format!("state.terraform.{name}"), Verdict::Pass);
    let all_pass = vec![
        pass("lineage"),
        pass("serial"),
        pass("digest"),
        pass("resources"),
    ];
    assert_eq!(state_checks(&harness, &plan, &executed), all_pass);

    // The same serial with other bytes is not the state the execution left.
    let path = harness.root().join("infra/terraform.tfstate");
    let original = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, original.replace("\"alpha\"", "\"tampered\"")).unwrap();
    let checks = state_checks(&harness, &plan, &executed);
    assert_eq!(
        checks[2],
        (
            "state.terraform.digest".to_owned(),
            Verdict::Fail(ErrorCode::IntegrityMismatch)
        ),
        "{checks:?}"
    );
    std::fs::write(&path, &original).unwrap();

    // Applied further: the recorded state is an ancestor.
    write_module(&harness, &TWO.replace("\"alpha\"", "\"alpha2\""));
    let (later, later_plan, _) = plan_op(&mut harness, "apply");
    execute(&mut harness, &operator, &later, &later_plan).unwrap();
    let skip = |name: &str| (format!("state.terraform.{name}"), Verdict::Skip);
    assert_eq!(
        state_checks(&harness, &plan, &executed),
        vec![
            pass("lineage"),
            pass("serial"),
            skip("digest"),
            skip("resources")
        ]
    );

    // Replaced: a state of another lineage.
    std::fs::remove_file(&path).unwrap();
    let (fresh, fresh_plan, _) = plan_op(&mut harness, "apply");
    execute(&mut harness, &operator, &fresh, &fresh_plan).unwrap();
    assert_eq!(
        state_checks(&harness, &plan, &executed),
        vec![(
            "state.terraform.lineage".to_owned(),
            Verdict::Fail(ErrorCode::IntegrityMismatch)
        )]
    );
    harness.finish().unwrap();
}
