//! The guide `examples/write-your-own-mechanism.md` as a new user follows it: its snippets are
//! read from the guide itself and run as written, with `admission` and `mechanism-server`
//! installed as its `cargo install` lines say (copied into a directory on `PATH`), and git
//! refusing to guess an identity.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tests::{bin_path, Scratch};

/// The guide.
const GUIDE: &str = include_str!("../../../examples/write-your-own-mechanism.md");

/// The checkout the guide's `/abs/path/to` stands for.
const CHECKOUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The fenced code blocks of the guide's section starting with `heading`, as (language, body).
fn blocks(heading: &str) -> Vec<(String, String)> {
    let start = GUIDE
        .find(heading)
        .unwrap_or_else(|| panic!("the guide has no section {heading:?}"));
    let section = &GUIDE[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if let Some(language) = line.strip_prefix("```") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push((language.to_owned(), body.join("\n") + "\n"));
        }
    }
    blocks
}

/// A user's shell: `PATH` starts with `bin`, `HOME` is empty, and git reads no configuration
/// but one setting that makes it refuse to commit without a configured identity.
fn shell(s: &Scratch, bin: &Path, script: &str) -> Output {
    let path = std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let home = s.path("home");
    fs::create_dir_all(&home).unwrap();
    Command::new("sh")
        .args(["-e", "-c", script])
        .current_dir(s.root())
        .env("PATH", path)
        .env("HOME", &home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "user.useConfigOnly")
        .env("GIT_CONFIG_VALUE_0", "true")
        .env_remove("GIT_AUTHOR_NAME")
        .env_remove("GIT_AUTHOR_EMAIL")
        .env_remove("GIT_COMMITTER_NAME")
        .env_remove("GIT_COMMITTER_EMAIL")
        .env_remove("EMAIL")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn show(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Copies the executable `name` into `bin`, as `cargo install` would put it there.
fn install(bin: &Path, name: &str) -> PathBuf {
    fs::create_dir_all(bin).unwrap();
    let to = bin.join(name);
    fs::copy(bin_path(name), &to).unwrap();
    to
}

#[test]
fn the_registry_and_workorder_of_section_8_run_as_written() {
    let s = Scratch::new();
    let bin = s.path("bin");
    install(&bin, "admission");
    let blocks = blocks("## 8. Register it");
    let [(registry_lang, registry), (workorder_lang, workorder), (sh, commands)] = &blocks[..]
    else {
        panic!("section 8 should show a registry, a workorder and commands: {blocks:?}")
    };
    assert_eq!(
        (registry_lang.as_str(), workorder_lang.as_str(), sh.as_str()),
        ("json", "json", "sh")
    );
    let checkout = Path::new(CHECKOUT).canonicalize().unwrap();
    s.write(
        "my-registry.json",
        registry.replace("/abs/path/to", checkout.to_str().unwrap()),
    );
    s.write("hello.json", workorder);
    let output = shell(&s, &bin, commands);
    assert!(output.status.success(), "{}", show(&output));
    assert_eq!(
        fs::read_to_string(s.path("ws/notes/hello.txt")).unwrap(),
        "hello\n"
    );
}

#[test]
fn the_conformance_check_of_section_7_runs_as_written_after_cargo_install() {
    let s = Scratch::new();
    let bin = s.path("bin");
    let (_, commands) = blocks("## 7. Check it")
        .into_iter()
        .rfind(|(language, _)| language == "sh")
        .unwrap();
    let mut script = String::new();
    let mut installed = Vec::new();
    for line in commands.lines() {
        match line.strip_prefix("cargo install --path ") {
            Some(package) => installed.push(package.to_owned()),
            None => script.push_str(&format!("{}\n", line.replace("/tmp/seed", "seed"))),
        }
    }
    assert_eq!(installed, ["admission", "mechanisms/builtins"]);

    // With `admission` alone, `mechanism-server` is missing, and the error names each place
    // looked once, though `admission`'s directory is also on PATH.
    install(&bin, "admission");
    let output = shell(&s, &bin, &script);
    assert!(!output.status.success(), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let missing = bin.join("mechanism-server").display().to_string();
    assert_eq!(stderr.matches(&missing).count(), 1, "{}", show(&output));

    install(&bin, "mechanism-server");
    fs::remove_dir_all(s.path("seed")).unwrap();
    let output = shell(&s, &bin, &script);
    assert!(output.status.success(), "{}", show(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("PASS  execute.killed"),
        "{}",
        show(&output)
    );
}
