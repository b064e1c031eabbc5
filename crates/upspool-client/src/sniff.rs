//! Content sniffing: the document type from the file's first bytes, so that a file a printer
//! cannot take is refused before a job exists, and the `contentType` sent is what the bytes
//! are, not what the name claims.

use std::io::Read;
use std::path::Path;

use crate::error::{ClientError, Result};

/// How much of the file is looked at.
pub const SNIFF_LEN: usize = 64 * 1024;

/// The MIME type of a supported document, from its leading `bytes` (and the file name,
/// which only tells XPS from OpenXPS). `None` when the bytes are no supported type.
pub fn detect(bytes: &[u8], file_name: &str) -> Option<&'static str> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(b"%PDF-") {
        return Some("application/pdf");
    }
    if starts(b"%!PS") || starts(b"\x04%!PS") {
        return Some("application/postscript");
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Some("image/png");
    }
    if starts(b"\xff\xd8\xff") {
        return Some("image/jpeg");
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Some("image/gif");
    }
    if starts(b"II*\0") || starts(b"MM\0*") {
        return Some("image/tiff");
    }
    if starts(b"BM") && bytes.len() >= 26 && bytes[6..10] == [0, 0, 0, 0] {
        return Some("image/bmp");
    }
    if starts(b"PK\x03\x04") {
        return is_xps(bytes).then(|| {
            if file_name.to_ascii_lowercase().ends_with(".oxps") {
                "application/oxps"
            } else {
                "application/vnd.ms-xpsdocument"
            }
        });
    }
    is_text(bytes).then_some("text/plain")
}

/// A ZIP package is XPS when its parts include a fixed-document sequence, whose name appears
/// in a local file header near the start (XPS writers put the package structure first).
fn is_xps(bytes: &[u8]) -> bool {
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    has(b".fdseq") || has(b"FixedDocumentSequence") || has(b"FixedDocSeq")
}

/// Plain text: UTF-8 (a character cut at the end of the sample is fine), no NUL, and no
/// control characters other than tab, line feed, carriage return, form feed and escape.
fn is_text(bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return false;
    }
    let valid = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() && bytes.len() == SNIFF_LEN => {
            // Cut inside a character at the end of the sample.
            std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or("")
        }
        Err(_) => return false,
    };
    !valid.is_empty()
        && valid
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0c' | '\x1b'))
}

/// Reads the start of `path` and detects its type; a file of no supported type is a
/// [`ClientError::UnsupportedContent`] that says what is supported.
pub fn detect_file(path: &Path) -> Result<&'static str> {
    let what = || format!("reading {}", path.display());
    let file = std::fs::File::open(path).map_err(|e| ClientError::io(what(), e))?;
    let mut buf = Vec::with_capacity(SNIFF_LEN);
    file.take(SNIFF_LEN as u64)
        .read_to_end(&mut buf)
        .map_err(|e| ClientError::io(what(), e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    detect(&buf, name).ok_or_else(|| {
        ClientError::UnsupportedContent(format!(
            "{} is not a printable document: its content is none of PDF, XPS/OpenXPS, \
             PostScript, plain text (UTF-8), PNG, JPEG, GIF, TIFF or BMP. Nothing was sent. \
             Give --content-type to send it anyway.",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_types() {
        assert_eq!(detect(b"%PDF-1.7\n...", "a.bin"), Some("application/pdf"));
        assert_eq!(
            detect(b"%!PS-Adobe-3.0\n", "a"),
            Some("application/postscript")
        );
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n\0\0", "x"), Some("image/png"));
        assert_eq!(detect(b"\xff\xd8\xff\xe0", "x"), Some("image/jpeg"));
        assert_eq!(detect(b"GIF89a...", "x"), Some("image/gif"));
        assert_eq!(detect(b"MM\0*....", "x"), Some("image/tiff"));
        assert_eq!(
            detect(b"hello\r\nw\xc3\xb6rld\t\x0c", "notes"),
            Some("text/plain")
        );
    }

    #[test]
    fn xps_needs_its_parts_and_the_name_picks_the_flavour() {
        let xps = b"PK\x03\x04....FixedDocumentSequence.fdseq....";
        assert_eq!(detect(xps, "a.xps"), Some("application/vnd.ms-xpsdocument"));
        assert_eq!(detect(xps, "A.OXPS"), Some("application/oxps"));
        assert_eq!(detect(b"PK\x03\x04word/document.xml", "a.xps"), None);
    }

    #[test]
    fn binary_and_empty_are_refused() {
        assert_eq!(detect(b"\x7fELF\x02\x01\x01\0", "a.pdf"), None);
        assert_eq!(detect(b"text with a \0 byte", "a.txt"), None);
        assert_eq!(detect(b"", "a.txt"), None);
        assert_eq!(detect(b"\xc3\x28 invalid utf-8", "a.txt"), None);
    }
}
