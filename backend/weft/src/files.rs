//! Reading a file named in a configuration: a certificate, a zone, the configuration
//! itself.
//!
//! What an operator names is usually a regular file, but need not be: a device such as
//! `/dev/zero` would be read until memory ran out, and a named pipe would hold whoever
//! opened it (a start, `weft check`, a reload, and a shutdown waiting on that reload)
//! until something wrote to it. [`read_regular`] reads only a regular file, and no more
//! of it than its caller allows.

use std::io::Read as _;
use std::path::Path;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening or reading it failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// It is a directory, a device, a named pipe or a socket.
    #[error("not a regular file")]
    NotRegular,
    /// It holds more than the limit given (in bytes).
    #[error("larger than {}", size(*.0))]
    TooLarge(u64),
}

/// The bytes of the regular file at `path` (a symbolic link is followed), of at most
/// `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular);
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge(limit));
    }
    let mut bytes = Vec::new();
    // Bounded again as read: the file may have grown since its length was asked.
    std::fs::File::open(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge(limit));
    }
    Ok(bytes)
}

/// Like [`read_regular`], as text: bytes that are not UTF-8 are an error.
pub fn read_regular_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    String::from_utf8(read_regular(path, limit)?).map_err(|e| {
        // Where, so an editor can find it: a Latin-1 accent, a stray binary byte.
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let before = &bytes[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |nl| nl + 1);
        // Columns in characters: what comes before on the line is valid UTF-8.
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "is not UTF-8 text: byte 0x{:02x} at line {line}, column {column}",
                bytes[at]
            ),
        ))
    })
}

/// `limit` in the largest whole unit that says it.
fn size(limit: u64) -> String {
    match limit {
        l if l >= 1 << 20 && l % (1 << 20) == 0 => format!("{} MiB", l >> 20),
        l if l >= 1 << 10 && l % (1 << 10) == 0 => format!("{} KiB", l >> 10),
        l => format!("{l} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_within_the_limit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "hello").unwrap();
        assert_eq!(read_regular(&file, 5).unwrap(), b"hello");
        assert_eq!(read_regular_text(&file, 64).unwrap(), "hello");
        std::fs::write(&file, b"a = 1\nname = \"caf\xe9\"\n").unwrap();
        let e = read_regular_text(&file, 64).unwrap_err();
        assert_eq!(
            e.to_string(),
            "is not UTF-8 text: byte 0xe9 at line 2, column 12"
        );
        let e = read_regular(&file, 4).unwrap_err();
        assert_eq!(e.to_string(), "larger than 4 bytes");
        assert_eq!(
            ReadError::TooLarge(16 << 20).to_string(),
            "larger than 16 MiB"
        );
        // A device never ends, a directory is no file: neither is opened.
        for path in ["/dev/zero", "/tmp"] {
            let e = read_regular(Path::new(path), 1 << 20).unwrap_err();
            assert!(matches!(e, ReadError::NotRegular), "{path}: {e}");
        }
        // A named pipe nobody writes to would hold the read for ever.
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        assert!(matches!(
            read_regular(&fifo, 1 << 20),
            Err(ReadError::NotRegular)
        ));
        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        let e = read_regular_text(&file, 64).unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");
        let e = read_regular(&dir.path().join("none"), 64).unwrap_err();
        assert!(matches!(e, ReadError::Io(_)), "{e}");
    }
}
