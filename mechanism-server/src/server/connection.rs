//! The stdio loop around the jsonrpsee `RpcModule`: framing, parse errors, batches,
//! notifications, cancellation and concurrency are handled here; dispatch is jsonrpsee's.
//!
//! Frames are read on the calling thread. A single message that cannot wait on anything (a
//! refusal, a notification, an unknown method, a verb jsonrpsee runs synchronously such as
//! `status` or `describe`) is answered right there, in read order, with no hop to another
//! thread; any other frame is served on a task of its own, so `status` answers while
//! `execute` runs. Each frame is parsed, and its requests registered for `$/cancelRequest`,
//! in the order frames are read, so a cancel always finds a request read before it, even one
//! not yet started. Whoever has a response or notification writes it, one whole frame at a
//! time under a lock.
//!
//! What the JSON-RPC spec leaves open is decided here: anything that is not strict I-JSON
//! within [`canonical::MAX_NESTING_DEPTH`] is a `PARSE_ERROR` with id null, except a
//! duplicate key or an unsafe integer (see `refusal`); a batch beyond
//! [`jsonrpc::MAX_BATCH_ENTRIES`] gets one `INVALID_REQUEST` and none of it is served; a
//! partial frame at EOF gets no reply (nobody is left to read it), while the requests read
//! before it are still answered and recorded.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, BufRead, BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use jsonrpsee::core::server::{ConnectionId, Extensions, MethodCallback, MethodResponse};
use jsonrpsee::types::{Id, Params};
use jsonrpsee::RpcModule;
use protocol::canonical::{self, CanonError};
use protocol::framing::{FrameError, FrameReader, FrameWriter, Framing};
use protocol::jsonrpc::{self, Message};
use protocol::ErrorCode;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
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
pub struct Notifier(Output);

impl Notifier {
    /// Writes a notification; dropped if the connection's output has failed.
    pub fn send(&self, method: &str, params: Value) {
        self.0
            .send(jsonrpc::notification(method, params).to_string().as_bytes());
    }
}

/// Bounds applied to every message.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message accepted, in bytes.
    pub max_message_bytes: usize,
}

/// Serves `module` over a byte stream until EOF, then finishes in-flight work. Frames are
/// read, and what cannot wait answered, on the calling thread; other frames are served on
/// `runtime`.
pub fn serve<C, R, W>(
    runtime: &Runtime,
    module: Arc<RpcModule<C>>,
    input: R,
    output: W,
    limits: Limits,
) -> io::Result<()>
where
    C: Send + Sync + 'static,
    R: BufRead,
    W: Write + Send + 'static,
{
    let out = Output::new(Box::new(output));
    let permits = Arc::new(Semaphore::new(MAX_FRAMES_IN_FLIGHT));
    let inflight: Inflight = Arc::default();
    let mut tasks = JoinSet::new();
    let mut reader = FrameReader::with_max_size(input, limits.max_message_bytes);
    let mut read_error = None;
    loop {
        let read = reader.read_frame();
        out.choose_framing(reader.framing().unwrap_or(Framing::Lines));
        let bytes = match read {
            Ok(Some(bytes)) => bytes,
            Ok(None) => break,
            Err(FrameError::UnexpectedEof) => {
                tracing::warn!("stdin ended inside a message; it is dropped unanswered");
                break;
            }
            Err(error) if error.is_recoverable() => {
                let code = error.code();
                out.send(&jsonrpc::encode_error_response(
                    &Value::Null,
                    code,
                    &error.to_string(),
                ));
                continue;
            }
            Err(error) => {
                tracing::error!(%error, "reading stdin failed");
                read_error = Some(io::Error::other(error));
                break;
            }
        };
        match parse_frame(&bytes) {
            Frame::Reply(reply) => out.send(&reply),
            // Answered here, in read order and without a task: everything that cannot block
            // (refusals, notifications, `$/cancelRequest`, unknown methods, and verbs
            // jsonrpsee runs synchronously, such as `status`).
            Frame::Single(message) if answers_at_once(&module, &message) => {
                let entry = Entry::unregistered(message);
                let raw = std::str::from_utf8(&bytes).ok();
                if let Some(reply) = answer_at_once(runtime, &module, entry, raw, &out, &inflight) {
                    out.send(&reply);
                }
            }
            // Registered here, in read order, so a `$/cancelRequest` always finds a request
            // read before it; served on a task of its own.
            frame => {
                // Never closed, so this only waits; meanwhile nothing more is read.
                let permit = runtime.block_on(Arc::clone(&permits).acquire_owned()).ok();
                let frame = register(&module, frame, &inflight);
                let module = Arc::clone(&module);
                let out = out.clone();
                let inflight = Arc::clone(&inflight);
                let task = async move {
                    let _permit = permit;
                    let raw = std::str::from_utf8(&bytes).ok();
                    if let Some(reply) = handle_frame(&module, frame, raw, &out, &inflight).await {
                        out.send(&reply);
                    }
                };
                tasks.spawn_on(task, runtime.handle());
            }
        }
        // Reap finished tasks as we go so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    runtime.block_on(async { while tasks.join_next().await.is_some() {} });
    out.finish()?;
    match read_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The most frames served on tasks at once. Past it the next frame waits unread, so a client
/// pipelining slow requests meets backpressure through the pipe instead of growing the
/// server's memory and threads; `status` keeps answering while a few executes run.
pub(crate) const MAX_FRAMES_IN_FLIGHT: usize = 32;

/// The buffer a frame is gathered in before it is written out in one write.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// The connection's output, shared by the read loop, the tasks and their notifications: each
/// frame is written whole and flushed under a lock. A client that stops reading stops the
/// server writing, and so reading, which is all the buffering it can make the server do.
#[derive(Clone)]
struct Output(Arc<Mutex<Outgoing>>);

/// The state behind [`Output`].
struct Outgoing {
    /// The stream, until the first frame read fixes the framing.
    stream: Option<Box<dyn Write + Send>>,
    writer: Option<FrameWriter<BufWriter<Box<dyn Write + Send>>>>,
    /// The first write that failed; nothing is written after it.
    failed: Option<io::Error>,
}

impl Outgoing {
    /// The frame writer, made in `framing` the first time it is asked for.
    fn writer(
        &mut self,
        framing: Framing,
    ) -> Option<&mut FrameWriter<BufWriter<Box<dyn Write + Send>>>> {
        if let Some(stream) = self.stream.take() {
            let buffered = BufWriter::with_capacity(WRITE_BUFFER_BYTES, stream);
            self.writer = Some(FrameWriter::new(buffered, framing));
        }
        self.writer.as_mut()
    }
}

impl Output {
    fn new(stream: Box<dyn Write + Send>) -> Self {
        Self(Arc::new(Mutex::new(Outgoing {
            stream: Some(stream),
            writer: None,
            failed: None,
        })))
    }

    /// Answers in `framing` from now on, unless a framing was chosen before.
    fn choose_framing(&self, framing: Framing) {
        if let Ok(mut out) = self.0.lock() {
            out.writer(framing);
        }
    }

    /// Writes one whole frame and flushes it; after a failed write, nothing.
    fn send(&self, payload: &[u8]) {
        let Ok(mut out) = self.0.lock() else {
            return;
        };
        if out.failed.is_some() {
            return;
        }
        let written = out
            .writer(Framing::Lines)
            .map(|writer| writer.queue_frame(payload).and_then(|()| writer.flush()));
        if let Some(Err(error)) = written {
            tracing::error!(%error, "writing stdout failed");
            out.failed = Some(io::Error::other(error));
        }
    }

    /// The first write error, if any.
    fn finish(&self) -> io::Result<()> {
        match self.0.lock() {
            Ok(mut out) => out.failed.take().map_or(Ok(()), Err),
            Err(_) => Err(io::Error::other("the output lock was poisoned")),
        }
    }
}

/// Cancellation flags of the requests being served, by request id.
type Inflight = Arc<Mutex<HashMap<String, Arc<AtomicBool>>>>;

/// A frame parsed.
enum Frame<T> {
    /// Answered without serving anything (not I-JSON, an empty batch, one over the cap).
    Reply(Vec<u8>),
    /// One message.
    Single(T),
    /// A batch of messages.
    Batch(Vec<T>),
}

/// One message of a frame, with the flag `$/cancelRequest` sets if it is a request.
struct Entry {
    message: Message,
    cancelled: Arc<AtomicBool>,
    /// Whether `cancelled` is in the in-flight map, to be taken out when answered.
    registered: bool,
}

impl Entry {
    /// A message answered before the next frame is read, which nothing can cancel.
    fn unregistered(message: Message) -> Self {
        Self {
            message,
            cancelled: Arc::default(),
            registered: false,
        }
    }
}

/// Parses a frame into messages.
fn parse_frame(bytes: &[u8]) -> Frame<Message> {
    let value: Value = match canonical::parse(bytes) {
        Ok(v) => v,
        Err(e) => return Frame::Reply(refusal(bytes, &e)),
    };
    match value {
        Value::Array(items) if items.is_empty() => Frame::Reply(jsonrpc::encode_error_response(
            &Value::Null,
            ErrorCode::InvalidRequest,
            "empty batch",
        )),
        Value::Array(items) if items.len() > jsonrpc::MAX_BATCH_ENTRIES => {
            let message = format!(
                "a batch of {} entries exceeds the limit of {} entries; none was served",
                items.len(),
                jsonrpc::MAX_BATCH_ENTRIES
            );
            Frame::Reply(jsonrpc::encode_error_response(
                &Value::Null,
                ErrorCode::InvalidRequest,
                &message,
            ))
        }
        Value::Array(items) => Frame::Batch(items.into_iter().map(jsonrpc::classify).collect()),
        single => Frame::Single(jsonrpc::classify(single)),
    }
}

/// Whether a single message is answered before the next frame is read: anything but a
/// request for a verb that may wait (`plan`, `execute`...), which gets a task of its own.
fn answers_at_once<C>(module: &RpcModule<C>, message: &Message) -> bool {
    match message {
        Message::Request { method, .. } => {
            !matches!(module.method(method), Some(MethodCallback::Async(_)))
        }
        _ => true,
    }
}

/// Registers the cancellation flag of each request of a frame under its id.
fn register<C>(module: &RpcModule<C>, frame: Frame<Message>, inflight: &Inflight) -> Frame<Entry> {
    let entry = |message: Message| {
        let cancelled = Arc::new(AtomicBool::new(false));
        let mut registered = false;
        if let Message::Request { id, method, .. } = &message {
            if module.method(method).is_some() {
                if let Ok(mut map) = inflight.lock() {
                    map.insert(id.to_string(), Arc::clone(&cancelled));
                    registered = true;
                }
            }
        }
        Entry {
            message,
            cancelled,
            registered,
        }
    };
    match frame {
        Frame::Reply(reply) => Frame::Reply(reply),
        Frame::Single(message) => Frame::Single(entry(message)),
        Frame::Batch(messages) => Frame::Batch(messages.into_iter().map(entry).collect()),
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
fn refusal(bytes: &[u8], error: &CanonError) -> Vec<u8> {
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
    jsonrpc::encode_error_response(&id, code, &message)
}

/// Answers one frame: a single message or a batch. `None` when nothing is to be sent. `raw`
/// is the frame's text, which a single request's params are taken from.
async fn handle_frame<C: Send + Sync + 'static>(
    module: &RpcModule<C>,
    frame: Frame<Entry>,
    raw: Option<&str>,
    out: &Output,
    inflight: &Inflight,
) -> Option<Vec<u8>> {
    match frame {
        Frame::Reply(reply) => Some(reply),
        Frame::Batch(entries) => {
            // Entries of one batch are served in order; separate frames run concurrently.
            let mut reply = vec![b'['];
            for entry in entries {
                if let Some(response) = handle_message(module, entry, None, out, inflight).await {
                    if reply.len() > 1 {
                        reply.push(b',');
                    }
                    reply.extend_from_slice(&response);
                }
            }
            reply.push(b']');
            (reply.len() > 2).then_some(reply)
        }
        Frame::Single(entry) => handle_message(module, entry, raw, out, inflight).await,
    }
}

/// Answers one message on a task. A request goes straight to the callback jsonrpsee's
/// `RpcModule` holds for its method, with its id and params as parsed here: the frame is not
/// parsed again. `raw` is the frame's text when the message is the whole frame.
async fn handle_message<C: Send + Sync + 'static>(
    module: &RpcModule<C>,
    entry: Entry,
    raw: Option<&str>,
    out: &Output,
    inflight: &Inflight,
) -> Option<Vec<u8>> {
    let response = match step(module, &entry, raw, out, inflight) {
        Step::Answered(reply) => return reply,
        Step::Call(call) => SCOPE.scope(call.scope.clone(), call.run()).await,
    };
    finish(&entry, response, inflight)
}

/// Answers one message that cannot wait, on the calling thread: `runtime` is used only if
/// its verb turns out to be asynchronous after all.
fn answer_at_once<C: Send + Sync + 'static>(
    runtime: &Runtime,
    module: &RpcModule<C>,
    entry: Entry,
    raw: Option<&str>,
    out: &Output,
    inflight: &Inflight,
) -> Option<Vec<u8>> {
    let response = match step(module, &entry, raw, out, inflight) {
        Step::Answered(reply) => return reply,
        Step::Call(call) => match call.callback {
            MethodCallback::Sync(verb) => SCOPE.sync_scope(call.scope.clone(), || {
                Some(verb(
                    call.id.clone(),
                    call.params(),
                    usize::MAX,
                    Extensions::new(),
                ))
            }),
            _ => runtime.block_on(SCOPE.scope(call.scope.clone(), call.run())),
        },
    };
    finish(&entry, response, inflight)
}

/// What a message comes to before any verb runs.
enum Step<'a> {
    /// Answered already (or, for a notification or a response, not to be answered).
    Answered(Option<Vec<u8>>),
    /// A verb to call.
    Call(Call<'a>),
}

/// One call of a verb's jsonrpsee callback.
struct Call<'a> {
    callback: &'a MethodCallback,
    id: Id<'a>,
    params: Cow<'a, str>,
    scope: RequestScope,
}

impl Call<'_> {
    fn params(&self) -> Params<'_> {
        Params::new(Some(&self.params))
    }

    /// Runs the callback; `None` for a subscription, which no verb is.
    async fn run(&self) -> Option<MethodResponse> {
        match self.callback {
            MethodCallback::Sync(verb) => Some(verb(
                self.id.clone(),
                self.params(),
                usize::MAX,
                Extensions::new(),
            )),
            MethodCallback::Async(verb) => Some(
                verb(
                    self.id.clone().into_owned(),
                    self.params().into_owned(),
                    ConnectionId(0),
                    usize::MAX,
                    Extensions::new(),
                )
                .await,
            ),
            MethodCallback::Subscription(_) | MethodCallback::Unsubscription(_) => None,
        }
    }
}

/// Answers what needs no verb, or says which verb to call and how.
fn step<'a, C>(
    module: &'a RpcModule<C>,
    entry: &'a Entry,
    raw: Option<&'a str>,
    out: &Output,
    inflight: &Inflight,
) -> Step<'a> {
    match &entry.message {
        Message::Invalid { id, reason } => Step::Answered(Some(jsonrpc::encode_error_response(
            id,
            ErrorCode::InvalidRequest,
            reason,
        ))),
        Message::Response { .. } => {
            tracing::debug!("ignoring a response: this server sends no requests");
            Step::Answered(None)
        }
        Message::Notification { method, params } => {
            if method == jsonrpc::CANCEL_REQUEST {
                cancel(inflight, params.as_ref());
            } else {
                // Notifications get no reply, so running a verb for one would hide its
                // outcome (an execute nobody hears about): they are ignored.
                tracing::debug!(%method, "ignoring notification");
            }
            Step::Answered(None)
        }
        Message::Request { id, method, params } => {
            let Some(callback) = module.method(method) else {
                let message = format!("no method {method:?}");
                return Step::Answered(Some(jsonrpc::encode_error_response(
                    id,
                    ErrorCode::MethodNotFound,
                    &message,
                )));
            };
            let Some(rpc_id) = rpc_id(id) else {
                return Step::Answered(Some(jsonrpc::encode_error_response(
                    id,
                    ErrorCode::InvalidRequest,
                    "a request id must be a string, null, or an integer from 0 to 2^64-1",
                )));
            };
            Step::Call(Call {
                callback,
                id: rpc_id,
                params: params_text(raw, params.as_ref()),
                scope: RequestScope {
                    cancelled: Arc::clone(&entry.cancelled),
                    notify: Notifier(out.clone()),
                },
            })
        }
    }
}

/// The reply to a request whose verb ran, once its cancellation flag is taken out.
fn finish(entry: &Entry, response: Option<MethodResponse>, inflight: &Inflight) -> Option<Vec<u8>> {
    let Message::Request { id, method, .. } = &entry.message else {
        return None;
    };
    // Only our own entry: a client reusing an id in flight must not lose its cancel.
    if let (true, Ok(mut map)) = (entry.registered, inflight.lock()) {
        let key = id.to_string();
        if map
            .get(&key)
            .is_some_and(|flag| Arc::ptr_eq(flag, &entry.cancelled))
        {
            map.remove(&key);
        }
    }
    Some(match response {
        Some(response) => {
            let (json, _, _) = response.into_parts();
            Box::<str>::from(json).into_string().into_bytes()
        }
        None => jsonrpc::encode_error_response(
            id,
            ErrorCode::MethodNotFound,
            &format!("{method:?} is not a method"),
        ),
    })
}

/// The request id as jsonrpsee carries it into the response; `None` for a number it cannot
/// carry (negative or fractional).
fn rpc_id(id: &Value) -> Option<Id<'_>> {
    match id {
        Value::Null => Some(Id::Null),
        Value::Number(n) => n.as_u64().map(Id::Number),
        Value::String(s) => Some(Id::Str(Cow::Borrowed(s))),
        _ => None,
    }
}

/// The params a verb is called with: the request's own text when the frame is that one
/// request (a borrowed scan finds it; the frame was already checked to be strict I-JSON), else
/// the parsed params written out again; `{}` when there are none.
fn params_text<'a>(raw: Option<&'a str>, params: Option<&Value>) -> Cow<'a, str> {
    #[derive(serde::Deserialize)]
    struct ParamsOnly<'a> {
        #[serde(borrow)]
        params: Option<&'a RawValue>,
    }
    let Some(params) = params else {
        return Cow::Borrowed("{}");
    };
    match raw.and_then(|raw| serde_json::from_str::<ParamsOnly>(raw).ok()) {
        Some(ParamsOnly { params: Some(text) }) => Cow::Borrowed(text.get()),
        _ => Cow::Owned(params.to_string()),
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
