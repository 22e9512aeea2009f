//! A bare serde_json JSON-RPC 2.0 server on stdio, the floor `scripts/bench-rpc.sh` compares
//! `mechanism-server` against: read a frame, parse it, answer, flush. It speaks both framings
//! the protocol does (docs/protocol.md §2.1), detected from the first byte, and nothing more:
//! no limits, no batches, no validation beyond what serde_json does.
//!
//! By default it parses the request borrowed (id and params stay text) and writes the answer
//! around them: the floor. With `--value` it parses into a `serde_json::Value` tree and
//! serialises a tree back, as a plain serde_json server would.

use std::borrow::Cow;
use std::io::{self, BufRead, BufWriter, Write};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

fn main() -> io::Result<()> {
    let answer = if std::env::args().any(|arg| arg == "--value") {
        answer_value
    } else {
        answer_borrowed
    };
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut output = BufWriter::new(io::stdout().lock());
    let content_length = match input.fill_buf()?.first() {
        None => return Ok(()),
        Some(byte) => byte.eq_ignore_ascii_case(&b'C'),
    };
    let mut frame = Vec::new();
    loop {
        frame.clear();
        let more = if content_length {
            read_content_length(&mut input, &mut frame)?
        } else {
            input.read_until(b'\n', &mut frame)? > 0
        };
        if !more {
            return Ok(());
        }
        let answer = answer(&frame);
        if content_length {
            write!(output, "Content-Length: {}\r\n\r\n", answer.len())?;
            output.write_all(&answer)?;
        } else {
            output.write_all(&answer)?;
            output.write_all(b"\n")?;
        }
        output.flush()?;
    }
}

/// Reads one `Content-Length` frame's body into `body`; false at EOF.
fn read_content_length(input: &mut impl BufRead, body: &mut Vec<u8>) -> io::Result<bool> {
    let mut length = None;
    let mut headers = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(false);
        }
        let header = line.trim();
        if header.is_empty() {
            // Blank lines before the first header are whitespace between frames.
            if headers > 0 {
                break;
            }
            continue;
        }
        headers += 1;
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    // A bench-only echo: a frame it cannot delimit ends the connection.
    let length = length.ok_or_else(|| io::Error::other("no valid Content-Length header"))?;
    body.resize(length, 0);
    input.read_exact(body)?;
    Ok(true)
}

/// One request, borrowed from the frame: nothing is copied or built but the answer.
#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

/// The answer to one frame, `describe` and `status` echoing their params back as the result and
/// anything else method-not-found, written around the request's own id and params text.
fn answer_borrowed(frame: &[u8]) -> Vec<u8> {
    let request: Request = match serde_json::from_slice(frame) {
        Ok(request) => request,
        Err(e) => {
            let error = json!({"jsonrpc": "2.0", "id": null,
                               "error": {"code": -32700, "message": e.to_string()}});
            return error.to_string().into_bytes();
        }
    };
    let id = request.id.map_or("null", RawValue::get);
    let mut out = Vec::with_capacity(64 + frame.len());
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.as_bytes());
    match request.method.as_deref() {
        Some("describe" | "status") => {
            out.extend_from_slice(b",\"result\":");
            out.extend_from_slice(request.params.map_or("null", RawValue::get).as_bytes());
        }
        _ => {
            out.extend_from_slice(b",\"error\":{\"code\":-32601,\"message\":\"method not found\"}")
        }
    }
    out.push(b'}');
    out
}

/// The same answer, by way of a `Value` tree each way.
fn answer_value(frame: &[u8]) -> Vec<u8> {
    let request: Value = match serde_json::from_slice(frame) {
        Ok(request) => request,
        Err(e) => {
            return json!({"jsonrpc": "2.0", "id": null,
                          "error": {"code": -32700, "message": e.to_string()}})
            .to_string()
            .into_bytes()
        }
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let answer = match request.get("method").and_then(Value::as_str) {
        Some("describe" | "status") => json!({"jsonrpc": "2.0", "id": id,
            "result": request.get("params").cloned().unwrap_or(Value::Null)}),
        _ => json!({"jsonrpc": "2.0", "id": id,
            "error": {"code": -32601, "message": "method not found"}}),
    };
    answer.to_string().into_bytes()
}
