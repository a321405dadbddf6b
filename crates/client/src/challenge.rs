//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1): the scheme a registry asks for and its
//! parameters, such as a token server's `realm`, `service` and `scope`.

use std::fmt;

use crate::error::{Error, Result};

/// One challenge: a scheme (`Basic`, `Bearer`) and its parameters, names in lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// A challenge of `scheme` with `params`, as a server would send it.
    pub fn new(scheme: &str, params: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme: scheme.to_owned(),
            params: params.iter().map(|(name, value)| (name.to_ascii_lowercase(), (*value).to_owned())).collect(),
        }
    }

    /// The scheme as the server wrote it.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Whether the scheme is `name`, ignoring case as the RFC says.
    pub fn is(&self, name: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(name)
    }

    /// The value of parameter `name` (ignoring case), if the challenge has it.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every parameter, in the order sent.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// Reads every challenge of one `WWW-Authenticate` value (a server may offer several,
    /// separated by commas).
    ///
    /// # Errors
    /// [`Error::Challenge`] naming what is malformed: a missing scheme, an unterminated quoted
    /// string, a parameter without `=`.
    pub fn parse_all(header: &str) -> Result<Vec<Challenge>> {
        let mut parser = Parser { input: header, at: 0 };
        let mut challenges = Vec::new();
        loop {
            parser.skip_separators();
            if parser.done() {
                break;
            }
            let scheme = parser.token().ok_or_else(|| parser.error("expected an authentication scheme"))?;
            let mut challenge = Challenge { scheme: scheme.to_owned(), params: Vec::new() };
            if parser.skip_spaces()
                && let Some(token68) = parser.token68()
            {
                // `Basic dXNlcjpwYXNz`: kept as a parameter without a name.
                challenge.params.push((String::new(), token68.to_owned()));
                challenges.push(challenge);
                continue;
            }
            // A challenge's parameters, until the next scheme (a token not followed by `=`).
            loop {
                parser.skip_separators();
                let before = parser.at;
                let Some(name) = parser.token() else { break };
                parser.skip_spaces();
                if !parser.eat('=') {
                    parser.at = before;
                    break;
                }
                parser.skip_spaces();
                let value = if parser.peek() == Some('"') {
                    parser.quoted()?
                } else {
                    parser.token().ok_or_else(|| parser.error("expected a parameter value"))?.to_owned()
                };
                challenge.params.push((name.to_ascii_lowercase(), value));
            }
            challenges.push(challenge);
        }
        if challenges.is_empty() {
            return Err(Error::Challenge { header: excerpt(header), reason: "no challenge in it".into() });
        }
        Ok(challenges)
    }
}

impl fmt::Display for Challenge {
    /// The challenge as a header value, every parameter value quoted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scheme)?;
        for (i, (name, value)) in self.params.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { "," })?;
            if name.is_empty() {
                f.write_str(value)?;
                continue;
            }
            write!(f, "{name}=\"")?;
            for c in value.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        }
        Ok(())
    }
}

/// The header's first characters, for an error message.
fn excerpt(header: &str) -> String {
    header.chars().take(120).collect()
}

/// `tchar` of RFC 9110.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

struct Parser<'a> {
    input: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.input[self.at..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn done(&self) -> bool {
        self.at >= self.input.len()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// Whether there were any.
    fn skip_spaces(&mut self) -> bool {
        let start = self.at;
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.at += 1;
        }
        self.at > start
    }

    /// A token68 that is all there is until the end or a comma; nothing taken otherwise.
    fn token68(&mut self) -> Option<&'a str> {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || "-._~+/".contains(c)) {
            self.at += 1;
        }
        if self.at == start {
            return None;
        }
        while self.eat('=') {}
        let end = self.at;
        self.skip_spaces();
        if self.done() || self.peek() == Some(',') {
            Some(&self.input[start..end])
        } else {
            self.at = start;
            None
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | ',')) {
            self.at += 1;
        }
    }

    /// A token, with trailing `=` of token68 padding when no value follows.
    fn token(&mut self) -> Option<&'a str> {
        let start = self.at;
        while self.peek().is_some_and(is_token_char) {
            self.at += 1;
        }
        (self.at > start).then(|| &self.input[start..self.at])
    }

    fn quoted(&mut self) -> Result<String> {
        let start = self.at;
        self.at += 1;
        let mut value = String::new();
        loop {
            let Some(c) = self.peek() else {
                self.at = start;
                return Err(self.error("unterminated quoted string"));
            };
            self.at += c.len_utf8();
            match c {
                '"' => return Ok(value),
                '\\' => {
                    let Some(escaped) = self.peek() else {
                        self.at = start;
                        return Err(self.error("unterminated quoted string"));
                    };
                    self.at += escaped.len_utf8();
                    value.push(escaped);
                }
                c => value.push(c),
            }
        }
    }

    fn error(&self, reason: &str) -> Error {
        Error::Challenge { header: excerpt(self.input), reason: format!("{reason} at byte {}", self.at) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_what_registries_send() {
        let hub = Challenge::parse_all(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull""#,
        )
        .unwrap();
        assert_eq!(hub.len(), 1);
        assert!(hub[0].is("bearer"));
        assert_eq!(hub[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(hub[0].param("Service"), Some("registry.docker.io"));
        assert_eq!(hub[0].param("scope"), Some("repository:library/ubuntu:pull"));

        let basic = Challenge::parse_all(r#"Basic realm="Registry Realm""#).unwrap();
        assert!(basic[0].is("Basic"));
        assert_eq!(basic[0].param("realm"), Some("Registry Realm"));

        // Two challenges in one value, unquoted values, spaces around `=`, an error parameter.
        let two = Challenge::parse_all(
            r#"Basic realm=x, Bearer realm = "https://t/token", error="insufficient_scope",scope="repository:a:pull,push""#,
        )
        .unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].param("realm"), Some("x"));
        assert!(two[1].is("Bearer"));
        assert_eq!(two[1].param("error"), Some("insufficient_scope"));
        assert_eq!(two[1].param("scope"), Some("repository:a:pull,push"));

        // token68, and a scheme alone.
        assert_eq!(
            Challenge::parse_all("Basic dXNlcjpwYXNz==, Bearer realm=x").unwrap()[0].params(),
            &[(String::new(), "dXNlcjpwYXNz==".into())]
        );
        assert_eq!(Challenge::parse_all("Negotiate").unwrap()[0].params(), &[]);
    }

    #[test]
    fn names_what_is_malformed() {
        for (header, says) in [
            ("", "no challenge"),
            (r#"Bearer realm="https://t/token"#, "unterminated quoted string"),
            (r#"Bearer realm="x\"#, "unterminated quoted string"),
            (r#"Bearer realm="x",service="#, "expected a parameter value"),
            ("=x", "expected an authentication scheme"),
        ] {
            let e = Challenge::parse_all(header).unwrap_err().to_string();
            assert!(e.contains(says), "{header:?}: {e}");
        }
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,12}"
    }

    proptest! {
        /// Whatever is written reads back the same, quotes and backslashes included.
        #[test]
        fn round_trips(
            challenges in prop::collection::vec(
                (token(), prop::collection::vec((token(), "[ -~]{0,24}"), 0..4)),
                1..4,
            )
        ) {
            let challenges: Vec<Challenge> = challenges
                .iter()
                .map(|(scheme, params)| Challenge {
                    scheme: scheme.clone(),
                    params: params.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone())).collect(),
                })
                .collect();
            let header = challenges.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            prop_assert_eq!(Challenge::parse_all(&header).unwrap(), challenges);
        }

        /// Any text gives challenges or an error, never a panic.
        #[test]
        fn any_text(header in "\\PC{0,80}") {
            let _ = Challenge::parse_all(&header);
        }
    }
}
