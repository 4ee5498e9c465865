//! Field offsets of the classic tracepoints goprobe reads, from their tracefs `format`
//! files rather than assumed: they are ABI in practice, but reading them costs nothing
//! and turns a changed layout into an error naming the field.

use std::{fs, io, path::Path};

use thiserror::Error;
use tracer_common::TracepointFields;

#[derive(Debug, Error)]
pub enum FormatError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} has no field `{field}`")]
    NoField { path: String, field: &'static str },
}

/// The offset of `field` in a `format` file's text.
pub fn field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        // `\tfield:int sig;\toffset:8;\tsize:4;\tsigned:1;`
        let mut parts = line.trim().split(';');
        let declaration = parts.next()?.trim().strip_prefix("field:")?;
        let name = declaration.rsplit([' ', '*']).next()?;
        if name != field {
            return None;
        }
        parts
            .find_map(|part| part.trim().strip_prefix("offset:"))
            .and_then(|offset| offset.parse().ok())
    })
}

/// Every offset the kernel side needs, from the format files under `tracefs`.
pub fn tracepoint_fields(tracefs: &Path) -> Result<TracepointFields, FormatError> {
    let read = |event: &str| {
        let path = tracefs.join("events").join(event).join("format");
        fs::read_to_string(&path)
            .map(|text| (path.display().to_string(), text))
            .map_err(|source| FormatError::Read {
                path: path.display().to_string(),
                source,
            })
    };
    let offset = |(path, text): &(String, String), field: &'static str| {
        field_offset(text, field).ok_or_else(|| FormatError::NoField {
            path: path.clone(),
            field,
        })
    };
    let tgkill = read("syscalls/sys_enter_tgkill")?;
    let tgkill_exit = read("syscalls/sys_exit_tgkill")?;
    let generate = read("signal/signal_generate")?;
    let deliver = read("signal/signal_deliver")?;
    Ok(TracepointFields {
        tgkill_tgid: offset(&tgkill, "tgid")?,
        tgkill_pid: offset(&tgkill, "pid")?,
        tgkill_sig: offset(&tgkill, "sig")?,
        tgkill_ret: offset(&tgkill_exit, "ret")?,
        generate_sig: offset(&generate, "sig")?,
        generate_code: offset(&generate, "code")?,
        generate_pid: offset(&generate, "pid")?,
        generate_group: offset(&generate, "group")?,
        generate_result: offset(&generate, "result")?,
        deliver_sig: offset(&deliver, "sig")?,
        deliver_code: offset(&deliver, "code")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GENERATE: &str = "name: signal_generate\nID: 190\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:int sig;\toffset:8;\tsize:4;\tsigned:1;\n\
        \tfield:int errno;\toffset:12;\tsize:4;\tsigned:1;\n\
        \tfield:int code;\toffset:16;\tsize:4;\tsigned:1;\n\
        \tfield:char comm[16];\toffset:20;\tsize:16;\tsigned:0;\n\
        \tfield:pid_t pid;\toffset:36;\tsize:4;\tsigned:1;\n\
        \tfield:int group;\toffset:40;\tsize:4;\tsigned:1;\n\
        \tfield:int result;\toffset:44;\tsize:4;\tsigned:1;\n\n\
        print fmt: \"sig=%d\"\n";

    #[test]
    fn reads_offsets_from_a_format_file() {
        assert_eq!(field_offset(GENERATE, "sig"), Some(8));
        assert_eq!(field_offset(GENERATE, "pid"), Some(36));
        assert_eq!(field_offset(GENERATE, "result"), Some(44));
        assert_eq!(field_offset(GENERATE, "comm"), None, "arrays are not read");
        assert_eq!(field_offset(GENERATE, "signo"), None);
        let tgkill = "\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\
                      \tfield:pid_t tgid;\toffset:16;\tsize:8;\tsigned:0;\n";
        assert_eq!(field_offset(tgkill, "tgid"), Some(16));
    }
}
