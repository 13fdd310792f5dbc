//! Where ferrocell keeps its files, and how: the cache of compiled cells, the
//! history, and private directories (0700) that other users cannot read. Cell
//! sources, libraries and history hold the user's code and data.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where compiled cells and the prelude are cached: `FERROCELL_CACHE`, else the
/// user's cache directory. Without either, a private temporary directory of this
/// process (never a predictable path under /tmp that another user could create
/// first).
pub fn cache_dir() -> PathBuf {
    static FALLBACK: OnceLock<Option<PathBuf>> = OnceLock::new();
    std::env::var_os("FERROCELL_CACHE")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("ferrocell")))
        .or_else(|| {
            FALLBACK
                .get_or_init(|| {
                    let dir = tempfile::Builder::new()
                        .prefix("ferrocell-cache-")
                        .tempdir();
                    dir.ok().map(|d| d.keep())
                })
                .clone()
        })
        .unwrap_or_else(|| PathBuf::from(".ferrocell-cache"))
}

/// Where the history of all sessions is kept.
pub fn history_file() -> Option<PathBuf> {
    std::env::var_os("FERROCELL_DATA_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::data_dir().map(|d| d.join("ferrocell")))
        .map(|d| d.join("history.jsonl"))
}

/// Creates `dir` (and its parents) if needed, the last one private (0700). A `dir`
/// that exists is left as the user set it up (it may be a shared or home folder),
/// but one that another user owns or that others may write into is refused: the
/// kernel would load code from it.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::symlink_metadata(dir)?;
            // SAFETY: getuid cannot fail and touches no memory.
            let mine = meta.uid() == unsafe { nix::libc::getuid() };
            let open_to_others = meta.permissions().mode() & 0o022 != 0;
            if !meta.is_dir() || !mine || open_to_others {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{} is not a folder of this user's alone (another user's, a link, or writable by others)",
                        dir.display()
                    ),
                ));
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// This machine's name: engines and the controller report it, and files that
/// hosts may share (a temporary directory) carry it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_are_created_0700_and_others_left_or_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        private_dir(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        // A folder the user set up is left as it is...
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o755);
        // ...unless others may write into it.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(private_dir(&dir).is_err());
    }
}
