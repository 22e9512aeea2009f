//! Exclusive advisory locks (`flock`) that tolerate a moment's contention.
//!
//! A held lock means a live holder: the kernel drops it when the holder dies. But a lock
//! also stays held for a moment after its holder closed it, when another thread of the same
//! process forked meanwhile (the child shares the open file until it execs), so a lock found
//! held is tried again for a short while before it counts as taken.

use std::fs::{File, TryLockError};
use std::io;
use std::time::{Duration, Instant};

/// How long a held lock is tried again before it counts as taken.
const PATIENCE: Duration = Duration::from_millis(200);

/// Takes an exclusive lock on `file`: `Ok(true)` once held, `Ok(false)` when someone else
/// holds it still after a short while.
pub fn lock_exclusive(file: &File) -> io::Result<bool> {
    let until = Instant::now() + PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(TryLockError::WouldBlock) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(TryLockError::WouldBlock) => return Ok(false),
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
}
