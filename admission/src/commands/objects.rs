//! `digest`, `canon`, `put`, `cat`: the object store and canonical form by hand.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use protocol::canonical;
use protocol::store::{Provenance, Store, StoreError};
use protocol::{Digest, ErrorCode, ErrorInfo};
use serde_json::json;

use crate::cli::Output;
use crate::exit::CommandError;

/// Upper bound for a JSON document read whole by `digest` and `canon`.
const MAX_JSON_BYTES: u64 = 256 * 1024 * 1024;

/// `admission digest [--raw] FILE`.
pub fn digest(out: Output, file: &Path, raw: bool) -> Result<(), CommandError> {
    let digest = if raw {
        Digest::of_reader(BufReader::with_capacity(1 << 18, open(file)?))
            .map_err(|e| io_error(file, &e))?
    } else {
        let value = canonical::parse(&read_json(file)?).map_err(|e| not_ijson(file, &e))?;
        canonical::digest(&value).map_err(|e| not_ijson(file, &e))?
    };
    out.result(&digest.to_string(), json!({ "digest": digest }));
    Ok(())
}

/// `admission canon FILE`: the exact canonical bytes, nothing added.
pub fn canon(file: &Path) -> Result<(), CommandError> {
    let bytes = canonical::canonicalize(&read_json(file)?).map_err(|e| not_ijson(file, &e))?;
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(&bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| io_error(Path::new("stdout"), &e))
}

/// `admission put FILE`: streams the file into the store.
pub fn put(out: Output, store: &Path, file: &Path) -> Result<(), CommandError> {
    let store = open_store(store)?;
    let provenance = Provenance::new("admission put");
    let digest = store
        .put_blob(open(file)?, &provenance)
        .map_err(store_error)?;
    out.result(&digest.to_string(), json!({ "digest": digest }));
    Ok(())
}

/// `admission cat DIGEST`: verified before a byte reaches stdout.
pub fn cat(store: &Path, digest: &str) -> Result<(), CommandError> {
    let digest = super::digest_arg(store, digest)?;
    // Reading never creates a store.
    let store = super::pipeline::existing_store_at(store)?;
    let stdout = io::stdout().lock();
    store.copy_blob_to(&digest, stdout).map_err(store_error)?;
    Ok(())
}

fn open_store(dir: &Path) -> Result<Store, CommandError> {
    Store::open(dir).map_err(store_error)
}

/// A store failure exits as its code calls for, as everywhere.
fn store_error(err: StoreError) -> CommandError {
    CommandError::from(ErrorInfo::new(err.code(), err.to_string()))
}

fn open(file: &Path) -> Result<Box<dyn Read>, CommandError> {
    if file == Path::new("-") {
        return Ok(Box::new(io::stdin().lock()));
    }
    let f = File::open(file).map_err(|e| io_error(file, &e))?;
    Ok(Box::new(f))
}

fn read_json(file: &Path) -> Result<Vec<u8>, CommandError> {
    let mut bytes = Vec::new();
    open(file)?
        .take(MAX_JSON_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(file, &e))?;
    if bytes.len() as u64 > MAX_JSON_BYTES {
        return Err(CommandError::bad_input(
            ErrorCode::MessageTooLarge,
            format!(
                "{}: larger than {MAX_JSON_BYTES} bytes; store big payloads as blobs",
                file.display()
            ),
        ));
    }
    Ok(bytes)
}

fn not_ijson(file: &Path, err: &canonical::CanonError) -> CommandError {
    CommandError::bad_input(
        ErrorCode::ParseError,
        format!("{}: not I-JSON: {err}", file.display()),
    )
}

fn io_error(file: &Path, err: &io::Error) -> CommandError {
    CommandError::bad_input(
        ErrorCode::InvalidParams,
        format!("{}: {err}", file.display()),
    )
}
