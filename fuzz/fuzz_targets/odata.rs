//! `odata::parse` never panics on any query string, for lists and items, and a parse that
//! succeeded has a `$top` that fits the page-size rules' input (any u64) and only known
//! `$expand` values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upspool_http::odata::{parse, Target};

const EXPANDABLE: &[&str] = &["documents", "tasks"];

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    for target in [Target::List, Target::Item] {
        if let Ok(opts) = parse(Some(query), target, EXPANDABLE) {
            assert!(opts.expand.iter().all(|e| EXPANDABLE.contains(&e.as_str())));
            if target == Target::Item {
                assert!(opts.top.is_none() && opts.skip.is_none());
            }
        }
    }
});
