//! The registry API's header values the client reads: `Range` of an upload, `Content-Range`
//! of a partial download, `Link` to the next page, `Retry-After`. Public for callers that
//! speak the API themselves (and for the fuzz targets); each answers `None` for anything it
//! cannot read, never panics.

use std::time::{Duration, SystemTime};

/// How many bytes an upload holds, from its `Range: 0-<last>` header. Distribution writes
/// `0-0` for an empty upload as well as for one of a single byte; both read as 0, so at
/// worst one byte is sent again and refused as out of order.
///
/// ```
/// use wharf_client::headers::upload_offset;
/// assert_eq!(upload_offset("0-1023"), Some(1024));
/// assert_eq!(upload_offset("0-0"), Some(0));
/// assert_eq!(upload_offset("5-9"), None);
/// ```
pub fn upload_offset(range: &str) -> Option<u64> {
    let range = range.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    let (start, end) = range.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    match end.trim() {
        "0" | "-1" => Some(0),
        end => end.parse::<u64>().ok()?.checked_add(1),
    }
}

/// The first byte a partial answer holds, from `Content-Range: bytes <start>-<end>/<total>`,
/// when the span is well formed (`start <= end`, and `end < total` when the total is known).
///
/// ```
/// use wharf_client::headers::content_range_start;
/// assert_eq!(content_range_start("bytes 100-199/1000"), Some(100));
/// assert_eq!(content_range_start("bytes 100-199/*"), Some(100));
/// assert_eq!(content_range_start("bytes 200-100/1000"), None);
/// ```
pub fn content_range_start(value: &str) -> Option<u64> {
    let span = value.trim().strip_prefix("bytes ")?;
    let (span, total) = span.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let (start, end) = (start.trim().parse::<u64>().ok()?, end.trim().parse::<u64>().ok()?);
    if start > end {
        return None;
    }
    match total.trim() {
        "*" => Some(start),
        total => (end < total.parse::<u64>().ok()?).then_some(start),
    }
}

/// The next page from `Link` header values (`<…>; rel="next"`), resolved against the
/// address of the page they came with.
///
/// ```
/// use wharf_client::headers::next_link;
/// let next = next_link("http://127.0.0.1:5000/v2/_catalog?n=2", ["</v2/_catalog?last=b&n=2>; rel=\"next\""]);
/// assert_eq!(next.as_deref(), Some("http://127.0.0.1:5000/v2/_catalog?last=b&n=2"));
/// ```
pub fn next_link<'a>(current: &str, values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    for value in values {
        for link in value.split(',') {
            let mut parts = link.split(';');
            let Some(target) = parts.next().map(str::trim) else { continue };
            let is_next = parts.any(|p| {
                let p = p.trim();
                p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
            });
            if !is_next {
                continue;
            }
            let target = target.strip_prefix('<')?.strip_suffix('>')?;
            return reqwest::Url::parse(current).ok()?.join(target).ok().map(String::from);
        }
    }
    None
}

/// How long `Retry-After` asks to wait, in seconds or until an HTTP date, from `now`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use wharf_client::headers::retry_after;
/// assert_eq!(retry_after("3", SystemTime::now()), Some(Duration::from_secs(3)));
/// assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT", SystemTime::now()), Some(Duration::ZERO));
/// assert_eq!(retry_after("soon", SystemTime::now()), None);
/// ```
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn upload_offsets() {
        assert_eq!(upload_offset("0--1"), Some(0));
        assert_eq!(upload_offset("bytes=0-9"), Some(10));
        assert_eq!(upload_offset("0-18446744073709551615"), None);
        assert_eq!(upload_offset(""), None);
    }

    #[test]
    fn links() {
        assert_eq!(
            next_link("http://h/v2/_catalog", ["<https://other/v2/_catalog?last=x>; rel=next"]).as_deref(),
            Some("https://other/v2/_catalog?last=x")
        );
        assert_eq!(next_link("http://h/v2/_catalog", ["</v2/x>; rel=\"prev\""]), None);
        assert_eq!(
            next_link("http://h/v2/", ["</v2/a>; rel=\"prev\", </v2/b>; rel=\"next\""]).as_deref(),
            Some("http://h/v2/b")
        );
    }

    proptest! {
        #[test]
        fn upload_offsets_round_trip(n in 2u64..u64::MAX) {
            prop_assert_eq!(upload_offset(&format!("0-{}", n - 1)), Some(n));
        }

        #[test]
        fn content_ranges_round_trip(start in 0u64..u64::MAX / 2, len in 1u64..u64::MAX / 4, extra in 0u64..1000) {
            let end = start + len - 1;
            prop_assert_eq!(content_range_start(&format!("bytes {start}-{end}/{}", end + 1 + extra)), Some(start));
            prop_assert_eq!(content_range_start(&format!("bytes {start}-{end}/{end}")), None);
        }

        #[test]
        fn next_links_round_trip(last in "[a-z0-9]{1,20}", n in 1u32..10_000) {
            let value = format!("</v2/_catalog?last={last}&n={n}>; rel=\"next\"");
            let expected = format!("http://127.0.0.1:5000/v2/_catalog?last={last}&n={n}");
            prop_assert_eq!(next_link("http://127.0.0.1:5000/v2/_catalog", [value.as_str()]), Some(expected));
        }

        #[test]
        fn retry_after_in_seconds(seconds in 0u64..u64::MAX) {
            prop_assert_eq!(retry_after(&seconds.to_string(), SystemTime::now()), Some(Duration::from_secs(seconds)));
        }

        #[test]
        fn any_text_is_read_or_refused(text in "\\PC{0,64}") {
            let _ = upload_offset(&text);
            let _ = content_range_start(&text);
            let _ = next_link("http://h/v2/", [text.as_str()]);
            let _ = retry_after(&text, SystemTime::now());
        }
    }
}
