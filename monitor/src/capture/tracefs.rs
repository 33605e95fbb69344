//! tracefs: tracepoint attach reads event ids from it, and it is not mounted on every machine.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use super::CaptureError;

const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// Returns the tracefs root, mounting tracefs at /sys/kernel/tracing when it is missing.
pub fn ensure_mounted() -> Result<PathBuf, CaptureError> {
    for root in [TRACEFS, DEBUGFS_TRACING] {
        if Path::new(root).join("events").is_dir() {
            return Ok(PathBuf::from(root));
        }
    }
    mount_tracefs().map_err(|source| CaptureError::Tracefs {
        path: TRACEFS.into(),
        source,
    })?;
    Ok(PathBuf::from(TRACEFS))
}

fn mount_tracefs() -> io::Result<()> {
    let target = std::ffi::CString::new(TRACEFS).map_err(io::Error::other)?;
    let fstype = c"tracefs";
    let source = c"nodev";
    // SAFETY: all pointers are valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        crate::notice::info(format!(
            "mounted tracefs at {TRACEFS} (tracepoints need it)"
        ));
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Field name → (offset, size) of one tracepoint's record, from its `format` file.
pub fn field_offsets(
    root: &Path,
    category: &str,
    name: &str,
) -> io::Result<Vec<(String, usize, usize)>> {
    let text = fs::read_to_string(root.join("events").join(category).join(name).join("format"))?;
    Ok(parse_format(&text))
}

/// Parses lines like `\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;`.
pub fn parse_format(text: &str) -> Vec<(String, usize, usize)> {
    let mut fields = Vec::new();
    for line in text.lines() {
        let mut decl = None;
        let mut offset = None;
        let mut size = None;
        for part in line.split(';') {
            let part = part.trim();
            if let Some(d) = part.strip_prefix("field:") {
                decl = Some(d);
            } else if let Some(o) = part.strip_prefix("offset:") {
                offset = o.parse().ok();
            } else if let Some(s) = part.strip_prefix("size:") {
                size = s.parse().ok();
            }
        }
        if let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) {
            // The name is the last word, without an array suffix: `char comm[16]` → comm.
            let name = decl
                .rsplit(' ')
                .next()
                .unwrap_or(decl)
                .split('[')
                .next()
                .unwrap_or("")
                .to_string();
            fields.push((name, offset, size));
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_with_arrays_and_data_loc() {
        let text = "name: x\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\n\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n";
        let fields = parse_format(text);
        assert_eq!(
            fields,
            vec![
                ("common_type".to_string(), 0, 2),
                ("filename".to_string(), 8, 4),
                ("comm".to_string(), 8, 16)
            ]
        );
    }
}
