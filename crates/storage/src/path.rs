//! Path rules shared by every backend.

use crate::error::{Error, Result};

/// Checks a file path: `/seg/seg…`, segments of `[A-Za-z0-9._-]`, none `.` or `..`.
///
/// # Errors
/// [`Error::InvalidPath`] naming `driver`, the path and the rule it breaks.
pub fn validate_path(driver: &'static str, path: &str) -> Result<()> {
    check(path).map_err(|reason| invalid(driver, path, reason))
}

/// Checks a directory path: a file path, or the root `/`.
///
/// # Errors
/// [`Error::InvalidPath`] naming `driver`, the path and the rule it breaks.
pub fn validate_dir_path(driver: &'static str, path: &str) -> Result<()> {
    if path == "/" { Ok(()) } else { validate_path(driver, path) }
}

fn invalid(driver: &'static str, path: &str, reason: &'static str) -> Error {
    let mut shown = path.to_owned();
    if shown.len() > 300 {
        let mut end = 300;
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
        shown.push('…');
    }
    Error::InvalidPath { driver, path: shown, reason }
}

fn check(path: &str) -> Result<(), &'static str> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("a path must start with '/'");
    };
    if rest.is_empty() {
        return Err("the root is not a file");
    }
    for segment in rest.split('/') {
        match segment {
            "" => return Err("empty segment ('//' or a trailing '/')"),
            "." | ".." => return Err("'.' and '..' segments are not allowed"),
            _ if !segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) => {
                return Err("segments may only contain A-Z, a-z, 0-9, '.', '_' and '-'");
            }
            _ => {}
        }
    }
    Ok(())
}

/// The prefix every path below directory `dir` starts with (`/a` → `/a/`, `/` → `/`).
pub(crate) fn dir_prefix(dir: &str) -> String {
    if dir == "/" { "/".to_owned() } else { format!("{dir}/") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        for ok in ["/a", "/a/b", "/A.b_c-d/0", "/.hidden", "/a/..b", "/_uploads/x"] {
            validate_path("test", ok).unwrap();
        }
        for bad in ["", "a", "/", "//a", "/a/", "/a//b", "/a/./b", "/a/..", "/a b", "/ä", "/a:b", "/a\\b"] {
            assert!(matches!(validate_path("test", bad), Err(Error::InvalidPath { .. })), "{bad:?}");
        }
        validate_dir_path("test", "/").unwrap();
        assert!(validate_dir_path("test", "//").is_err());
    }

    /// The grammar, written out a second way: `^(/[A-Za-z0-9._-]+)+$` without `.`/`..`.
    fn matches_grammar(path: &str) -> bool {
        path.len() > 1
            && path.starts_with('/')
            && path[1..].split('/').all(|segment| {
                !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            })
    }

    proptest::proptest! {
        #[test]
        fn validation_agrees_with_the_grammar(path in "(/[a-zA-Z0-9._ :-]{0,4}){0,4}/?|.{0,12}") {
            proptest::prop_assert_eq!(validate_path("test", &path).is_ok(), matches_grammar(&path), "{:?}", path);
            proptest::prop_assert_eq!(validate_dir_path("test", &path).is_ok(), path == "/" || matches_grammar(&path));
        }
    }

    #[test]
    fn parents_and_prefixes() {
        assert_eq!(dir_prefix("/"), "/");
        assert_eq!(dir_prefix("/a"), "/a/");
    }
}
