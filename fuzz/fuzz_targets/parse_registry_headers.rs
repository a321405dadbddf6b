//! The header values the client reads (`Range`, `Content-Range`, `Link`, `Retry-After`):
//! any text is read or refused without a panic, and what is read is consistent with it.
#![no_main]

use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use wharf_client::headers::{content_range_start, next_link, retry_after, upload_offset};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(offset) = upload_offset(text) {
        // A non-empty upload's last byte is in the text.
        assert!(offset == 0 || text.contains(&(offset - 1).to_string()), "{text:?} → {offset}");
    }
    if let Some(start) = content_range_start(text) {
        assert!(text.contains(&start.to_string()), "{text:?} → {start}");
    }
    if let Some(next) = next_link("http://127.0.0.1:5000/v2/_catalog", [text]) {
        assert!(next.parse::<url::Url>().is_ok(), "{text:?} → {next:?}");
    }
    let _ = retry_after(text, SystemTime::now());
});
