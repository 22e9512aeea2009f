//! The stdio loop around the jsonrpsee `RpcModule`: framing, parse errors, batches,
//! notifications, cancellation and concurrency are handled here; dispatch is jsonrpsee's.
//!
//! Frames are read on a thread of their own (the framing code is synchronous) and each
//! message is served on its own task, so `status` answers while `execute` runs. Each frame
//! is parsed, and its requests registered for `$/cancelRequest`, in the order frames are
//! read, so a cancel always finds a request read before it, even one not yet started.
//! Responses and notifications go through one writer task, one whole frame at a time.
//!
//! What the JSON-RPC spec leaves open is decided here: anything that is not strict I-JSON
//! within [`canonical::MAX_NESTING_DEPTH`] is a `PARSE_ERROR` with id null, except a
//! duplicate key or an unsafe integer (see `refusal`); a batch beyond
//! [`jsonrpc::MAX_BATCH_ENTRIES`] gets one `INVALID_REQUEST` and none of it is served; a
//! partial frame at EOF gets no reply (nobody is left to read it), while the requests read
//! before it are still answered and recorded.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use jsonrpsee::RpcModule;
use protocol::canonical::{self, CanonError};
use protocol::framing::{FrameError, FrameReader, FrameWriter, Framing};
use protocol::jsonrpc::{self, Message};
use protocol::ErrorCode;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Per-request controls, visible to method handlers through a task-local.
#[derive(Clone)]
pub struct RequestScope {
    /// Set by `$/cancelRequest` for this request's id.
    pub cancelled: Arc<AtomicBool>,
    /// Sends a notification to the client.
    pub notify: Notifier,
}

tokio::task_local! {
    /// The scope of the request being served on this task.
    pub static SCOPE: RequestScope;
}

/// Sends server-to-client notifications (e.g. `progress`).
#[derive(Clone)]
pub struct Notifier(mpsc::UnboundedSender<Vec<u8>>);

impl Notifier {
    /// Queues a notification; dropped silently if the connection is closing.
    pub fn send(&self, method: &str, params: Value) {
        let _ = self.0.send(
            jsonrpc::notification(method, params)
                .to_string()
                .into_bytes(),
        );
    }
}

/// Bounds applied to every message.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message accepted, in bytes.
    pub max_message_bytes: usize,
}

/// Serves `module` over a byte stream until EOF, then finishes in-flight work.
pub async fn serve<C, R, W>(
    module: Arc<RpcModule<C>>,
    input: R,
    output: W,
    limits: Limits,
) -> std::io::Result<()>
where
    C: Send + Sync + 'static,
    R: BufRead + Send + 'static,
    W: Write + Send + 'static,
{
    let (frames_tx, mut frames) = mpsc::channel::<Event>(64);
    let reader = std::thread::Builder::new()
        .name("stdio-reader".into())
        .spawn(move || read_frames(input, limits, &frames_tx))?;

    let (out_tx, out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let framing = Arc::new(Mutex::new(None::<Framing>));
    let writer = tokio::task::spawn_blocking({
        let framing = Arc::clone(&framing);
        move || write_frames(output, out_rx, &framing)
    });

    let inflight: Inflight = Arc::default();
    let mut tasks = JoinSet::new();
    let mut read_error = None;
    while let Some(event) = frames.recv().await {
        match event {
            Event::Frame { bytes, framing: f } => {
                if let Ok(mut slot) = framing.lock() {
                    slot.get_or_insert(f);
                }
                // Parsed and registered here, in read order, so a `$/cancelRequest` always
                // finds a request read before it; served on a task of its own.
                let frame = parse_frame(&module, &bytes, &inflight);
                let module = Arc::clone(&module);
                let out = out_tx.clone();
                let inflight = Arc::clone(&inflight);
                tasks.spawn(async move {
                    if let Some(reply) = handle_frame(&module, frame, &out, &inflight).await {
                        let _ = out.send(reply.into_bytes());
                    }
                });
            }
            Event::BadFrame { error, framing: f } => {
                if let Ok(mut slot) = framing.lock() {
                    slot.get_or_insert(f);
                }
                let code = error.code();
                let reply = jsonrpc::error_response(Value::Null, code, &error.to_string());
                let _ = out_tx.send(reply.to_string().into_bytes());
            }
            Event::Fatal(error) => {
                tracing::error!(%error, "reading stdin failed");
                read_error = Some(error);
            }
        }
        // Reap finished tasks as we go so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    drop(out_tx);
    let written = writer.await.map_err(std::io::Error::other)?;
    let _ = reader.join();
    written?;
    match read_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What the reader thread hands to the loop.
enum Event {
    Frame { bytes: Vec<u8>, framing: Framing },
    BadFrame { error: FrameError, framing: Framing },
    Fatal(std::io::Error),
}

fn read_frames<R: BufRead>(input: R, limits: Limits, tx: &mpsc::Sender<Event>) {
    let mut reader = FrameReader::with_max_size(input, limits.max_message_bytes);
    loop {
        let event = match reader.read_frame() {
            Ok(None) => return,
            Ok(Some(bytes)) => Event::Frame {
                bytes,
                framing: reader.framing().unwrap_or(Framing::Lines),
            },
            Err(FrameError::UnexpectedEof) => {
                tracing::warn!("stdin ended inside a message; it is dropped unanswered");
                return;
            }
            Err(error) if error.is_recoverable() => Event::BadFrame {
                error,
                framing: reader.framing().unwrap_or(Framing::Lines),
            },
            Err(error) => Event::Fatal(std::io::Error::other(error)),
        };
        let fatal = matches!(event, Event::Fatal(_));
        if tx.blocking_send(event).is_err() || fatal {
            return;
        }
    }
}

fn write_frames<W: Write>(
    output: W,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    framing: &Mutex<Option<Framing>>,
) -> std::io::Result<()> {
    let mut writer = None;
    let mut output = Some(output);
    while let Some(bytes) = rx.blocking_recv() {
        if writer.is_none() {
            let chosen = framing
                .lock()
                .ok()
                .and_then(|f| *f)
                .unwrap_or(Framing::Lines);
            if let Some(out) = output.take() {
                writer = Some(FrameWriter::new(out, chosen));
            }
        }
        if let Some(w) = writer.as_mut() {
            w.write_frame(&bytes).map_err(std::io::Error::other)?;
        }
    }
    Ok(())
}

/// Cancellation flags of the requests being served, by request id.
type Inflight = Arc<Mutex<HashMap<String, Arc<AtomicBool>>>>;

/// A frame parsed, with the cancellation flags of its requests already registered.
enum Frame {
    /// Answered without serving anything (not I-JSON, an empty batch, one over the cap).
    Reply(String),
    /// One message.
    Single(Entry),
    /// A batch of messages.
    Batch(Vec<Entry>),
}

/// One message of a frame, with the flag `$/cancelRequest` sets if it is a request.
struct Entry {
    message: Message,
    cancelled: Arc<AtomicBool>,
}

/// Parses a frame and registers the cancellation flag of each request in it under its id.
fn parse_frame<C>(module: &RpcModule<C>, bytes: &[u8], inflight: &Inflight) -> Frame {
    let value: Value = match canonical::parse(bytes) {
        Ok(v) => v,
        Err(e) => return Frame::Reply(refusal(bytes, &e)),
    };
    let entry = |value: Value| {
        let message = jsonrpc::classify(value);
        let cancelled = Arc::new(AtomicBool::new(false));
        if let Message::Request { id, method, .. } = &message {
            if module.method(method).is_some() {
                if let Ok(mut map) = inflight.lock() {
                    map.insert(id.to_string(), Arc::clone(&cancelled));
                }
            }
        }
        Entry { message, cancelled }
    };
    match value {
        Value::Array(items) if items.is_empty() => Frame::Reply(
            jsonrpc::error_response(Value::Null, ErrorCode::InvalidRequest, "empty batch")
                .to_string(),
        ),
        Value::Array(items) if items.len() > jsonrpc::MAX_BATCH_ENTRIES => {
            let message = format!(
                "a batch of {} entries exceeds the limit of {} entries; none was served",
                items.len(),
                jsonrpc::MAX_BATCH_ENTRIES
            );
            Frame::Reply(
                jsonrpc::error_response(Value::Null, ErrorCode::InvalidRequest, &message)
                    .to_string(),
            )
        }
        Value::Array(items) => Frame::Batch(items.into_iter().map(entry).collect()),
        single => Frame::Single(entry(single)),
    }
}

/// The error answering a frame that is not strict I-JSON.
///
/// Invalid JSON is `PARSE_ERROR` with id null, as JSON-RPC says: a syntax error, invalid
/// UTF-8, nesting beyond the limit, and a lone surrogate escape, which encodes no Unicode
/// text (RFC 8259 section 8.2), so no id read from such a frame can be trusted. A duplicate
/// key or an unsafe integer is refused rather than resolved, since params end up hashed in
/// plans and two documents must never share one digest: `INVALID_PARAMS` inside a request's
/// params, `INVALID_REQUEST` elsewhere or in a batch, naming the request's id when a lenient
/// read finds one.
fn refusal(bytes: &[u8], error: &CanonError) -> String {
    let (code, id) = match error {
        CanonError::Syntax { .. }
        | CanonError::InvalidUtf8 { .. }
        | CanonError::TooDeep { .. }
        | CanonError::LoneSurrogate { .. } => (ErrorCode::ParseError, Value::Null),
        CanonError::DuplicateKey { path, .. } | CanonError::IntegerOutOfRange { path, .. } => {
            let id = serde_json::from_slice::<Value>(bytes)
                .ok()
                .and_then(|v| v.get("id").cloned())
                .unwrap_or(Value::Null);
            let in_params = path == "$.params"
                || path.starts_with("$.params.")
                || path.starts_with("$.params[");
            let code = if in_params {
                ErrorCode::InvalidParams
            } else {
                ErrorCode::InvalidRequest
            };
            (code, id)
        }
    };
    let message = match error {
        // Its text already says "invalid JSON".
        CanonError::Syntax { .. } => error.to_string(),
        _ if code == ErrorCode::ParseError => format!("invalid JSON: {error}"),
        _ => format!("not I-JSON: {error}"),
    };
    jsonrpc::error_response(id, code, &message).to_string()
}

/// Answers one frame: a single message or a batch. `None` when nothing is to be sent.
async fn handle_frame<C: Send + Sync + 'static>(
    module: &RpcModule<C>,
    frame: Frame,
    out: &mpsc::UnboundedSender<Vec<u8>>,
    inflight: &Inflight,
) -> Option<String> {
    match frame {
        Frame::Reply(reply) => Some(reply),
        Frame::Batch(entries) => {
            // Entries of one batch are served in order; separate frames run concurrently.
            let mut replies = Vec::with_capacity(entries.len());
            for entry in entries {
                if let Some(reply) = handle_message(module, entry, out, inflight).await {
                    replies.push(reply);
                }
            }
            (!replies.is_empty()).then(|| format!("[{}]", replies.join(",")))
        }
        Frame::Single(entry) => handle_message(module, entry, out, inflight).await,
    }
}

async fn handle_message<C: Send + Sync + 'static>(
    module: &RpcModule<C>,
    Entry { message, cancelled }: Entry,
    out: &mpsc::UnboundedSender<Vec<u8>>,
    inflight: &Inflight,
) -> Option<String> {
    match message {
        Message::Invalid { id, reason } => {
            Some(jsonrpc::error_response(id, ErrorCode::InvalidRequest, &reason).to_string())
        }
        Message::Response { .. } => {
            tracing::debug!("ignoring a response: this server sends no requests");
            None
        }
        Message::Notification { method, params } => {
            if method == jsonrpc::CANCEL_REQUEST {
                cancel(inflight, params.as_ref());
            } else {
                // Notifications get no reply, so running a verb for one would hide its
                // outcome (an execute nobody hears about): they are ignored.
                tracing::debug!(%method, "ignoring notification");
            }
            None
        }
        Message::Request { id, method, params } => {
            if module.method(&method).is_none() {
                let message = format!("no method {method:?}");
                return Some(
                    jsonrpc::error_response(id, ErrorCode::MethodNotFound, &message).to_string(),
                );
            }
            let key = id.to_string();
            let request = serde_json::json!({
                "jsonrpc": "2.0",
                "id": id,
                "method": method,
                "params": params.unwrap_or(Value::Object(Default::default())),
            })
            .to_string();
            let scope = RequestScope {
                cancelled: Arc::clone(&cancelled),
                notify: Notifier(out.clone()),
            };
            let reply = SCOPE
                .scope(scope, module.raw_json_request(&request, 1))
                .await;
            // Only our own entry: a client reusing an id in flight must not lose its cancel.
            if let Ok(mut map) = inflight.lock() {
                if map
                    .get(&key)
                    .is_some_and(|flag| Arc::ptr_eq(flag, &cancelled))
                {
                    map.remove(&key);
                }
            }
            Some(match reply {
                Ok((response, _)) => response.get().to_owned(),
                Err(e) => jsonrpc::error_response(id, ErrorCode::InvalidRequest, &e.to_string())
                    .to_string(),
            })
        }
    }
}

fn cancel(inflight: &Inflight, params: Option<&Value>) {
    let Some(id) = params.and_then(|p| p.get("id")) else {
        tracing::debug!("$/cancelRequest without an id");
        return;
    };
    if let Ok(map) = inflight.lock() {
        if let Some(flag) = map.get(&id.to_string()) {
            flag.store(true, Ordering::SeqCst);
        }
    }
}
