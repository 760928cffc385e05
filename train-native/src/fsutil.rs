//! Atomic file writes: temp file in the same folder, fsync, rename, fsync the folder. A crash
//! at any point leaves either the old file or the new one, never a mix.

use crate::error::{Result, TrainError};
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_interruptible(path, bytes, None)
}

/// `interrupt_after`: test hook simulating a crash. The temp file gets only that many bytes
/// and the function returns an `Interrupted` I/O error before the rename, as a killed process
/// would leave things.
pub(crate) fn write_atomic_interruptible(path: &Path, bytes: &[u8], interrupt_after: Option<usize>) -> Result<()> {
    let tmp = temp_path(path);
    let mut f = std::fs::File::create(&tmp).map_err(TrainError::io("create", &tmp))?;
    if let Some(n) = interrupt_after {
        f.write_all(&bytes[..n.min(bytes.len())]).map_err(TrainError::io("write", &tmp))?;
        return Err(TrainError::Io {
            op: "write (simulated interruption)",
            path: tmp,
            source: std::io::Error::new(std::io::ErrorKind::Interrupted, "interrupted by test hook"),
        });
    }
    f.write_all(bytes).map_err(TrainError::io("write", &tmp))?;
    f.sync_all().map_err(TrainError::io("fsync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(TrainError::io("rename into place", path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename itself durable; some filesystems refuse fsync on a directory: ignore.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
