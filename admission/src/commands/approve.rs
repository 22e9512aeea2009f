//! `admission approve`: an operator's signed consent to execute one destructive plan.
//!
//! Three modes, so an operator can approve with the tools they already trust:
//! - `approve PLAN --key KEYFILE --approver P`: signs here with an OpenSSH private key file;
//! - `approve --payload PLAN --approver P`: prints the exact bytes to sign instead, for
//!   `ssh-keygen -Y sign -n mechanism-force-ack` (which also handles passphrases and agents);
//! - `approve --attach SIGFILE --payload-file PAYLOAD`: assembles the force-ack from both.
//!
//! A force-ack approves a plan *and* the AdmissionWitness that admitted it. Unless given with
//! `--admission`, that witness is the one `admission plan` recorded in the store reference
//! `admissions/<plan hex>`.
//!
//! A signed force-ack (`--key`, `--attach`) is also recorded in the store, when there is one,
//! under `approvals/<plan hex>`: `admission execute PLAN` then uses it with no `--force-ack`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use protocol::canonical;
use protocol::force_ack::allowed_signers::AllowedSigners;
use protocol::force_ack::ssh_key::{PrivateKey, PublicKey, SshSig};
use protocol::force_ack::{self, Expected, ForceAckError, DEFAULT_MAX_TTL, NAMESPACE};
use protocol::store::{Store, StoreError};
use protocol::{Digest, ErrorCode, ErrorInfo};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::cli::{ApproveArgs, Output};
use crate::exit::{self, CommandError};
use crate::pipeline::{self, AdmissionRecord, ADMISSIONS};

/// Largest key, payload or signature file read: all are a few kilobytes at most.
const MAX_INPUT_BYTES: u64 = 64 * 1024;

/// `admission approve`, in whichever mode the arguments select; `signers` are the trusted
/// signers (`--allowed-signers`), when known, which the approval must satisfy.
pub fn run(
    out: Output,
    store: &Path,
    signers: Option<&AllowedSigners>,
    args: &ApproveArgs,
) -> Result<(), CommandError> {
    if let Some(sig_file) = &args.attach {
        let payload_file = required(args.payload_file.as_deref(), "--payload-file")?;
        return attach(
            out,
            store,
            signers,
            sig_file,
            payload_file,
            args.output.as_deref(),
        );
    }
    let unsigned = build_unsigned(store, args)?;
    if args.payload {
        if let Some(signers) = signers {
            check_principal(signers, required(args.approver.as_deref(), "--approver")?)?;
        }
        return payload(out, &unsigned, args.output.as_deref());
    }
    let key_file = required(args.key.as_deref(), "--key")?;
    let key = load_key(key_file)?;
    let signature = force_ack::sign(&unsigned, &key).map_err(force_ack_error)?;
    let mut signed = unsigned;
    // `new_unsigned` always builds an object, so this inserts the field.
    signed["signature"] = Value::String(signature);
    if let Some(signers) = signers {
        // Every check execute makes, against the signers it will use, before anything is
        // written: the operator signs once.
        check_signed(&signed, signers)?;
    }
    write_force_ack(out, store, &signed, args.output.as_deref())
}

/// Refuses a principal that no line of the trusted signers lists for force-acks, before the
/// payload is signed elsewhere.
fn check_principal(signers: &AllowedSigners, approver: &str) -> Result<(), CommandError> {
    let listed = signers.entries().iter().any(|entry| {
        entry.principals.matches(approver)
            && entry
                .namespaces
                .as_ref()
                .is_none_or(|ns| ns.matches(NAMESPACE))
    });
    if listed {
        return Ok(());
    }
    Err(CommandError::from(ErrorInfo::new(
        ErrorCode::ForceAckInvalid,
        format!(
            "--approver {approver:?}: the trusted allowed_signers lists no key for this \
             principal and namespace {NAMESPACE:?}, so its force-ack would be refused"
        ),
    )))
}

/// Verifies a signed force-ack as execute will: trusted signer, principal, lifetime.
fn check_signed(force_ack: &Value, signers: &AllowedSigners) -> Result<(), CommandError> {
    let field = |name: &str| {
        force_ack
            .get(name)
            .and_then(Value::as_str)
            .and_then(|text| text.parse::<Digest>().ok())
            .ok_or_else(|| {
                CommandError::internal(
                    ErrorCode::InternalError,
                    format!("the force-ack built has no valid {name:?}"),
                )
            })
    };
    let expected = Expected {
        plan_hash: field("plan_hash")?,
        admission_hash: field("admission_hash")?,
    };
    force_ack::verify(
        force_ack,
        expected,
        signers,
        OffsetDateTime::now_utc(),
        DEFAULT_MAX_TTL,
    )
    .map(drop)
    .map_err(force_ack_error)
}

/// Clap enforces which arguments each mode needs; this turns a gap into an error, not a panic.
fn required<'a, T: ?Sized>(value: Option<&'a T>, name: &str) -> Result<&'a T, CommandError> {
    value.ok_or_else(|| {
        CommandError::bad_input(ErrorCode::InvalidParams, format!("{name} is required here"))
    })
}

/// The force-ack without its signature: plan, admission, approver, expiry and a fresh nonce.
fn build_unsigned(store: &Path, args: &ApproveArgs) -> Result<Value, CommandError> {
    let plan = parse_digest(
        store,
        required(args.plan.as_deref(), "PLAN_HASH")?,
        "PLAN_HASH",
    )?;
    let approver = required(args.approver.as_deref(), "--approver")?;
    check_approver(approver)?;
    let ttl = parse_ttl(&args.ttl)?;
    let admission = match &args.admission {
        Some(text) => parse_digest(store, text, "--admission")?,
        None => recorded_admission(store, &plan)?,
    };
    let expires_at = OffsetDateTime::now_utc().checked_add(ttl).ok_or_else(|| {
        CommandError::bad_input(
            ErrorCode::InvalidParams,
            format!("--ttl {:?} reaches beyond the year 9999", args.ttl),
        )
    })?;
    let nonce = force_ack::random_nonce().map_err(|e| {
        CommandError::internal(
            ErrorCode::InternalError,
            format!("no random nonce from the OS: {e}"),
        )
    })?;
    Ok(force_ack::new_unsigned(
        &plan, &admission, approver, expires_at, &nonce,
    ))
}

/// A digest argument: whole, or a unique prefix of an object in the store.
fn parse_digest(store: &Path, text: &str, what: &str) -> Result<Digest, CommandError> {
    super::digest_arg(store, text).map_err(|mut e| {
        e.error.message = format!("{what}: {}", e.error.message);
        e
    })
}

/// A principal as `allowed_signers` can list it: caught here, before anyone signs, rather
/// than when the force-ack is refused at execute.
fn check_approver(approver: &str) -> Result<(), CommandError> {
    if approver.is_empty()
        || approver
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(CommandError::bad_input(
            ErrorCode::InvalidParams,
            format!(
                "--approver {approver:?}: give the signer's principal as the trusted \
                 allowed_signers file lists it, e.g. alice@example.com"
            ),
        ));
    }
    Ok(())
}

/// `--ttl` as a humantime duration of at least a second (expiry is kept to whole seconds,
/// rounded down, so anything shorter would be expired when written) and at most the lifetime
/// execute allows.
fn parse_ttl(text: &str) -> Result<Duration, CommandError> {
    let bad = |why: String| {
        CommandError::bad_input(ErrorCode::InvalidParams, format!("--ttl {text:?}: {why}"))
    };
    let ttl = humantime::parse_duration(text)
        .map_err(|e| bad(format!("{e}; write a duration such as 15m, 1h or 1h 30m")))?;
    if ttl < std::time::Duration::from_secs(1) {
        return Err(bad("an approval must last at least 1s".to_owned()));
    }
    let ttl = Duration::try_from(ttl).map_err(|_| bad("too long".to_owned()))?;
    if ttl > DEFAULT_MAX_TTL {
        return Err(bad(format!(
            "longer than the {DEFAULT_MAX_TTL} a force-ack may live; execute would refuse it, \
             approve with --ttl {DEFAULT_MAX_TTL} or less"
        )));
    }
    Ok(ttl)
}

/// The admission `admission plan` recorded for `plan`; its absence means the plan was never
/// admitted here, and nothing should be approved blind.
fn recorded_admission(store_dir: &Path, plan: &Digest) -> Result<Digest, CommandError> {
    let missing = |why: String| {
        CommandError::bad_input(
            ErrorCode::AdmissionRequired,
            format!(
                "no admission is recorded for plan {plan} ({why}); run `admission plan \
                 WORKORDER` first, which gates the plan and records its admission, or name \
                 the admission with --admission DIGEST"
            ),
        )
    };
    // Opening creates a store; approving must not leave an empty one behind.
    if !store_dir.is_dir() {
        return Err(missing(format!(
            "there is no store at {}",
            store_dir.display()
        )));
    }
    let store = Store::open(store_dir).map_err(|e| CommandError::new(exit::INTERNAL, e))?;
    match store.get_ref::<AdmissionRecord>(ADMISSIONS, &plan.hex()) {
        Ok(Some(record)) => Ok(record.admission),
        Ok(None) => Err(missing(format!("store {}", store_dir.display()))),
        Err(e @ StoreError::BadRef { .. }) => Err(missing(e.to_string())),
        Err(e) => Err(CommandError::new(exit::INTERNAL, e)),
    }
}

/// Reads an unencrypted OpenSSH private key, with a way forward for the keys we cannot use.
fn load_key(path: &Path) -> Result<PrivateKey, CommandError> {
    let text = read_bounded(path, "--key")?;
    let key = PrivateKey::from_openssh(&text).map_err(|e| {
        CommandError::bad_input(
            ErrorCode::InvalidParams,
            format!(
                "--key {}: not an OpenSSH private key ({e}); give the private key file \
                 (-----BEGIN OPENSSH PRIVATE KEY-----), e.g. ~/.ssh/id_ed25519, not the .pub",
                path.display()
            ),
        )
    })?;
    if key.is_encrypted() {
        return Err(CommandError::bad_input(
            ErrorCode::InvalidParams,
            format!(
                "--key {}: the key is protected by a passphrase, which approve cannot use; \
                 sign with ssh-keygen instead (it asks for the passphrase or uses ssh-agent): \
                 `admission approve --payload PLAN_HASH --approver P -o payload.json`, \
                 `ssh-keygen -Y sign -n {NAMESPACE} -f {} payload.json`, then \
                 `admission approve --attach payload.json.sig --payload-file payload.json \
                 -o force-ack.json`",
                path.display(),
                path.display()
            ),
        ));
    }
    Ok(key)
}

/// `--payload`: the exact bytes `ssh-keygen -Y sign` must sign, with no newline added.
fn payload(out: Output, unsigned: &Value, output: Option<&Path>) -> Result<(), CommandError> {
    let bytes = canonical::to_vec(unsigned).map_err(|e| {
        CommandError::internal(ErrorCode::InternalError, format!("canonical payload: {e}"))
    })?;
    match output {
        Some(path) => write_file(path, &bytes)?,
        None if !out.is_json() => write_stdout(&bytes)?,
        None => {}
    }
    if out.is_json() {
        // Canonical JSON is UTF-8, so the payload travels as a string holding those bytes.
        let text = String::from_utf8_lossy(&bytes);
        println!("{}", json!({ "payload": text, "path": shown(output) }));
    } else {
        let file = output.map_or("PAYLOAD".to_owned(), |p| p.display().to_string());
        eprintln!(
            "payload: {}; sign it with `ssh-keygen -Y sign -n {NAMESPACE} -f KEYFILE {file}`, \
             then run `admission approve --attach {file}.sig --payload-file {file} \
             -o force-ack.json`",
            summary(unsigned)
        );
    }
    Ok(())
}

/// `--attach`: the force-ack made of a payload and the signature ssh-keygen made over it.
fn attach(
    out: Output,
    store: &Path,
    signers: Option<&AllowedSigners>,
    sig_file: &Path,
    payload_file: &Path,
    output: Option<&Path>,
) -> Result<(), CommandError> {
    let payload = read_bounded(payload_file, "--payload-file")?;
    let not_payload = |why: String| {
        CommandError::from(ErrorInfo::new(
            ErrorCode::ForceAckInvalid,
            format!(
                "--payload-file {}: {why}; print a fresh one with `admission approve --payload`",
                payload_file.display()
            ),
        ))
    };
    let unsigned = canonical::parse(&payload).map_err(|e| not_payload(e.to_string()))?;
    let canonical_bytes = canonical::to_vec(&unsigned).map_err(|e| not_payload(e.to_string()))?;
    // The signature covers the file's exact bytes, and a verifier only ever checks the
    // canonical ones: any other spelling (an editor's final newline) can never verify.
    if canonical_bytes != payload {
        return Err(not_payload(
            "not the exact canonical bytes `admission approve --payload` writes (edited, or a \
             newline added?)"
                .to_owned(),
        ));
    }
    let digest_field = |name: &str| {
        unsigned
            .get(name)
            .and_then(Value::as_str)
            .and_then(|text| text.parse::<Digest>().ok())
            .ok_or_else(|| not_payload(format!("no valid {name:?}, so not a force-ack payload")))
    };
    let expected = Expected {
        plan_hash: digest_field("plan_hash")?,
        admission_hash: digest_field("admission_hash")?,
    };

    let armored = String::from_utf8(read_bounded(sig_file, "--attach")?).map_err(|_| {
        CommandError::from(ErrorInfo::new(
            ErrorCode::ForceAckInvalid,
            format!("--attach {}: not a text file", sig_file.display()),
        ))
    })?;
    let signer = SshSig::from_pem(&armored).map_err(|e| {
        CommandError::from(ErrorInfo::new(
            ErrorCode::ForceAckInvalid,
            format!(
                "--attach {}: not an armored SSH signature ({e}); give the .sig file \
                 `ssh-keygen -Y sign` wrote",
                sig_file.display()
            ),
        ))
    })?;
    let mut force_ack = unsigned;
    let Some(object) = force_ack.as_object_mut() else {
        return Err(not_payload("not a JSON object".to_owned()));
    };
    object.insert("signature".to_owned(), Value::String(armored));

    if let Some(signers) = signers {
        check_signed(&force_ack, signers)?;
        return write_force_ack(out, store, &force_ack, output);
    }
    // Without the trusted signers, whom to trust is decided where the force-ack is used.
    // Here the signing key is trusted for any principal, so that every other check of the
    // verifier (fields, namespace, signature over these bytes, lifetime) runs now, while the
    // operator can still fix the input, rather than at execute.
    let signer_line = PublicKey::from(signer.public_key().clone())
        .to_openssh()
        .map_err(|e| {
            CommandError::internal(
                ErrorCode::InternalError,
                format!("encoding the signer's key: {e}"),
            )
        })?;
    let anyone = AllowedSigners::parse(&format!("* {signer_line}")).map_err(|e| {
        CommandError::internal(
            ErrorCode::InternalError,
            format!("trusting the signer: {e}"),
        )
    })?;
    force_ack::verify(
        &force_ack,
        expected,
        &anyone,
        OffsetDateTime::now_utc(),
        DEFAULT_MAX_TTL,
    )
    .map_err(force_ack_error)?;
    write_force_ack(out, store, &force_ack, output)
}

/// Writes a signed force-ack (pretty JSON), records it in the store when there is one, and
/// reports both as the output style asks.
fn write_force_ack(
    out: Output,
    store: &Path,
    force_ack: &Value,
    output: Option<&Path>,
) -> Result<(), CommandError> {
    let mut text = serde_json::to_string_pretty(force_ack).map_err(|e| {
        CommandError::internal(
            ErrorCode::InternalError,
            format!("encoding the force-ack: {e}"),
        )
    })?;
    text.push('\n');
    match output {
        Some(path) => write_file(path, text.as_bytes())?,
        None if !out.is_json() => write_stdout(text.as_bytes())?,
        None => {}
    }
    let recorded = record(store, force_ack)?;
    if out.is_json() {
        println!(
            "{}",
            json!({ "force_ack": force_ack, "path": shown(output), "recorded": recorded })
        );
    } else {
        let place = output.map_or("stdout".to_owned(), |p| p.display().to_string());
        eprintln!("force-ack: {}; written to {place}", summary(force_ack));
        let plan = force_ack
            .get("plan_hash")
            .and_then(Value::as_str)
            .unwrap_or("PLAN");
        match recorded {
            Some(digest) => eprintln!(
                "recorded as the approval of the plan in the store {} (force-ack {digest}): \
                 `admission execute {plan}` will use it, no --force-ack needed",
                store.display()
            ),
            None => eprintln!(
                "not recorded: there is no store at {} (approve never creates one); give \
                 the force-ack to `admission execute {plan} --force-ack {}`",
                std::path::absolute(store)
                    .unwrap_or_else(|_| store.to_path_buf())
                    .display(),
                output.map_or("FILE".to_owned(), |p| p.display().to_string())
            ),
        }
    }
    Ok(())
}

/// Records a signed force-ack as the latest approval of its plan (`approvals/<plan hex>`) and
/// returns its digest; `None` when there is no store, which approving must not create.
fn record(store_dir: &Path, force_ack: &Value) -> Result<Option<Digest>, CommandError> {
    if !store_dir.is_dir() {
        return Ok(None);
    }
    let store = Store::open(store_dir).map_err(|e| CommandError::new(exit::INTERNAL, e))?;
    pipeline::record_approval(&store, force_ack)
        .map(Some)
        .map_err(|e| {
            CommandError::from(e.context(format!(
                "recording the approval in the store {}",
                store_dir.display()
            )))
        })
}

/// Who approves what until when, in one line.
fn summary(force_ack: &Value) -> String {
    let field = |name: &str| force_ack.get(name).and_then(Value::as_str).unwrap_or("?");
    format!(
        "{} approves plan {} (admission {}) until {}",
        field("approver"),
        field("plan_hash"),
        field("admission_hash"),
        field("expires_at")
    )
}

/// A path for JSON output; `display` rather than serde, which refuses non-UTF-8 paths.
fn shown(path: Option<&Path>) -> Value {
    path.map_or(Value::Null, |p| Value::String(p.display().to_string()))
}

/// A refused force-ack exits as its code says everywhere: 3 for a refusal, like at execute.
fn force_ack_error(err: ForceAckError) -> CommandError {
    CommandError::from(ErrorInfo::new(err.code(), err.to_string()))
}

/// Reads a small input file whole, refusing anything larger than [`MAX_INPUT_BYTES`].
fn read_bounded(path: &Path, what: &str) -> Result<Vec<u8>, CommandError> {
    let bad = |why: String| {
        CommandError::bad_input(
            ErrorCode::InvalidParams,
            format!("{what} {}: {why}", path.display()),
        )
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|file| file.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| bad(e.to_string()))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(bad(format!("larger than {MAX_INPUT_BYTES} bytes")));
    }
    Ok(bytes)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CommandError> {
    std::fs::write(path, bytes).map_err(|e| {
        CommandError::bad_input(
            ErrorCode::InvalidParams,
            format!("-o {}: {e}", path.display()),
        )
    })
}

fn write_stdout(bytes: &[u8]) -> Result<(), CommandError> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| {
            CommandError::internal(ErrorCode::InternalError, format!("writing to stdout: {e}"))
        })
}
