//! The registered controllers, kept server-side in one root-only JSON file (`[controller]
//! machines_file`, by default `machines.json` beside the token file): name, URL, the remote's
//! access token and an optional CA file. The file is rewritten whole on every change (a
//! temporary file, then a rename), so a crash leaves the old list or the new one, never half.
//!
//! A [`Machine`]'s token is a secret of the remote machine: it is not `Serialize` (what the
//! API and the pages show is [`MachineInfo`], which has no token field), its `Debug` hides it,
//! and no error message here quotes it.
use std::{
    fs,
    io::Write,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::secure_fs;

/// Machines registered at most (the health poller visits each every few seconds).
pub const MAX_MACHINES: usize = 64;
/// Longest machine name.
pub const MAX_NAME: usize = 63;
/// Longest token accepted (a secmon token is 64 hex digits; others may be longer).
pub const MAX_TOKEN: usize = 512;
/// The name that stands for this machine (the one the controller runs on): not registrable.
pub const LOCAL: &str = "local";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error(
        "name: {0:?} is not a machine name (1 to {MAX_NAME} letters, digits, '.', '-' or '_', \
         starting with a letter or digit; \"local\" is this machine)"
    )]
    BadName(String),
    #[error("url: {0}")]
    BadUrl(String),
    #[error(
        "token: 32 to {MAX_TOKEN} printable characters without spaces (the remote's [controller] \
         token_file)"
    )]
    BadToken,
    #[error("ca_file: {0}")]
    BadCaFile(String),
    #[error("a machine named {0:?} is already registered: remove it first")]
    Duplicate(String),
    #[error("no machine named {0:?} is registered")]
    NotFound(String),
    #[error("at most {MAX_MACHINES} machines can be registered")]
    Full,
    #[error("machines file {path}: {message}")]
    File { path: String, message: String },
}

/// A registered controller. Not `Serialize`: see the module's documentation.
#[derive(Clone, PartialEq, Eq)]
pub struct Machine {
    pub name: String,
    /// `https://host:port` (or `http://` to a loopback address), without a trailing slash.
    pub url: String,
    token: String,
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("token", &"(hidden)")
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl Machine {
    /// The remote's access token, for the `Authorization` header of requests to it only.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// What may be shown: everything but the token.
    pub fn info(&self) -> MachineInfo {
        MachineInfo {
            name: self.name.clone(),
            url: self.url.clone(),
            ca_file: self.ca_file.as_ref().map(|p| p.display().to_string()),
        }
    }
}

/// A machine as the API and the pages show it: no token.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MachineInfo {
    pub name: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// A machine to register, as the API and the page's form give it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMachine {
    pub name: String,
    pub url: String,
    pub token: String,
    #[serde(default)]
    pub ca_file: Option<String>,
}

impl std::fmt::Debug for NewMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewMachine")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("token", &"(hidden)")
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl NewMachine {
    /// The machine, or the first thing wrong with it (its CA file is read: a wrong path is
    /// said when the machine is added).
    pub fn check(self) -> Result<Machine, RegistryError> {
        self.check_reading_ca(true)
    }

    /// As [`NewMachine::check`]; `read_ca` false when loading the file at start: a CA file
    /// that went away makes that machine unreachable (with why), not the controller refuse to
    /// start.
    fn check_reading_ca(self, read_ca: bool) -> Result<Machine, RegistryError> {
        let name = self.name.trim().to_string();
        check_name(&name)?;
        let url = check_url(self.url.trim())?;
        let token = self.token.trim().to_string();
        if token.len() < 32
            || token.len() > MAX_TOKEN
            || !token.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(RegistryError::BadToken);
        }
        let ca_file = match self.ca_file.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(path) => Some(check_ca_file(Path::new(path), read_ca)?),
        };
        Ok(Machine {
            name,
            url,
            token,
            ca_file,
        })
    }
}

fn check_name(name: &str) -> Result<(), RegistryError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !name.eq_ignore_ascii_case(LOCAL);
    if ok {
        Ok(())
    } else {
        Err(RegistryError::BadName(
            crate::sanitize::for_terminal(name).into_owned(),
        ))
    }
}

/// `https://host[:port][/]`, or `http://` when the host is a loopback address (the token would
/// otherwise cross the network in the clear). Returned without the trailing slash.
pub fn check_url(url: &str) -> Result<String, RegistryError> {
    let bad = |why: &str| RegistryError::BadUrl(why.to_string());
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|_| bad("not a URL (https://HOST:PORT)"))?;
    let scheme = uri.scheme_str().unwrap_or_default();
    let authority = uri
        .authority()
        .ok_or_else(|| bad("no host (https://HOST:PORT)"))?;
    if authority.as_str().contains('@') {
        return Err(bad(
            "no user or password in the URL: the token goes in its own field",
        ));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad(
            "the controller's address only (https://HOST:PORT), no path",
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    match scheme {
        "https" => {}
        "http" if is_loopback(host) => {}
        "http" => {
            return Err(bad(
                "plain http only to a loopback address: the token would cross the network in \
                 the clear (use https)",
            ));
        }
        _ => {
            return Err(bad(
                "the scheme must be https (or http to a loopback address)",
            ));
        }
    }
    Ok(format!("{scheme}://{}", authority.as_str()))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The CA file must be an absolute path to PEM certificates (read when `read` is true).
fn check_ca_file(path: &Path, read: bool) -> Result<PathBuf, RegistryError> {
    if !path.is_absolute() {
        return Err(RegistryError::BadCaFile(format!(
            "{}: give an absolute path",
            path.display()
        )));
    }
    if read {
        super::client::read_ca_file(path).map_err(RegistryError::BadCaFile)?;
    }
    Ok(path.to_path_buf())
}

/// The file's form (the only place a token is serialised).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    name: String,
    url: String,
    token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileForm {
    machines: Vec<FileEntry>,
}

/// The registered machines and the file they live in.
pub struct Registry {
    path: PathBuf,
    machines: Vec<Machine>,
}

impl Registry {
    /// Reads `path` (no file: no machine). A file others may read or write is refused: it holds
    /// other machines' tokens.
    pub fn load(path: &Path) -> Result<Registry, RegistryError> {
        let fail = |message: String| RegistryError::File {
            path: path.display().to_string(),
            message,
        };
        let text = match fs::symlink_metadata(path) {
            Ok(meta) => {
                if !meta.is_file() {
                    return Err(fail("not a regular file".to_string()));
                }
                // Whoever may write it could point a machine's URL elsewhere and receive its
                // token with the next poll.
                // SAFETY: geteuid has no preconditions and cannot fail.
                let euid = unsafe { libc::geteuid() };
                if meta.uid() != euid {
                    return Err(fail(format!(
                        "owned by uid {}, not by the monitor's user (uid {euid}); it holds \
                         other machines' tokens: chown it",
                        meta.uid()
                    )));
                }
                let mode = meta.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(fail(format!(
                        "readable or writable by other users (mode {:o}); it holds other \
                         machines' tokens: chmod 600 it",
                        mode & 0o777
                    )));
                }
                fs::read_to_string(path).map_err(|e| fail(e.to_string()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(fail(e.to_string())),
        };
        let form: FileForm = if text.trim().is_empty() {
            FileForm::default()
        } else {
            // Where, not what: serde_json's message may quote a value, and a value may be a token.
            serde_json::from_str(&text).map_err(|e| {
                fail(format!(
                    "not a machines file (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })?
        };
        let mut registry = Registry {
            path: path.to_path_buf(),
            machines: Vec::new(),
        };
        for entry in form.machines {
            let machine = NewMachine {
                name: entry.name,
                url: entry.url,
                token: entry.token,
                ca_file: entry.ca_file.map(|p| p.display().to_string()),
            }
            .check_reading_ca(false)
            .map_err(|e| fail(e.to_string()))?;
            if registry.find(&machine.name).is_some() {
                return Err(fail(RegistryError::Duplicate(machine.name).to_string()));
            }
            registry.machines.push(machine);
        }
        Ok(registry)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn machines(&self) -> &[Machine] {
        &self.machines
    }

    pub fn find(&self, name: &str) -> Option<&Machine> {
        self.machines.iter().find(|m| m.name == name)
    }

    /// Registers `new` and writes the file; on any error nothing changes.
    pub fn add(&mut self, new: NewMachine) -> Result<MachineInfo, RegistryError> {
        let machine = new.check()?;
        if self.find(&machine.name).is_some() {
            return Err(RegistryError::Duplicate(machine.name));
        }
        if self.machines.len() >= MAX_MACHINES {
            return Err(RegistryError::Full);
        }
        let info = machine.info();
        let mut next = self.machines.clone();
        next.push(machine);
        self.save(&next)?;
        self.machines = next;
        Ok(info)
    }

    /// Removes machine `name` and writes the file.
    pub fn remove(&mut self, name: &str) -> Result<MachineInfo, RegistryError> {
        let Some(at) = self.machines.iter().position(|m| m.name == name) else {
            return Err(RegistryError::NotFound(
                crate::sanitize::for_terminal(name).into_owned(),
            ));
        };
        let mut next = self.machines.clone();
        let removed = next.remove(at);
        self.save(&next)?;
        self.machines = next;
        Ok(removed.info())
    }

    /// Writes `machines` to a temporary file beside the real one (`0600`, no link followed),
    /// syncs it and renames it over the real one.
    fn save(&self, machines: &[Machine]) -> Result<(), RegistryError> {
        let fail = |message: String| RegistryError::File {
            path: self.path.display().to_string(),
            message,
        };
        let form = FileForm {
            machines: machines
                .iter()
                .map(|m| FileEntry {
                    name: m.name.clone(),
                    url: m.url.clone(),
                    token: m.token.clone(),
                    ca_file: m.ca_file.clone(),
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&form).map_err(|e| fail(e.to_string()))?;
        secure_fs::create_private_parent(&self.path)
            .map_err(|e| fail(format!("cannot create its directory: {e}")))?;
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".new");
        let temporary = PathBuf::from(temporary);
        let mut file =
            secure_fs::open_for_writing(&temporary, 0o600, secure_fs::Existing::Truncate)
                .map_err(|e| fail(format!("{}: {e}", temporary.display())))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| fail(format!("{}: {e}", temporary.display())))?;
        drop(file);
        fs::rename(&temporary, &self.path).map_err(|e| fail(format!("cannot replace it: {e}")))?;
        // The rename is durable once the directory is.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = fs::File::open(dir)
        {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn new(name: &str, url: &str) -> NewMachine {
        NewMachine {
            name: name.to_string(),
            url: url.to_string(),
            token: TOKEN.to_string(),
            ca_file: None,
        }
    }

    #[test]
    fn the_file_is_root_only_rewritten_whole_and_read_back()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("sub/machines.json");
        let mut registry = Registry::load(&path)?;
        assert!(registry.machines().is_empty());
        registry.add(new("web-1", "https://web-1.example:9988/"))?;
        registry.add(new("lab", "http://127.0.0.1:9000"))?;
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(dir.path().join("sub"))?.permissions().mode() & 0o777,
            0o700
        );
        // No temporary file is left beside it.
        let names: Vec<_> = fs::read_dir(dir.path().join("sub"))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("machines.json")]);
        let again = Registry::load(&path)?;
        assert_eq!(again.machines(), registry.machines());
        assert_eq!(again.machines()[0].url, "https://web-1.example:9988");
        assert_eq!(again.machines()[0].token(), TOKEN);
        let mut again = again;
        again.remove("web-1")?;
        assert_eq!(Registry::load(&path)?.machines().len(), 1);
        assert_eq!(
            again.remove("web-1"),
            Err(RegistryError::NotFound("web-1".into()))
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640))?;
        let refused = Registry::load(&path).map(|_| ());
        assert!(
            matches!(&refused, Err(e) if e.to_string().contains("readable or writable by other")),
            "{refused:?}"
        );
        Ok(())
    }

    #[test]
    fn a_file_of_another_user_or_a_lost_ca_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("machines.json");
        let ca = dir.path().join("ca.pem");
        fs::write(
            &ca,
            include_str!("../../../../tests/fixtures/tls/test-ca.pem"),
        )?;
        let mut registry = Registry::load(&path)?;
        let mut with_ca = new("a", "https://a.example");
        with_ca.ca_file = Some(ca.display().to_string());
        registry.add(with_ca)?;
        // The CA file went away: the file still loads (the machine will say why it fails).
        fs::remove_file(&ca)?;
        assert_eq!(Registry::load(&path)?.machines().len(), 1);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&path, Some(65534), None)?;
            let refused = Registry::load(&path).map(|_| ());
            assert!(
                matches!(&refused, Err(e) if e.to_string().contains("owned by uid 65534")),
                "{refused:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_symbolic_link_is_not_written_through() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("machines.json");
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep")?;
        std::os::unix::fs::symlink(&victim, dir.path().join("machines.json.new"))?;
        let mut registry = Registry::load(&path)?;
        assert!(registry.add(new("a", "https://a.example")).is_err());
        assert_eq!(fs::read_to_string(&victim)?, "keep");
        assert!(registry.machines().is_empty());
        Ok(())
    }

    #[test]
    fn names_urls_tokens_and_duplicates_are_checked() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut registry = Registry::load(&dir.path().join("machines.json"))?;
        for name in [
            "",
            "local",
            "LOCAL",
            "-x",
            "a b",
            "a/b",
            "<script>",
            &"x".repeat(64),
        ] {
            assert!(
                matches!(
                    registry.add(new(name, "https://a.example")),
                    Err(RegistryError::BadName(_))
                ),
                "{name:?} was accepted"
            );
        }
        for url in [
            "http://a.example:9988",
            "http://10.0.0.1:9988",
            "ftp://a.example",
            "https://",
            "a.example:9988",
            "https://user:pw@a.example",
            "https://a.example/api/v1",
            "https://a.example/?x=1",
        ] {
            assert!(
                matches!(registry.add(new("m", url)), Err(RegistryError::BadUrl(_))),
                "{url:?} was accepted"
            );
        }
        for url in [
            "http://127.0.0.1:1",
            "http://[::1]:2",
            "http://localhost:3",
            "https://10.0.0.1",
        ] {
            let name = format!("m{}", registry.machines().len());
            registry.add(new(&name, url))?;
        }
        let mut short = new("t", "https://a.example");
        short.token = "short".into();
        assert_eq!(
            registry.add(short).map(|_| ()),
            Err(RegistryError::BadToken)
        );
        let mut spaced = new("t", "https://a.example");
        spaced.token = format!("{TOKEN} x");
        assert_eq!(
            registry.add(spaced).map(|_| ()),
            Err(RegistryError::BadToken)
        );
        let mut relative = new("t", "https://a.example");
        relative.ca_file = Some("ca.pem".into());
        assert!(matches!(
            registry.add(relative),
            Err(RegistryError::BadCaFile(_))
        ));
        let mut missing = new("t", "https://a.example");
        missing.ca_file = Some(dir.path().join("none.pem").display().to_string());
        assert!(matches!(
            registry.add(missing),
            Err(RegistryError::BadCaFile(_))
        ));
        assert_eq!(
            registry.add(new("m0", "https://b.example")).map(|_| ()),
            Err(RegistryError::Duplicate("m0".into()))
        );
        Ok(())
    }

    #[test]
    fn tokens_are_neither_serialised_nor_printed() -> Result<(), Box<dyn std::error::Error>> {
        let machine = new("web-1", "https://web-1.example").check()?;
        let shown = serde_json::to_string(&machine.info())?;
        assert!(
            !shown.contains(TOKEN) && !shown.contains("token"),
            "{shown}"
        );
        assert!(!format!("{machine:?}").contains(TOKEN));
        assert!(!format!("{:?}", new("a", "b")).contains(TOKEN));
        // An error about the token does not quote it.
        let mut bad = new("a", "https://a.example");
        bad.token = format!("{TOKEN}\n{TOKEN}");
        let error = bad
            .check()
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!error.is_empty() && !error.contains(TOKEN), "{error}");
        Ok(())
    }
}
