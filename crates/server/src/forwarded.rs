//! Where a client reached the registry, as the proxy in front tells it: RFC 7239 `Forwarded`,
//! else `X-Forwarded-Host` and `X-Forwarded-Proto`. Only a scheme of `http` or `https` and a
//! host that is a bare authority (`name`, `name:port`, `[v6]:port`) are taken; anything else
//! is passed over, so a request cannot point a `Location` at a URL of its choosing.

use axum::http::HeaderMap;

/// What the nearest proxy forwarded; `None` for what it did not say (or said unusably).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Forwarded {
    /// `http` or `https`.
    pub(crate) proto: Option<&'static str>,
    /// The host and port the client addressed.
    pub(crate) host: Option<String>,
}

impl Forwarded {
    /// From `Forwarded`'s first element, else from the first value of each `X-Forwarded-*`.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Forwarded {
        if let Some(value) = headers.get("forwarded").and_then(|v| v.to_str().ok()) {
            let forwarded = Forwarded::parse(value);
            if forwarded != Forwarded::default() {
                return forwarded;
            }
        }
        let first = |name: &str| {
            headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.split(',').next().unwrap_or(v).trim())
        };
        Forwarded {
            proto: first("x-forwarded-proto").and_then(scheme),
            host: first("x-forwarded-host").and_then(authority),
        }
    }

    /// The `proto` and `host` of the first element of a `Forwarded` value (the proxy nearest
    /// the client). Parameter names are case-insensitive; values are tokens or quoted strings.
    pub(crate) fn parse(value: &str) -> Forwarded {
        let mut forwarded = Forwarded::default();
        let element = split_unquoted(value, ',').next().unwrap_or_default();
        for pair in split_unquoted(element, ';') {
            let Some((name, value)) = pair.split_once('=') else { continue };
            let value = unquote(value.trim());
            match name.trim().to_ascii_lowercase().as_str() {
                "proto" => forwarded.proto = value.as_deref().and_then(scheme),
                "host" => forwarded.host = value.as_deref().and_then(authority),
                _ => {}
            }
        }
        forwarded
    }
}

/// The request's own `Host`, when it is a bare authority.
pub(crate) fn request_host(headers: &HeaderMap) -> Option<String> {
    headers.get(axum::http::header::HOST).and_then(|v| v.to_str().ok()).and_then(|v| authority(v.trim()))
}

fn scheme(text: &str) -> Option<&'static str> {
    match text.to_ascii_lowercase().as_str() {
        "http" => Some("http"),
        "https" => Some("https"),
        _ => None,
    }
}

/// `text` when it is a host with an optional port and nothing else.
fn authority(text: &str) -> Option<String> {
    let valid = !text.is_empty()
        && text.len() <= 255
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
        && url::Url::parse(&format!("http://{text}/")).is_ok_and(|url| {
            url.username().is_empty() && url.password().is_none() && url.path() == "/" && url.query().is_none()
        });
    valid.then(|| text.to_ascii_lowercase())
}

/// Splits at `separator`s outside double quotes.
fn split_unquoted(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    let mut pieces = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                pieces.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    pieces.push(&text[start..]);
    pieces.into_iter()
}

/// A token as it is, a quoted string without its quotes and escapes; `None` for an
/// unterminated quoted string.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else { return Some(value.to_owned()) };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn rfc_7239_examples() {
        let f = Forwarded::parse(r#"for="_gazonk"; proto=https; host="registry.example.com:8443""#);
        assert_eq!(f, Forwarded { proto: Some("https"), host: Some("registry.example.com:8443".into()) });
        // The first element is the proxy nearest the client.
        let f = Forwarded::parse("for=192.0.2.43;host=a.example, for=198.51.100.17;host=b.example;proto=https");
        assert_eq!(f, Forwarded { proto: None, host: Some("a.example".into()) });
        let f = Forwarded::parse(r#"For="[2001:db8:cafe::17]:4711";Proto=HTTP;Host="[2001:db8::1]:5000""#);
        assert_eq!(f, Forwarded { proto: Some("http"), host: Some("[2001:db8::1]:5000".into()) });
        // A comma inside a quoted value does not end the element.
        let f = Forwarded::parse(r#"for="a,b";host=c.example"#);
        assert_eq!(f.host.as_deref(), Some("c.example"));
    }

    #[test]
    fn unusable_values_are_passed_over() {
        for value in [
            "host=evil.example/path",
            "host=\"user@evil.example\"",
            "host=\"a.example\\\"",
            "proto=ftp",
            "host=",
            "host=\"a b\"",
            "proto",
        ] {
            assert_eq!(Forwarded::parse(value), Forwarded::default(), "{value}");
        }
    }

    #[test]
    fn forwarded_before_x_forwarded() {
        let both = headers(&[
            ("forwarded", "host=a.example;proto=https"),
            ("x-forwarded-host", "b.example"),
            ("x-forwarded-proto", "http"),
        ]);
        assert_eq!(Forwarded::from_headers(&both).host.as_deref(), Some("a.example"));
        let x = headers(&[("x-forwarded-host", "b.example:8443, c.example"), ("x-forwarded-proto", "HTTPS")]);
        assert_eq!(
            Forwarded::from_headers(&x),
            Forwarded { proto: Some("https"), host: Some("b.example:8443".into()) }
        );
        let useless = headers(&[("forwarded", "for=1.2.3.4"), ("x-forwarded-host", "b.example")]);
        assert_eq!(Forwarded::from_headers(&useless).host.as_deref(), Some("b.example"));
        assert_eq!(request_host(&headers(&[("host", "10.0.0.5:5000")])).as_deref(), Some("10.0.0.5:5000"));
        assert_eq!(request_host(&headers(&[("host", "a/b")])), None);
    }

    proptest! {
        #[test]
        fn any_value_parses_without_panicking(value in "\\PC{0,64}") {
            let _ = Forwarded::parse(&value);
        }

        #[test]
        fn hosts_and_schemes_read_back(
            host in "[a-z][a-z0-9]{0,11}(\\.[a-z][a-z0-9]{0,7}){0,3}(:[1-9][0-9]{0,3})?",
            https in any::<bool>(),
            quoted in any::<bool>(),
            others in "(;for=[a-z0-9.]{1,10}){0,2}",
        ) {
            let proto = if https { "https" } else { "http" };
            let shown = if quoted { format!("\"{host}\"") } else { host.clone() };
            let f = Forwarded::parse(&format!("proto={proto};host={shown}{others}, host=other.example"));
            prop_assert_eq!(f.proto, Some(proto));
            prop_assert_eq!(f.host, Some(host));
        }

        #[test]
        fn taken_hosts_are_bare_authorities(value in "[ -~]{0,40}") {
            if let Some(host) = Forwarded::parse(&format!("host=\"{value}\"")).host {
                let url = url::Url::parse(&format!("https://{host}/v2/")).expect("a usable base");
                prop_assert_eq!(url.path(), "/v2/");
                prop_assert!(url.username().is_empty() && url.query().is_none());
            }
        }
    }
}
