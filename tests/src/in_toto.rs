//! The in-toto project's own Python bindings of its attestation framework (PyPI
//! `in-toto-attestation`), which read a Statement as strictly as protobuf does: a field the
//! Statement does not define is refused.
//!
//! They live in a virtual environment, `tests/in-toto/.venv`, made from the pinned
//! `tests/in-toto/requirements.txt` on first use (`.ci/run` makes it beforehand, keeping pip's
//! output out of the tests'). Without `python3`, or when the install fails, the test using
//! them fails and says what is missing; it never skips.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// `tests/in-toto/`: the pins and the reading script.
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/in-toto");

/// The script's exit code for a statement the bindings refuse.
const REFUSED: i32 = 3;

/// Reads `statement` with the in-toto bindings: what they read (protobuf's JSON names) or,
/// when they refuse it, why.
pub fn read_statement(statement: &Value) -> Result<Value, String> {
    let python = ensure_venv();
    let mut child = Command::new(&python)
        .arg(Path::new(DIR).join("read_statement.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let text = serde_json::to_vec(statement).expect("a JSON value serialises");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(&text)
        .expect("write the statement to the script");
    let output = child
        .wait_with_output()
        .expect("the script runs to its end");
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    match output.status.code() {
        Some(0) => Ok(serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "the script printed no JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })),
        Some(REFUSED) => Err(stderr),
        _ => panic!(
            "the in-toto bindings could not run ({}): {stderr}",
            output.status
        ),
    }
}

/// The virtual environment's python, with the pinned packages installed.
fn ensure_venv() -> PathBuf {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY
        .get_or_init(|| {
            let venv = Path::new(DIR).join(".venv");
            let python = venv.join("bin/python");
            fs::create_dir_all(&venv)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", venv.display()));
            // Two test processes must not install at once; checked again under the lock.
            let lock = File::create(venv.join(".install.lock")).expect("create the lock file");
            lock.lock().expect("lock the venv");
            if !installed(&python) {
                install(&venv, &python);
            }
            assert!(
                installed(&python),
                "{} does not hold the packages {}/requirements.txt pins after installing them",
                venv.display(),
                DIR
            );
            python
        })
        .clone()
}

/// The `name==version` pins of requirements.txt.
fn pins() -> BTreeMap<String, String> {
    let path = Path::new(DIR).join("requirements.txt");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, version) = line
                .split_once("==")
                .unwrap_or_else(|| panic!("{}: {line:?} is not pinned", path.display()));
            (name.trim().to_owned(), version.trim().to_owned())
        })
        .collect()
}

/// Whether `python` runs and has exactly the pinned versions installed.
fn installed(python: &Path) -> bool {
    let pins = pins();
    let output = Command::new(python)
        .args([
            "-c",
            "import importlib.metadata as m, json, sys\n\
             print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))",
        ])
        .args(pins.keys())
        .output();
    match output {
        Ok(output) if output.status.success() => {
            serde_json::from_slice::<BTreeMap<String, String>>(&output.stdout).ok() == Some(pins)
        }
        _ => false,
    }
}

/// `python3 -m venv VENV`, then `pip install -r requirements.txt` into it.
fn install(venv: &Path, python: &Path) {
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .output()
        .unwrap_or_else(|e| {
            panic!("the in-toto test needs python3 on PATH, but it could not run: {e}")
        });
    assert!(
        made.status.success(),
        "`python3 -m venv {}` failed: {}",
        venv.display(),
        String::from_utf8_lossy(&made.stderr)
    );
    let pip = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(Path::new(DIR).join("requirements.txt"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        pip.status.success(),
        "installing the in-toto bindings ({}/requirements.txt: {:?}) failed:\n{}",
        DIR,
        pins(),
        String::from_utf8_lossy(&pip.stderr)
    );
}
