//! The runtime that serves any [`Mechanism`] over JSON-RPC 2.0 on a byte stream.
//!
//! Everything every mechanism needs the same way lives here: the plan artifact built from
//! the mechanism's proposal, the plan store, execute by hash verified by recomputation, the
//! admission and force-ack checks, idempotent re-execution, one execution per plan at a
//! time, results and in-toto witnesses, and finishing interrupted executions.

pub(crate) mod connection;
mod execute;
mod handlers;
mod records;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use protocol::force_ack::allowed_signers::AllowedSigners;
use protocol::schema::Validator;
use protocol::store::{Store, StoreLocation};
use protocol::verbs::{Operation, Progress};
use protocol::{Digest, ErrorCode, ErrorInfo};
use serde_json::value::RawValue;

use crate::cli::Options;
use crate::mechanism::{Env, Mechanism};
use connection::Limits;
use records::Records;

/// Why a server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServerError {
    /// The configuration is unusable (missing root, unreadable signers file, ...).
    #[error("{0}")]
    Config(String),
    /// Reading or writing the connection failed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

impl ServerError {
    /// The process exit code: 2 for configuration, 1 for I/O.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            ServerError::Config(_) => 2,
            ServerError::Io(_) => 1,
        }
    }
}

/// Serves `mechanism` over `input` and `output` until EOF on `input`, then finishes the
/// work in flight, on a tokio runtime of its own.
pub(crate) fn serve<M, R, W>(
    mechanism: M,
    options: &Options,
    input: R,
    output: W,
) -> Result<(), ServerError>
where
    M: Mechanism,
    R: BufRead + Send + 'static,
    W: Write + Send + 'static,
{
    let limits = Limits {
        max_message_bytes: options.max_message_bytes,
    };
    let state = State::new(mechanism, options)?;
    execute::finish_interrupted(&state);
    let module = handlers::register(state)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Verbs run on the blocking pool, one frame each: no more threads than frames.
        .max_blocking_threads(connection::MAX_FRAMES_IN_FLIGHT)
        .enable_all()
        .build()?;
    connection::serve(&runtime, Arc::new(module), input, output, limits)?;
    Ok(())
}

/// Shared state of one server process.
pub(crate) struct State<M> {
    mechanism: M,
    env: Env,
    operations: Vec<Operation>,
    /// Each operation's params schema (same order as `operations`), compiled on first use,
    /// once: `describe` and `status` need none, and compiling them all made a cold start
    /// cost ten times a bare JSON-RPC echo's. Conformance (`describe.schema`) proves they
    /// compile; one that does not fails that operation's `plan` and `declare_cost`.
    validators: Vec<OnceLock<Result<Validator, String>>>,
    signers: Option<AllowedSigners>,
    max_ttl: Duration,
    max_message_bytes: usize,
    records: Records,
    /// Where the store lies inside the root, if it does: no plan may change it.
    store_location: Option<StoreLocation>,
    /// Plans executing now, with their latest progress.
    running: Arc<Mutex<HashMap<Digest, Option<Progress>>>>,
    /// Plans `status` found to be plans of this mechanism. A stored plan is immutable, so it
    /// need not be parsed again; see [`KnownPlans`].
    known_plans: KnownPlans,
    /// `describe`'s result, written out once per protocol version asked for: it depends on
    /// nothing else, and building it is most of what `describe` costs.
    described: Mutex<Vec<(&'static str, Box<RawValue>)>>,
}

/// The most plans [`KnownPlans`] remembers before it forgets them all.
const MAX_KNOWN_PLANS: usize = 4096;

/// A bounded set of plan hashes already checked to be plans of this mechanism.
#[derive(Default)]
struct KnownPlans(Mutex<HashSet<Digest>>);

impl KnownPlans {
    /// Whether `plan` was checked before.
    fn contains(&self, plan: &Digest) -> bool {
        self.0.lock().is_ok_and(|known| known.contains(plan))
    }

    /// Remembers a checked plan; starts over when full, so the set stays bounded.
    fn insert(&self, plan: Digest) {
        if let Ok(mut known) = self.0.lock() {
            if known.len() >= MAX_KNOWN_PLANS {
                known.clear();
            }
            known.insert(plan);
        }
    }
}

impl<M: Mechanism> State<M> {
    fn new(mechanism: M, options: &Options) -> Result<Self, ServerError> {
        let root = options
            .root
            .canonicalize()
            .map_err(|e| ServerError::Config(format!("--root {}: {e}", options.root.display())))?;
        if !root.is_dir() {
            return Err(ServerError::Config(format!(
                "--root {} is not a directory",
                root.display()
            )));
        }
        let store = Store::open(&options.store).map_err(|e| {
            ServerError::Config(format!("--store {}: {e}", options.store.display()))
        })?;
        let signers = options
            .force_ack_signers
            .as_deref()
            .map(AllowedSigners::read)
            .transpose()
            .map_err(|e| ServerError::Config(format!("--force-ack-signers: {e}")))?;
        let operations = mechanism.operations();
        let validators = operations.iter().map(|_| OnceLock::new()).collect();
        let records = Records::open(store.root())
            .map_err(|e| ServerError::Config(format!("--store: {e}")))?;
        let store_location = store
            .location_within(&root)
            .map_err(|e| ServerError::Config(format!("--store: {e}")))?;
        Ok(Self {
            mechanism,
            env: Env { root, store },
            operations,
            validators,
            signers,
            max_ttl: options.force_ack_max_ttl,
            max_message_bytes: options.max_message_bytes,
            records,
            store_location,
            running: Arc::default(),
            known_plans: KnownPlans::default(),
            described: Mutex::default(),
        })
    }

    /// The compiled params schema of `operation`, `None` if there is no such operation;
    /// `INTERNAL_ERROR` (and logged) if its schema does not compile.
    fn validator(&self, operation: &str) -> Result<Option<&Validator>, ErrorInfo> {
        let Some((op, slot)) = self
            .operations
            .iter()
            .zip(&self.validators)
            .find(|(op, _)| op.name == operation)
        else {
            return Ok(None);
        };
        slot.get_or_init(|| {
            protocol::schema::compile(&op.params_schema).map_err(|e| {
                let reason = format!("the params schema of operation {operation:?}: {e}");
                tracing::error!("{reason}");
                reason
            })
        })
        .as_ref()
        .map(Some)
        .map_err(|reason| ErrorInfo::new(ErrorCode::InternalError, reason.clone()))
    }

    fn mechanism_ref(&self) -> protocol::artifact::kinds::MechanismRef {
        protocol::artifact::kinds::MechanismRef {
            id: self.mechanism.id().to_owned(),
            version: self.mechanism.version().to_owned(),
        }
    }
}

/// The JSON-RPC error object jsonrpsee answers for `error`: the stable code in `data.code`.
pub(crate) fn rpc_error(error: ErrorInfo) -> jsonrpsee::types::ErrorObjectOwned {
    let mut data = error.data.unwrap_or_default();
    data.insert("code".to_owned(), error.code.as_str().into());
    jsonrpsee::types::ErrorObjectOwned::owned(error.code.number(), error.message, Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_plans_stay_bounded() {
        let known = KnownPlans::default();
        for i in 0..=MAX_KNOWN_PLANS {
            let plan = Digest::of_bytes(&i.to_le_bytes());
            known.insert(plan);
            assert!(known.contains(&plan));
            let len = known.0.lock().map(|k| k.len()).unwrap_or_default();
            assert!(
                len <= MAX_KNOWN_PLANS,
                "{len} plans after {} inserts",
                i + 1
            );
        }
        assert!(!known.contains(&Digest::of_bytes(&0usize.to_le_bytes())));
    }
}
