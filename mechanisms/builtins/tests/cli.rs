//! The `mechanism-server` executable's command line. As an integration test of this package it
//! also makes `cargo test --workspace` build the executable, which the end-to-end tests of the
//! `tests` package run (cargo builds a package's binaries only for its own integration tests).

use std::process::Command;

#[test]
fn an_unknown_mechanism_exits_2_naming_the_built_in_ones() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = Command::new(env!("CARGO_BIN_EXE_mechanism-server"))
        .current_dir(dir.path())
        .args(["rm_rf", "--root", ".", "--store", "store"])
        .output()
        .expect("mechanism-server runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown mechanism \"rm_rf\"; built in: git_apply_patch"),
        "{stderr}"
    );
}

/// terraform_plan_apply in its own process: a sensitive variable comes from `TF_VAR_*` and
/// reaches terraform, but never the store; a caller's other `TF_*` settings (here one that
/// would break every command) are not passed on.
#[test]
fn terraform_takes_sensitive_variables_from_the_environment_and_stores_none() {
    const SECRET: &str = "from-the-environment-s3cr3t";
    let dir = tempfile::tempdir().expect("temporary directory");
    let (root, store) = (dir.path().join("root"), dir.path().join("store"));
    std::fs::create_dir_all(root.join("infra")).expect("module dir");
    std::fs::write(
        root.join("infra/main.tf"),
        "variable \"secret\" {\n  type = string\n  sensitive = true\n}\n\
         resource \"terraform_data\" \"s\" {\n  input = var.secret\n}\n",
    )
    .expect("main.tf");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mechanism-server"));
    cmd.arg("terraform_plan_apply")
        .arg("--root")
        .arg(&root)
        .arg("--store")
        .arg(&store)
        .env("TF_VAR_secret", SECRET)
        .env("TF_CLI_ARGS", "-no-such-flag");
    let mut server = tests::server::Server::spawn_command(cmd);
    let planned = server.result(
        "plan",
        serde_json::json!({"operation": "apply", "params": {"dir": "infra"}}),
    );
    let plan = &planned["plan"];
    assert_eq!(
        plan["intended_effects"][0]["after"], "(sensitive)",
        "{plan}"
    );
    let hash = planned["plan_hash"]
        .as_str()
        .expect("hash")
        .parse()
        .expect("digest");
    let admission = tests::fixtures::admit(&store, &hash, plan);
    let executed = server.result(
        "execute",
        serde_json::json!({"plan_hash": hash, "admission": admission}),
    );
    assert_eq!(executed["result"]["status"], "success", "{executed}");
    let state = std::fs::read_to_string(root.join("infra/terraform.tfstate")).expect("state");
    assert!(
        state.contains(SECRET),
        "terraform got the variable: {state}"
    );
    let mut stack = vec![store];
    let mut files = 0;
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            let entries = std::fs::read_dir(&path).expect("read_dir");
            stack.extend(entries.map(|e| e.expect("entry").path()));
        } else {
            files += 1;
            let bytes = std::fs::read(&path).expect("read");
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(SECRET),
                "{} holds the secret",
                path.display()
            );
        }
    }
    assert!(files > 3, "the store holds the plan, witness and result");
    assert!(server.close().success());
}

#[test]
fn git_apply_patch_refuses_the_terraform_option_with_exit_2() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = Command::new(env!("CARGO_BIN_EXE_mechanism-server"))
        .current_dir(dir.path())
        .args(["git_apply_patch", "--root", ".", "--store", "store"])
        .args(["--terraform", "/usr/bin/terraform"])
        .output()
        .expect("mechanism-server runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "--terraform and --terraform-plugin-dir are options of terraform_plan_apply only"
        ),
        "{stderr}"
    );
}

/// The terraform the tests run: `MECHANISM_TERRAFORM`, else `terraform` found on `PATH`;
/// fails the test, naming it, when there is none.
fn terraform_path() -> std::path::PathBuf {
    let found = std::env::var_os("MECHANISM_TERRAFORM")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|dir| dir.join("terraform"))
                .find(|p| p.is_file())
        });
    found.expect("this test needs terraform: set MECHANISM_TERRAFORM or put it on PATH")
}

/// `--terraform PATH` names the executable: it runs with neither `PATH` nor
/// `MECHANISM_TERRAFORM` leading to terraform, and a missing one is named in the error.
#[test]
fn terraform_runs_the_executable_the_terraform_option_names() {
    let program = terraform_path();
    let dir = tempfile::tempdir().expect("temporary directory");
    let (root, store) = (dir.path().join("root"), dir.path().join("store"));
    std::fs::create_dir_all(&root).expect("root");
    std::fs::write(
        root.join("main.tf"),
        "resource \"terraform_data\" \"a\" {\n  input = \"x\"\n}\n",
    )
    .expect("main.tf");
    let serve = |terraform: &std::path::Path| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mechanism-server"));
        cmd.arg("terraform_plan_apply")
            .arg("--root")
            .arg(&root)
            .arg("--store")
            .arg(&store)
            .arg("--terraform")
            .arg(terraform)
            .env("PATH", dir.path())
            .env_remove("MECHANISM_TERRAFORM");
        tests::server::Server::spawn_command(cmd)
    };
    let request = serde_json::json!({"operation": "apply", "params": {"dir": "."}});

    let mut server = serve(&program);
    let planned = server.result("plan", request.clone());
    assert_eq!(
        planned["plan"]["intended_effects"][0]["type"], "terraform.create",
        "{planned}"
    );
    assert!(server.close().success());

    let missing = dir.path().join("no-terraform-here");
    let mut server = serve(&missing);
    let failed = server.call("plan", request);
    assert_eq!(
        failed["error"]["data"]["code"], "INTERNAL_ERROR",
        "{failed}"
    );
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no-terraform-here"), "{message}");
    assert!(server.close().success());
}

/// `--terraform-plugin-dir DIR` is where init looks for providers that are not built in, and
/// the only place: a provider missing there fails the plan offline, naming the directory.
#[test]
fn terraform_finds_providers_only_in_the_plugin_dir_it_is_given() {
    let program = terraform_path();
    let dir = tempfile::tempdir().expect("temporary directory");
    let (root, store) = (dir.path().join("root"), dir.path().join("store"));
    let mirror = dir.path().join("operator-mirror");
    std::fs::create_dir_all(&root).expect("root");
    std::fs::create_dir_all(&mirror).expect("mirror");
    std::fs::write(
        root.join("main.tf"),
        "terraform {\n  required_providers {\n    null = { source = \"hashicorp/null\" }\n  }\n}\n\
         resource \"null_resource\" \"n\" {}\n",
    )
    .expect("main.tf");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mechanism-server"));
    cmd.arg("terraform_plan_apply")
        .arg("--root")
        .arg(&root)
        .arg("--store")
        .arg(&store)
        .arg("--terraform")
        .arg(&program)
        .arg("--terraform-plugin-dir")
        .arg(&mirror);
    let mut server = tests::server::Server::spawn_command(cmd);
    let failed = server.call(
        "plan",
        serde_json::json!({"operation": "apply", "params": {"dir": "."}}),
    );
    assert_eq!(
        failed["error"]["data"]["code"], "INVALID_PARAMS",
        "{failed}"
    );
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("nothing is ever downloaded"), "{message}");
    assert!(message.contains("operator-mirror"), "{message}");
    assert!(server.close().success());
}
