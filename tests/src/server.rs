//! A spawned `mechanism-server` (or any mechanism), spoken to over its real stdin and stdout.

use std::io::{BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use protocol::framing::FrameReader;
use serde_json::{json, Value};

use crate::bin_path;

/// How long a test waits for one message before failing.
const WAIT: Duration = Duration::from_secs(60);

/// A running `mechanism-server git_apply_patch` child, or another mechanism's.
pub struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    frames: mpsc::Receiver<Vec<u8>>,
    next_id: u64,
}

impl Server {
    /// Spawns the server on `root` and `store`, trusting `signers` for force-acks.
    pub fn spawn(root: &Path, store: &Path, signers: Option<&Path>) -> Self {
        Self::spawn_with(root, store, signers, &[])
    }

    /// Spawns with extra command-line arguments.
    pub fn spawn_with(root: &Path, store: &Path, signers: Option<&Path>, extra: &[&str]) -> Self {
        Self::spawn_env(root, store, signers, extra, &[])
    }

    /// Spawns with extra command-line arguments and environment variables.
    pub fn spawn_env(
        root: &Path,
        store: &Path,
        signers: Option<&Path>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = Command::new(bin_path("mechanism-server"));
        cmd.envs(env.iter().copied());
        cmd.arg("git_apply_patch")
            .arg("--root")
            .arg(root)
            .arg("--store")
            .arg(store)
            .args(extra);
        if let Some(signers) = signers {
            cmd.arg("--force-ack-signers").arg(signers);
        }
        Self::spawn_command(cmd)
    }

    /// Spawns any mechanism's command, with stdin and stdout piped to the test and stderr
    /// inherited.
    pub fn spawn_command(mut cmd: Command) -> Self {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, frames) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = FrameReader::new(BufReader::new(stdout));
            while let Ok(Some(frame)) = reader.read_frame() {
                if tx.send(frame).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            stdin,
            frames,
            next_id: 0,
        }
    }

    /// Writes raw bytes to the server's stdin.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(bytes).expect("write to server");
        stdin.flush().expect("flush to server");
    }

    /// Sends one message, newline-delimited.
    pub fn send(&mut self, message: &Value) {
        let mut line = message.to_string().into_bytes();
        line.push(b'\n');
        self.send_raw(&line);
    }

    /// The next frame the server writes, as raw bytes.
    pub fn recv_raw(&mut self) -> Vec<u8> {
        self.frames
            .recv_timeout(WAIT)
            .expect("the server answers within the wait")
    }

    /// The next message the server writes, parsed.
    pub fn recv(&mut self) -> Value {
        let frame = self.recv_raw();
        serde_json::from_slice(&frame).unwrap_or_else(|e| {
            panic!(
                "server wrote non-JSON {:?}: {e}",
                String::from_utf8_lossy(&frame)
            )
        })
    }

    /// A message if one arrives within `wait`.
    pub fn try_recv(&mut self, wait: Duration) -> Option<Value> {
        let frame = self.frames.recv_timeout(wait).ok()?;
        serde_json::from_slice(&frame).ok()
    }

    /// The next response, skipping notifications (which are returned alongside).
    pub fn recv_response(&mut self) -> (Value, Vec<Value>) {
        let mut notifications = Vec::new();
        loop {
            let message = self.recv();
            if message.get("method").is_some() && message.get("id").is_none() {
                notifications.push(message);
            } else {
                return (message, notifications);
            }
        }
    }

    /// Sends a request with a fresh id and returns the whole response.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let (response, _) = self.recv_response();
        assert_eq!(
            response["id"], id,
            "response to another request: {response}"
        );
        response
    }

    /// Calls and returns the result, failing the test on an error response.
    pub fn result(&mut self, method: &str, params: Value) -> Value {
        let response = self.call(method, params);
        match response.get("result") {
            Some(result) => result.clone(),
            None => panic!("{method} failed: {response}"),
        }
    }

    /// Calls and returns the error's stable code, failing the test on success.
    pub fn error_code(&mut self, method: &str, params: Value) -> String {
        let response = self.call(method, params);
        match response.pointer("/error/data/code").and_then(Value::as_str) {
            Some(code) => code.to_owned(),
            None => panic!("{method} was expected to fail with a coded error: {response}"),
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A number from the server's `/proc/PID/status`, e.g. `Threads` or `VmHWM` (peak
    /// resident memory, in KiB); `None` once it has exited.
    pub fn proc_status(&self, field: &str) -> Option<u64> {
        proc_status(self.pid(), field)
    }

    /// Closes stdin and waits for the exit status.
    pub fn close(mut self) -> ExitStatus {
        drop(self.stdin.take());
        self.child.wait().expect("wait for the server")
    }

    /// Waits for the server to exit on its own (stdin kept open), up to the wait.
    pub fn wait_exit(mut self) -> ExitStatus {
        let until = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                drop(self.stdin.take());
                return status;
            }
            assert!(
                std::time::Instant::now() < until,
                "the server did not exit within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the server with SIGKILL, as `kill -9` does, and reaps it.
    pub fn kill(mut self) {
        drop(self.stdin.take());
        self.child.kill().expect("kill the server");
        self.child.wait().expect("reap the server");
    }

    /// Closes stdin, waits for the exit status, and returns every message the server wrote
    /// that was not received yet, to the end of its stdout.
    pub fn finish(mut self) -> (ExitStatus, Vec<Value>) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait for the server");
        let mut rest = Vec::new();
        // The reader thread ends, and drops its sender, when stdout closes.
        while let Ok(frame) = self.frames.recv_timeout(WAIT) {
            rest.push(serde_json::from_slice(&frame).unwrap_or_else(|e| {
                panic!(
                    "server wrote non-JSON {:?}: {e}",
                    String::from_utf8_lossy(&frame)
                )
            }));
        }
        (status, rest)
    }
}

/// A number from `/proc/PID/status`, e.g. `Threads` or `VmHWM` (in KiB).
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
