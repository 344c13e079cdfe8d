//! The path a request is routed by: its URI path percent-decoded, with `.` and `..`
//! segments resolved and runs of slashes merged, as nginx matches its locations.
//! Matching the raw path would let `/x/../admin`, `//admin` or `/%61dmin` past a
//! `location "/admin"` that denies, to an origin that normalizes them to `/admin`.
//! Only routing uses it: the request goes upstream with the URI the client sent, as
//! nginx's `proxy_pass` without a URI part does.

use std::borrow::Cow;

/// Why a path cannot be routed; answered 400, as nginx does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%00`: no file or location name holds a NUL.
    Nul,
    /// More `..` than segments before them: above the root.
    AboveRoot,
}

impl Invalid {
    pub fn reason(self) -> &'static str {
        match self {
            Invalid::BadEscape => "malformed percent-encoding in the path",
            Invalid::Nul => "%00 in the path",
            Invalid::AboveRoot => "the path climbs above the root",
        }
    }
}

/// The normalized form of `path`; borrowed when there is nothing to change, which is
/// what almost every request's path is (a scan, no allocation).
pub fn normalize(path: &str) -> Result<Cow<'_, [u8]>, Invalid> {
    let raw = path.as_bytes();
    let plain = !raw
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'%' || (b == b'/' && matches!(raw.get(i + 1), Some(b'/' | b'.'))));
    if plain {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = percent_decode(raw)?;
    let mut out: Vec<u8> = Vec::with_capacity(decoded.len());
    // Where each segment kept in `out` starts, for `..` to cut back to.
    let mut starts: Vec<usize> = Vec::new();
    let mut segments = decoded.split(|&b| b == b'/').peekable();
    if decoded.first() == Some(&b'/') {
        segments.next();
    }
    // A path ending in `/`, `.` or `..` names a directory: `/a/b/..` is `/a/`.
    let mut trailing_slash = false;
    while let Some(segment) = segments.next() {
        match segment {
            b"" | b"." => {}
            b".." => {
                let start = starts.pop().ok_or(Invalid::AboveRoot)?;
                out.truncate(start);
            }
            _ => {
                starts.push(out.len());
                out.push(b'/');
                out.extend_from_slice(segment);
            }
        }
        trailing_slash = segments.peek().is_none() && matches!(segment, b"" | b"." | b"..");
    }
    if trailing_slash || out.is_empty() {
        out.push(b'/');
    }
    Ok(Cow::Owned(out))
}

fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, Invalid> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let mut hex = || bytes.next().and_then(|&h| (h as char).to_digit(16));
        let byte = match (hex(), hex()) {
            (Some(hi), Some(lo)) => (hi * 16 + lo) as u8,
            _ => return Err(Invalid::BadEscape),
        };
        if byte == 0 {
            return Err(Invalid::Nul);
        }
        out.push(byte);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> Result<String, Invalid> {
        normalize(path).map(|p| String::from_utf8_lossy(&p).into_owned())
    }

    #[test]
    fn plain_paths_are_borrowed_unchanged() {
        for p in ["/", "/admin", "/a/b/c.txt", "/a.b/c..d/"] {
            assert!(
                matches!(normalize(p), Ok(Cow::Borrowed(b)) if b == p.as_bytes()),
                "{p}"
            );
        }
    }

    #[test]
    fn dot_segments_slashes_and_escapes_are_resolved() {
        for (path, want) in [
            ("/x/../admin", "/admin"),
            ("//admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/./admin", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/../", "/a/"),
            ("/a/..", "/"),
            ("/a/%2e%2e/admin", "/admin"),
            ("/a%2fb", "/a/b"),
            ("/a/", "/a/"),
            ("/.well-known/x", "/.well-known/x"),
            ("/a/...", "/a/..."),
            ("/a/..b/", "/a/..b/"),
            ("/a/.b", "/a/.b"),
            ("/%e2%82%ac", "/\u{20ac}"),
        ] {
            assert_eq!(norm(path).as_deref(), Ok(want), "{path}");
        }
    }

    #[test]
    fn paths_above_the_root_and_bad_escapes_are_refused() {
        for (path, why) in [
            ("/..", Invalid::AboveRoot),
            ("/a/../..", Invalid::AboveRoot),
            ("/..%2f", Invalid::AboveRoot),
            ("/%2e%2e/etc/passwd", Invalid::AboveRoot),
            ("/a%", Invalid::BadEscape),
            ("/a%4", Invalid::BadEscape),
            ("/a%zz", Invalid::BadEscape),
            ("/a%00b", Invalid::Nul),
        ] {
            assert_eq!(norm(path), Err(why), "{path}");
        }
    }
}
