//! Parsers of what a request says in its headers and query, each on checked arithmetic, and
//! the URLs an answer points to.

use super::*;

/// Builds the URLs of `Location` and `Link`, as [`ServerOptions::relative_urls`] says.
pub(super) struct Urls {
    base: String,
}

impl Urls {
    pub(super) fn new(options: &ServerOptions, headers: &HeaderMap) -> Urls {
        let host = match (options.relative_urls, &options.host) {
            (Some(true), _) => String::new(),
            (_, Some(host)) => host.trim_end_matches('/').to_owned(),
            (absolute, None) => {
                let forwarded = crate::forwarded::Forwarded::from_headers(headers);
                let host = forwarded
                    .host
                    .or_else(|| (absolute == Some(false)).then(|| crate::forwarded::request_host(headers)).flatten());
                let scheme = forwarded.proto.unwrap_or(if options.https { "https" } else { "http" });
                host.map(|host| format!("{scheme}://{host}")).unwrap_or_default()
            }
        };
        Urls { base: format!("{host}{}", options.prefix) }
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The query parameters, decoded.
pub(super) struct Query(Vec<(String, String)>);

impl Query {
    pub(super) fn parse(query: Option<&str>) -> Query {
        Query(url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect())
    }

    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub(super) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `n`, the page size: a non-negative number.
    pub(super) fn page_size(&self) -> Result<Option<usize>, ApiError> {
        match self.get("n") {
            None => Ok(None),
            Some(n) => n.parse().map(Some).map_err(|_| {
                ApiError::new(ErrorCode::PaginationNumberInvalid, format!("n must be a non-negative number, not {n:?}"))
            }),
        }
    }
}

pub(super) fn encode_query(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

pub(super) fn parse_digest(text: &str) -> Result<Digest, ApiError> {
    text.parse().map_err(|e: wharf_oci::Error| ApiError::new(ErrorCode::DigestInvalid, e.to_string()))
}

pub(super) fn parse_reference(text: &str) -> Result<ManifestReference, ApiError> {
    Ok(text.parse::<ManifestReference>()?)
}

pub(super) fn header_value(text: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(text)
        .map_err(|_| ApiError::new(ErrorCode::Unknown, format!("{text:?} cannot be sent as a header value")))
}

/// The first `length` bytes of a stream.
pub(super) fn limit(
    stream: wharf_storage::ByteStream,
    length: u64,
) -> impl Stream<Item = wharf_storage::Result<Bytes>> + Send + 'static {
    stream.scan(length, |left, chunk| {
        let item = match chunk {
            _ if *left == 0 => None,
            Ok(mut bytes) => {
                if bytes.len() as u64 > *left {
                    bytes.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
                }
                *left -= bytes.len() as u64;
                Some(Ok(bytes))
            }
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(item)
    })
}

pub(super) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(value) => {
            value.to_str().ok().and_then(|v| v.trim().parse().ok()).map(Some).ok_or_else(|| {
                ApiError::new(ErrorCode::SizeInvalid, format!("Content-Length {value:?} is not a number"))
            })
        }
    }
}

/// `Content-Range: <start>-<end>` of a chunk (inclusive; `bytes ` and `/<total>` tolerated).
pub(super) fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else { return Ok(None) };
    let invalid =
        || ApiError::new(ErrorCode::BlobUploadInvalid, format!("Content-Range {value:?} is not <start>-<end>"));
    let text = value.to_str().map_err(|_| invalid())?.trim();
    let text = text.strip_prefix("bytes").map_or(text, |t| t.trim_start_matches(['=', ' ']));
    let text = text.split('/').next().unwrap_or(text);
    let (start, end) = text.split_once('-').ok_or_else(invalid)?;
    let (start, end): (u64, u64) =
        (start.trim().parse().map_err(|_| invalid())?, end.trim().parse().map_err(|_| invalid())?);
    if end < start {
        return Err(ApiError::new(
            ErrorCode::RangeInvalid,
            format!("Content-Range {start}-{end} ends before it starts"),
        ));
    }
    Ok(Some((start, end)))
}

/// A `Range: bytes=…` request on content of `size` bytes: the inclusive span to send, `None`
/// to send everything (a form this server does not serve, such as several ranges).
///
/// # Errors
/// `RANGE_INVALID` (416) for a range that starts past the end or ends before it starts.
pub(crate) fn byte_range(text: &str, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let unsatisfiable = || {
        ApiError::new(ErrorCode::RangeInvalid, format!("range {text:?} is outside the content's {size} bytes"))
            .with_header(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).unwrap_or(HeaderValue::from_static("bytes */0")),
            )
    };
    let Some(spec) = text.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.split_once('-') else { return Ok(None) };
    let (start, end) = (start.trim(), end.trim());
    let span = match (start.parse::<u64>(), end.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end && start < size => (start, end.min(size - 1)),
        (Ok(_), Ok(_)) => return Err(unsatisfiable()),
        (Ok(start), Err(_)) if end.is_empty() && start < size => (start, size - 1),
        (Ok(_), Err(_)) if end.is_empty() => return Err(unsatisfiable()),
        (Err(_), Ok(suffix)) if start.is_empty() && suffix > 0 && size > 0 => (size - suffix.min(size), size - 1),
        (Err(_), Ok(_)) if start.is_empty() => return Err(unsatisfiable()),
        _ => return Ok(None),
    };
    Ok(Some(span))
}

/// Whether an `Accept` header (any number of them, comma-separated, with parameters) lets
/// the client take `media_type`. No `Accept` takes anything.
pub(super) fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    let mut listed = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|entry| entry.split(';').next().unwrap_or(entry).trim())
        .filter(|entry| !entry.is_empty())
        .peekable();
    if listed.peek().is_none() {
        return true;
    }
    listed.any(|entry| entry == media_type || entry == "*/*" || entry == "application/*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range("bytes=0-9", 100).unwrap(), Some((0, 9)));
        assert_eq!(byte_range("bytes=90-200", 100).unwrap(), Some((90, 99)));
        assert_eq!(byte_range("bytes=90-", 100).unwrap(), Some((90, 99)));
        assert_eq!(byte_range("bytes=-10", 100).unwrap(), Some((90, 99)));
        assert_eq!(byte_range("bytes=-1000", 100).unwrap(), Some((0, 99)));
        assert_eq!(byte_range("bytes=0-1,5-6", 100).unwrap(), None);
        assert_eq!(byte_range("items=0-1", 100).unwrap(), None);
        for bad in ["bytes=500-0", "bytes=100-", "bytes=100-200", "bytes=-0"] {
            let e = byte_range(bad, 100).unwrap_err();
            assert_eq!(e.code, ErrorCode::RangeInvalid, "{bad}");
        }
    }

    proptest::proptest! {
        /// A served span lies within the content; a range inside it is served as asked.
        #[test]
        fn byte_ranges_stay_inside(start in 0u64..200, end in 0u64..200, size in 0u64..150, suffix in proptest::bool::ANY) {
            let text = if suffix { format!("bytes=-{end}") } else { format!("bytes={start}-{end}") };
            match byte_range(&text, size) {
                Ok(Some((first, last))) => {
                    proptest::prop_assert!(first <= last && last < size, "{text} on {size}: {first}-{last}");
                    if !suffix && end < size {
                        proptest::prop_assert_eq!((first, last), (start, end));
                    }
                }
                Ok(None) => proptest::prop_assert!(false, "{text} was ignored"),
                Err(e) => {
                    proptest::prop_assert_eq!(e.code, ErrorCode::RangeInvalid);
                    proptest::prop_assert!(suffix || start > end || start >= size);
                }
            }
        }

        /// Any Content-Range text gives a span, a refusal naming it, or nothing.
        #[test]
        fn content_ranges_never_panic(text in "[ -~]{0,24}") {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&text) {
                headers.insert(header::CONTENT_RANGE, value);
                match content_range(&headers) {
                    Ok(Some((start, end))) => proptest::prop_assert!(start <= end),
                    Ok(None) => proptest::prop_assert!(false, "a header was present"),
                    Err(e) => proptest::prop_assert!(matches!(e.code, ErrorCode::BlobUploadInvalid | ErrorCode::RangeInvalid)),
                }
            }
        }
    }

    #[test]
    fn accept_lists() {
        let mut headers = HeaderMap::new();
        assert!(accepts(&headers, media_type::OCI_IMAGE_MANIFEST));
        headers
            .append(header::ACCEPT, HeaderValue::from_static("application/vnd.docker.distribution.manifest.v2+json"));
        assert!(!accepts(&headers, media_type::OCI_IMAGE_MANIFEST));
        headers.append(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json; q=0.5, text/plain"),
        );
        assert!(accepts(&headers, media_type::OCI_IMAGE_MANIFEST));
    }
}
