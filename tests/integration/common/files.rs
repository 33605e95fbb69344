//! Files: temporary directories, paths as the monitor prints them, copied executables.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A path in the source tree (`rules`, `tests/fixtures/...`), as a string.
pub fn workspace(rel: &str) -> String {
    path_str(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel))
}

/// A path as the UTF-8 string the monitor is expected to print.
pub fn path_str(path: &Path) -> String {
    path.to_str()
        .unwrap_or_else(|| panic!("test path {} is not UTF-8", path.display()))
        .to_string()
}

/// The JSON string the monitor should print for a path of arbitrary bytes (lossy UTF-8).
pub fn lossy(path: &Path) -> String {
    String::from_utf8_lossy(path.as_os_str().as_bytes()).into_owned()
}

/// A temporary directory named after a marker, with its canonical path (what events report).
/// Removed on drop.
pub struct TestDir {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TestDir {
    pub fn new(marker: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{marker}-"))
            .tempdir()
            .expect("create a temporary directory");
        let path = dir
            .path()
            .canonicalize()
            .expect("canonicalise the temporary directory");
        TestDir { _dir: dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

/// Copies an executable (e.g. `/bin/true`) to `dest` with mode 0755 and returns `dest`.
pub fn copy_executable(src: &str, dest: &Path) -> PathBuf {
    fs::copy(src, dest).unwrap_or_else(|e| panic!("copy {src} to {}: {e}", dest.display()));
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", dest.display()));
    dest.to_path_buf()
}
