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
    if path == "/" {
        Ok(())
    } else {
        validate_path(driver, path)
    }
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
    Error::InvalidPath {
        driver,
        path: shown,
        reason,
    }
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
            _ if !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) =>
            {
                return Err("segments may only contain A-Z, a-z, 0-9, '.', '_' and '-'");
            }
            _ => {}
        }
    }
    Ok(())
}

/// The prefix every path below directory `dir` starts with (`/a` → `/a/`, `/` → `/`).
pub(crate) fn dir_prefix(dir: &str) -> String {
    if dir == "/" {
        "/".to_owned()
    } else {
        format!("{dir}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        for ok in [
            "/a",
            "/a/b",
            "/A.b_c-d/0",
            "/.hidden",
            "/a/..b",
            "/_uploads/x",
        ] {
            validate_path("test", ok).unwrap();
        }
        for bad in [
            "", "a", "/", "//a", "/a/", "/a//b", "/a/./b", "/a/..", "/a b", "/ä", "/a:b", "/a\\b",
        ] {
            assert!(
                matches!(validate_path("test", bad), Err(Error::InvalidPath { .. })),
                "{bad:?}"
            );
        }
        validate_dir_path("test", "/").unwrap();
        assert!(validate_dir_path("test", "//").is_err());
    }

    #[test]
    fn parents_and_prefixes() {
        assert_eq!(dir_prefix("/"), "/");
        assert_eq!(dir_prefix("/a"), "/a/");
    }
}
