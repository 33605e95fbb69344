//! Finding and reading rule files: every `*.json` under the rule directories, checked for
//! ownership and modes when running as root.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::Diagnostic;
use crate::secure_fs;

/// A rule file's name and contents.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// The `*.json` files under each directory (recursively, sorted by path; hidden files and
/// directories skipped), read into memory. A missing directory is a problem. As root, so is a
/// file or directory that root does not own or that group or others may write to
/// ([`secure_fs::check_trusted`]).
pub fn read_dirs(dirs: &[PathBuf]) -> (Vec<SourceFile>, Vec<Diagnostic>) {
    read_dirs_with(dirs, secure_fs::strict_modes())
}

/// [`read_dirs`], with the ownership and mode checks on (`strict`) or off.
pub fn read_dirs_with(dirs: &[PathBuf], strict: bool) -> (Vec<SourceFile>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for dir in dirs {
        if strict && let Err(e) = secure_fs::check_trusted_ancestors(dir, "rules") {
            problems.push(untrusted(e));
            continue;
        }
        let mut paths = Vec::new();
        if let Err(e) = collect_json(dir, &mut paths, &mut problems, strict, 0) {
            problems.push(Diagnostic {
                file: dir.display().to_string(),
                position: None,
                message: format!("cannot read the rules directory: {e}"),
            });
            continue;
        }
        paths.sort();
        for path in paths {
            match read_rule_file(&path, strict) {
                Ok(text) => {
                    // Editors on Windows save UTF-8 with a byte-order mark; JSON has no use
                    // for it and editors do not count it as a column.
                    let text = match text.strip_prefix('\u{feff}') {
                        Some(rest) => rest.to_string(),
                        None => text,
                    };
                    files.push(SourceFile { path, text })
                }
                Err(RuleFileError::Untrusted(e)) => problems.push(untrusted(e)),
                Err(RuleFileError::Io(e)) => problems.push(Diagnostic {
                    file: path.display().to_string(),
                    position: None,
                    message: format!("cannot read: {e}"),
                }),
            }
        }
    }
    (files, problems)
}

enum RuleFileError {
    Io(std::io::Error),
    Untrusted(secure_fs::Untrusted),
}

/// Reads a rule file; with `strict`, the checks are made on the open file, so what is read
/// is what was checked.
fn read_rule_file(path: &Path, strict: bool) -> Result<String, RuleFileError> {
    let mut file = fs::File::open(path).map_err(RuleFileError::Io)?;
    if strict {
        let meta = file.metadata().map_err(RuleFileError::Io)?;
        secure_fs::check_trusted(path, &meta, "rule file").map_err(RuleFileError::Untrusted)?;
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(RuleFileError::Io)?;
    Ok(text)
}

fn untrusted(e: secure_fs::Untrusted) -> Diagnostic {
    Diagnostic {
        file: e.path.display().to_string(),
        position: None,
        message: e.reason,
    }
}

fn collect_json(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    problems: &mut Vec<Diagnostic>,
    strict: bool,
    depth: usize,
) -> std::io::Result<()> {
    if depth > 16 {
        return Ok(());
    }
    if strict {
        let meta = fs::metadata(dir)?;
        if let Err(e) = secure_fs::check_trusted(dir, &meta, "rule directory") {
            problems.push(untrusted(e));
            return Ok(());
        }
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = fs::metadata(&path)?;
        if kind.is_dir() {
            collect_json(&path, out, problems, strict, depth + 1)?;
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}
