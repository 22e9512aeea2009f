//! Logs go to stderr through `tracing`, filtered by `RUST_LOG` (default: warnings).

use tracing_subscriber::EnvFilter;

/// Installs the stderr subscriber; stdout stays for command output.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    // A second init (tests calling main twice) is harmless, so its error is ignored.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
