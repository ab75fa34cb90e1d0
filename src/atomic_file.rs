//! Writing a file so that a crash or a full disk never leaves it half-written:
//! write a temporary file beside it, flush it to disk, then rename over.

use crate::{Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Calls `write` with a temporary path in the destination's folder, then
/// syncs and renames it to `path`. On any error the temporary file is removed
/// and whatever was at `path` before is left untouched.
pub fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temporary_path(path);
    let result = write(&tmp).and_then(|()| {
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("flushing {} to disk", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| {
            format!("moving {} into place as {}", tmp.display(), path.display())
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename itself durable; not all filesystems allow this.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}
