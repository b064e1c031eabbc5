//! `content_range::parse` never panics, and whatever it accepts is the canonical form read
//! back: printing the parsed numbers and parsing again gives the same numbers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upspool_domain::content_range::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = parse(text) {
        let canonical = format!("bytes {}-{}/{}", c.start, c.end, c.total);
        assert_eq!(parse(&canonical), Ok(c), "{text:?}");
        // Only digits, separators, the unit and whitespace can have been accepted.
        assert!(text
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || " \t=-/".contains(ch) || ch.is_whitespace()));
    }
});
