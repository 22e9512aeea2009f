//! Our jsonrpsee transport over a mechanism's pipes: one compact JSON message per line.
//!
//! The jsonrpsee client gives up for good on any incoming message that is not a response to a
//! request it is waiting for, and on a response it cannot parse. So [`LineReceiver`] reads every
//! line first and hands jsonrpsee only responses to requests it sent and has not seen answered,
//! rebuilt in exactly the shape jsonrpsee parses. Notifications, `id: null` errors, stray
//! responses and requests from the server are routed aside; a line that is not JSON-RPC at all
//! ends the connection with a [`Failure`] that every pending and later call reports.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use jsonrpsee::core::client::{ReceivedMessage, TransportReceiverT, TransportSenderT};
use jsonrpsee::core::middleware::{Batch, Notification as RpcNotification, Request, RpcServiceT};
use protocol::framing::{FrameWriter, Framing};
use protocol::jsonrpc::{self, Message};
use protocol::ErrorCode;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::{mpsc, watch};

use super::Notification;

/// How many bytes of a bad line an error shows.
const EXCERPT_BYTES: usize = 200;

tokio::task_local! {
    /// Where the id of the request a `Client::call` sends is written, so a timed-out call can
    /// name it in `$/cancelRequest`; jsonrpsee picks ids itself and does not tell.
    pub(super) static REQUEST_ID: Arc<OnceLock<Value>>;
}

/// Why the connection to a mechanism ended.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum Failure {
    /// The mechanism wrote something on stdout that is not a JSON-RPC message for us.
    #[error("the mechanism broke the protocol: {reason}: {excerpt}")]
    Violation {
        /// What is wrong.
        reason: String,
        /// The start of the offending line.
        excerpt: String,
    },
    /// A pipe to the mechanism closed or failed: it exited or is exiting.
    #[error("the connection to the mechanism broke: {0}")]
    Broken(String),
    /// A message of our own could not be framed as one line.
    #[error("a message could not be sent: {0}")]
    Unsendable(String),
}

/// State shared by the transport halves, the id tracker and the client.
#[derive(Debug)]
pub(super) struct Link {
    /// The mechanism's name, for logs.
    name: String,
    /// The first failure; set once, never cleared.
    failure: watch::Sender<Option<Failure>>,
    /// Ids (compact JSON) of requests sent and not yet answered.
    outstanding: Mutex<HashSet<String>>,
    /// Where server notifications go; `None` until someone asks for them.
    notifications: Mutex<Option<mpsc::UnboundedSender<Notification>>>,
}

impl Link {
    /// A healthy link to the mechanism called `name`.
    pub(super) fn new(name: String) -> Self {
        Self {
            name,
            failure: watch::Sender::new(None),
            outstanding: Mutex::default(),
            notifications: Mutex::default(),
        }
    }

    /// Records `failure` unless one is already recorded; returns the one that stands.
    pub(super) fn fail(&self, failure: Failure) -> Failure {
        let first = self.failure.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(failure.clone());
            true
        });
        // A closed pipe is also how a clean shutdown ends, so only a broken protocol warns;
        // callers get either as an error.
        match &failure {
            _ if !first => {}
            Failure::Violation { .. } => tracing::warn!(mechanism = %self.name, "{failure}"),
            Failure::Broken(_) | Failure::Unsendable(_) => {
                tracing::debug!(mechanism = %self.name, "{failure}")
            }
        }
        self.failure().unwrap_or(failure)
    }

    /// The recorded failure, if any.
    pub(super) fn failure(&self) -> Option<Failure> {
        self.failure.borrow().clone()
    }

    /// Completes once a failure is recorded, with that failure.
    pub(super) async fn failed(&self) -> Failure {
        let mut seen = self.failure.subscribe();
        let failure = seen
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|f| f.clone());
        // `wait_for` errs only once the sender is gone, and `self` owns it.
        failure.unwrap_or_else(|| Failure::Broken("the connection state was lost".to_owned()))
    }

    /// A fresh receiver of server notifications; the previous one, if any, gets no more.
    pub(super) fn subscribe_notifications(&self) -> mpsc::UnboundedReceiver<Notification> {
        let (sender, receiver) = mpsc::unbounded_channel();
        *lock(&self.notifications) = Some(sender);
        receiver
    }

    /// Hands a notification to the subscriber, or drops it when there is none: keeping them
    /// all for a subscriber that may never come would grow without bound during a long run.
    fn deliver(&self, notification: Notification) {
        tracing::debug!(mechanism = %self.name, method = %notification.method, "notification");
        let mut slot = lock(&self.notifications);
        if let Some(sender) = slot.as_ref() {
            if sender.send(notification).is_err() {
                *slot = None;
            }
        }
    }

    /// Notes that a request with this id was sent.
    fn track(&self, id: String) {
        lock(&self.outstanding).insert(id);
    }

    /// Whether a response with this id answers a request still waiting; it stops waiting.
    fn settle(&self, id: &str) -> bool {
        lock(&self.outstanding).remove(id)
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (single inserts,
/// removes and replacements), so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The mechanism's stdin, shared so the client can close it and the receiver can answer
/// requests from the server.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    stdin: Arc<tokio::sync::Mutex<Option<ChildStdin>>>,
    link: Arc<Link>,
}

impl Writer {
    /// A writer to `stdin` that records write failures on `link`.
    pub(super) fn new(stdin: ChildStdin, link: Arc<Link>) -> Self {
        Self {
            stdin: Arc::new(tokio::sync::Mutex::new(Some(stdin))),
            link,
        }
    }

    /// Writes `message` as one line and flushes it.
    pub(super) async fn write_line(&self, message: &str) -> Result<(), Failure> {
        let mut frame = Vec::with_capacity(message.len() + 1);
        FrameWriter::new(&mut frame, Framing::Lines)
            .write_frame(message.as_bytes())
            .map_err(|e| self.link.fail(Failure::Unsendable(e.to_string())))?;
        let mut stdin = self.stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else {
            return Err(self
                .link
                .fail(Failure::Broken("its stdin is closed".to_owned())));
        };
        let written = match pipe.write_all(&frame).await {
            Ok(()) => pipe.flush().await,
            Err(e) => Err(e),
        };
        written.map_err(|e| {
            self.link
                .fail(Failure::Broken(format!("writing to its stdin failed: {e}")))
        })
    }

    /// Closes stdin: the protocol's request to finish and exit.
    pub(super) async fn close(&self) {
        self.stdin.lock().await.take();
    }
}

/// The sending half jsonrpsee drives.
#[derive(Debug)]
pub(super) struct LineSender(pub(super) Writer);

impl TransportSenderT for LineSender {
    type Error = Failure;

    async fn send(&mut self, msg: String) -> Result<(), Failure> {
        self.0.write_line(&msg).await
    }
}

/// The receiving half jsonrpsee drives; it filters what jsonrpsee sees (see the module docs).
#[derive(Debug)]
pub(super) struct LineReceiver {
    stdout: BufReader<ChildStdout>,
    max_message_bytes: usize,
    writer: Writer,
    link: Arc<Link>,
}

impl LineReceiver {
    /// A receiver on `stdout` refusing messages longer than `max_message_bytes`.
    pub(super) fn new(
        stdout: ChildStdout,
        max_message_bytes: usize,
        writer: Writer,
        link: Arc<Link>,
    ) -> Self {
        Self {
            stdout: BufReader::new(stdout),
            max_message_bytes,
            writer,
            link,
        }
    }

    /// Decides what becomes of one line: `Some` is a response for jsonrpsee.
    fn route(&self, line: &[u8]) -> Result<Option<String>, Failure> {
        let violation = |reason: String| Failure::Violation {
            reason,
            excerpt: excerpt(line),
        };
        let value: Value = serde_json::from_slice(line)
            .map_err(|e| violation(format!("a line that is not JSON ({e})")))?;
        if value.is_array() {
            return Err(violation(
                "a batch, though this client never sends one".to_owned(),
            ));
        }
        match jsonrpc::classify(value) {
            Message::Invalid { reason, .. } => Err(violation(format!(
                "a message that is not JSON-RPC 2.0 ({reason})"
            ))),
            Message::Notification { method, params } => {
                self.link.deliver(Notification {
                    method,
                    params: params.unwrap_or(Value::Null),
                });
                Ok(None)
            }
            Message::Request { id, method, .. } => {
                self.refuse(id, &method);
                Ok(None)
            }
            Message::Response {
                id: Value::Null,
                outcome,
            } => {
                // The server's answer to a message it could not read: it names no call, so no
                // call can fail with it; the calls involved end by their timeouts.
                let error = outcome.err().unwrap_or(Value::Null);
                tracing::warn!(mechanism = %self.link.name, %error, "error response without an id");
                Ok(None)
            }
            Message::Response { id, outcome } => {
                let outcome = match outcome {
                    Ok(result) => ("result", result),
                    Err(error) => ("error", clean_error(&error).map_err(violation)?),
                };
                if !self.link.settle(&id.to_string()) {
                    tracing::warn!(mechanism = %self.link.name, %id, "response to no waiting request");
                    return Ok(None);
                }
                let mut response = Map::new();
                response.insert("jsonrpc".to_owned(), json!("2.0"));
                response.insert("id".to_owned(), id);
                response.insert(outcome.0.to_owned(), outcome.1);
                Ok(Some(Value::Object(response).to_string()))
            }
        }
    }

    /// Answers a request from the server, which this client never serves.
    fn refuse(&self, id: Value, method: &str) {
        tracing::warn!(mechanism = %self.link.name, %method, "the mechanism sent a request; none are served");
        let message = format!("the admission client serves no method {method:?}");
        let reply = jsonrpc::error_response(id, ErrorCode::MethodNotFound, &message).to_string();
        let writer = self.writer.clone();
        // Written from a task of its own: waiting here for stdin while the child waits for us
        // to read its stdout could block both for good. A failed write is recorded on the link.
        tokio::spawn(async move {
            let _ = writer.write_line(&reply).await;
        });
    }
}

impl TransportReceiverT for LineReceiver {
    type Error = Failure;

    async fn receive(&mut self) -> Result<ReceivedMessage, Failure> {
        loop {
            let mut line = Vec::new();
            let end = read_line_bounded(&mut self.stdout, &mut line, self.max_message_bytes)
                .await
                .map_err(|e| {
                    self.link
                        .fail(Failure::Broken(format!("reading its stdout failed: {e}")))
                })?;
            let blank = line.trim_ascii().is_empty();
            match end {
                LineEnd::TooLong => {
                    let reason = format!(
                        "a message longer than the limit of {} bytes",
                        self.max_message_bytes
                    );
                    let excerpt = excerpt(&line);
                    return Err(self.link.fail(Failure::Violation { reason, excerpt }));
                }
                LineEnd::Eof if blank => {
                    return Err(self
                        .link
                        .fail(Failure::Broken("its stdout closed".to_owned())))
                }
                LineEnd::Newline | LineEnd::Eof => {}
            }
            if blank {
                continue;
            }
            match self.route(&line) {
                Ok(Some(response)) => return Ok(ReceivedMessage::Text(response)),
                Ok(None) => {}
                Err(violation) => return Err(self.link.fail(violation)),
            }
        }
    }
}

/// An error object in the shape jsonrpsee parses: it refuses members other than `code`,
/// `message` and `data`, and codes beyond 32 bits, and would drop the connection on them.
fn clean_error(error: &Value) -> Result<Value, String> {
    let code = error
        .get("code")
        .and_then(Value::as_i64)
        .and_then(|code| i32::try_from(code).ok())
        .ok_or("an error whose \"code\" is not a 32-bit integer")?;
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .ok_or("an error whose \"message\" is not a string")?;
    let mut clean = Map::new();
    clean.insert("code".to_owned(), json!(code));
    clean.insert("message".to_owned(), json!(message));
    if let Some(data) = error.get("data") {
        clean.insert("data".to_owned(), data.clone());
    }
    Ok(Value::Object(clean))
}

/// A short, escaped rendering of a line from the mechanism, for error messages.
fn excerpt(line: &[u8]) -> String {
    let shown = String::from_utf8_lossy(&line[..line.len().min(EXCERPT_BYTES)]);
    let more = if line.len() > EXCERPT_BYTES {
        "..."
    } else {
        ""
    };
    format!("{shown:?}{more}")
}

/// How reading one line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LineEnd {
    /// At its `\n`, which was consumed.
    Newline,
    /// At the end of the stream; the line holds whatever came after the last `\n`.
    Eof,
    /// The line holds `max` bytes and the rest of it is still unread.
    TooLong,
}

/// Appends the next line, without its `\n` (or `\r\n`), to `line`, keeping at most `max`
/// bytes: a peer that never ends its line must not make us hold more, or wait for more.
pub(super) async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineEnd> {
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(LineEnd::Eof);
        }
        let room = max.saturating_sub(line.len());
        let (used, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(p) if p <= room => {
                line.extend_from_slice(&buf[..p]);
                (p + 1, Some(LineEnd::Newline))
            }
            None if buf.len() <= room => {
                line.extend_from_slice(buf);
                (buf.len(), None)
            }
            _ => {
                line.extend_from_slice(&buf[..room]);
                (room, Some(LineEnd::TooLong))
            }
        };
        reader.consume(used);
        if let Some(end) = end {
            if end == LineEnd::Newline && line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(end);
        }
    }
}

/// jsonrpsee middleware that tells the receiver which ids are awaited and tells
/// `Client::call` the id of its request.
#[derive(Debug)]
pub(super) struct IdTracker<S> {
    inner: S,
    link: Arc<Link>,
}

impl<S> IdTracker<S> {
    /// Wraps jsonrpsee's service `inner`.
    pub(super) fn new(inner: S, link: Arc<Link>) -> Self {
        Self { inner, link }
    }
}

impl<S: RpcServiceT + Send + Sync> RpcServiceT for IdTracker<S> {
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(
        &self,
        request: Request<'a>,
    ) -> impl Future<Output = S::MethodResponse> + Send + 'a {
        // Tracked before it is sent, so the response can never arrive first. An id that does
        // not serialise (none does) would go untracked and its call end by its timeout.
        if let Ok(id) = serde_json::to_value(&request.id) {
            self.link.track(id.to_string());
            // Only `Client::call` sends requests, inside a `REQUEST_ID` scope.
            let _ = REQUEST_ID.try_with(|slot| slot.set(id));
        }
        self.inner.call(request)
    }

    fn batch<'a>(&self, requests: Batch<'a>) -> impl Future<Output = S::BatchResponse> + Send + 'a {
        // The client never sends batches; passing them through keeps the trait whole.
        self.inner.batch(requests)
    }

    fn notification<'a>(
        &self,
        n: RpcNotification<'a>,
    ) -> impl Future<Output = S::NotificationResponse> + Send + 'a {
        self.inner.notification(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<(Vec<u8>, LineEnd)> {
        // A tiny buffer makes lines straddle reads.
        let mut reader = tokio::io::BufReader::with_capacity(3, input);
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            let end = read_line_bounded(&mut reader, &mut line, max)
                .await
                .unwrap();
            out.push((line, end));
            if end == LineEnd::Eof {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn lines_are_split_bounded_and_lose_their_line_endings() {
        let got = lines(b"ab\r\ncdefgh\nij", 4).await;
        assert_eq!(
            got,
            vec![
                (b"ab".to_vec(), LineEnd::Newline),
                (b"cdef".to_vec(), LineEnd::TooLong),
                (b"gh".to_vec(), LineEnd::Newline),
                (b"ij".to_vec(), LineEnd::Eof),
            ]
        );
        assert_eq!(
            lines(b"abcd\n", 4).await[0],
            (b"abcd".to_vec(), LineEnd::Newline)
        );
    }

    #[test]
    fn error_objects_are_cut_to_what_jsonrpsee_accepts() {
        let error =
            json!({"code": -32008, "message": "stale", "data": {"code": "STALE_PLAN"}, "extra": 1});
        assert_eq!(
            clean_error(&error).unwrap(),
            json!({"code": -32008, "message": "stale", "data": {"code": "STALE_PLAN"}})
        );
        assert!(clean_error(&json!({"code": 1u64 << 40, "message": "x"})).is_err());
        assert!(clean_error(&json!({"code": 1})).is_err());
    }
}
