//! The files a config is made of, and the problems found in them: a problem is kept
//! as (file, byte offset, message) while checking, and becomes a file:line:column
//! [`Diagnostic`] at the end.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use kdl::KdlDocument;

use super::{Diagnostic, Errors};

/// Index of a file in [`Sources`].
pub type FileId = usize;

/// A place in a config file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pos {
    pub file: FileId,
    pub offset: usize,
}

struct File {
    /// As the user named it (joined to the including file's directory): shown in errors.
    path: PathBuf,
    /// Absolute and without symlinks when the file exists: identifies it for cycles.
    canonical: PathBuf,
    text: String,
    /// Byte offset of each line's start.
    line_starts: Vec<usize>,
    /// `None` when the text is not valid KDL (its errors are already recorded).
    doc: Option<Rc<KdlDocument>>,
}

/// Every file read so far, and every problem found.
#[derive(Default)]
pub struct Sources {
    files: Vec<File>,
    problems: Vec<(Pos, String)>,
}

impl Sources {
    /// Adds a file and parses it as KDL, recording its syntax errors.
    pub fn add(&mut self, path: PathBuf, text: String) -> FileId {
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let id = self.files.len();
        let parsed = parse_kdl(&text);
        self.files.push(File {
            path,
            canonical,
            text,
            line_starts,
            doc: None,
        });
        match parsed {
            Ok(doc) => self.files[id].doc = Some(Rc::new(doc)),
            Err(problems) => {
                for (offset, message) in problems {
                    self.error(Pos { file: id, offset }, message);
                }
            }
        }
        id
    }

    /// The file already read from this path, if any.
    pub fn find(&self, path: &Path) -> Option<FileId> {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        self.files.iter().position(|f| f.canonical == canonical)
    }

    pub fn doc(&self, file: FileId) -> Option<Rc<KdlDocument>> {
        self.files.get(file).and_then(|f| f.doc.clone())
    }

    pub fn canonical(&self, file: FileId) -> &Path {
        &self.files[file].canonical
    }

    /// The directory relative paths in `file` are resolved against.
    pub fn dir(&self, file: FileId) -> &Path {
        self.files[file].path.parent().unwrap_or(Path::new(""))
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.problems.push((pos, message.into()));
    }

    pub fn has_errors(&self) -> bool {
        !self.problems.is_empty()
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, pos: Pos) -> (usize, usize) {
        let file = &self.files[pos.file];
        let offset = pos.offset.min(file.text.len());
        let line = file.line_starts.partition_point(|&s| s <= offset);
        let start = file.line_starts[line - 1];
        // An offset inside a multi-byte character counts up to that character.
        let column = file.text[start..]
            .char_indices()
            .take_while(|(i, _)| start + i < offset)
            .count();
        (line, column + 1)
    }

    /// The last `byte` at or before `pos` (or `pos` itself when there is none).
    pub fn back_to(&self, pos: Pos, byte: u8) -> Pos {
        let text = self.files[pos.file].text.as_bytes();
        let end = pos.offset.min(text.len());
        match text[..end].iter().rposition(|&b| b == byte) {
            Some(offset) => Pos { offset, ..pos },
            None => pos,
        }
    }

    /// `file:line:column`, for messages that point at another place.
    pub fn describe(&self, pos: Pos) -> String {
        let (line, column) = self.line_col(pos);
        format!("{}:{line}:{column}", self.files[pos.file].path.display())
    }

    /// Every problem as a diagnostic, in file order, each once (a file included
    /// twice may repeat one).
    pub fn into_errors(mut self) -> Errors {
        let mut problems = std::mem::take(&mut self.problems);
        problems.sort_by_key(|(pos, _)| (pos.file, pos.offset));
        problems.dedup();
        Errors(
            problems
                .into_iter()
                .map(|(pos, message)| {
                    let (line, column) = self.line_col(pos);
                    Diagnostic {
                        file: self.files[pos.file].path.clone(),
                        line,
                        column,
                        message,
                    }
                })
                .collect(),
        )
    }
}

/// Config files are small (a large config is split with `include`); beyond this the
/// KDL parser takes seconds and much memory.
const MAX_FILE_SIZE: usize = 256 << 10;
/// How deep blocks, block comments and chains of `/-` may nest. The KDL parser recurses
/// for each level, so without a bound a hostile file could overflow the stack; real
/// configs nest three or four levels.
const MAX_NESTING: usize = 32;
/// How many `{` may be open counting every brace of the file, in strings and comments
/// too (see [`braces`]). Twice [`MAX_NESTING`]: below the depth at which the parser
/// overflows a 2 MiB thread stack (about 250 in a release build).
const MAX_BRACES: usize = 2 * MAX_NESTING;

/// A config file's text, without reading more than a config may hold (`include
/// "/dev/zero"` is an error, not a hang).
pub fn read_file(path: &Path) -> std::io::Result<String> {
    let bytes = crate::tls::read_bounded(path, MAX_FILE_SIZE as u64)?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let msg = format!("not UTF-8 text: an invalid byte at offset {at}");
        std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
    })
}

/// Parses KDL text, or gives its syntax errors as (byte offset, message).
fn parse_kdl(text: &str) -> Result<KdlDocument, Vec<(usize, String)>> {
    if text.len() > MAX_FILE_SIZE {
        let msg = format!(
            "file too large: {} bytes, a config file has at most {MAX_FILE_SIZE}",
            text.len()
        );
        return Err(vec![(0, msg)]);
    }
    nesting(text.as_bytes()).map_err(|e| vec![e])?;
    braces(text.as_bytes()).map_err(|e| vec![e])?;
    // The parser is not ours: should it panic, that is one more syntax error.
    match std::panic::catch_unwind(|| KdlDocument::parse(text)) {
        Ok(Ok(doc)) => Ok(doc),
        Ok(Err(e)) => Err(e
            .diagnostics
            .into_iter()
            .map(|d| {
                let mut message = d.message.unwrap_or_else(|| "invalid KDL".into());
                if let Some(help) = d.help {
                    message = format!("{message} ({help})");
                }
                (d.span.offset(), format!("KDL syntax: {message}"))
            })
            .collect()),
        Err(_) => Err(vec![(0, "KDL syntax: the KDL parser failed".into())]),
    }
}

/// A lexical pass over KDL that checks what the parser recurses on: `{ }` blocks,
/// nested `/* */` comments, and consecutive `/-` are at most [`MAX_NESTING`] deep, and
/// no `}` closes a block that is not open. Strings, raw strings and comments are
/// skipped as KDL v2 defines them.
fn nesting(text: &[u8]) -> Result<(), (usize, String)> {
    let too_deep = |at: usize, what: &str| {
        Err((
            at,
            format!("KDL syntax: {what} nested more than {MAX_NESTING} deep"),
        ))
    };
    let mut blocks = 0usize;
    let mut slashdashes = 0usize;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        match rest[0] {
            b'{' => {
                blocks += 1;
                if blocks > MAX_NESTING {
                    return too_deep(i, "blocks");
                }
                slashdashes = 0;
                i += 1;
            }
            b'}' => {
                let Some(open) = blocks.checked_sub(1) else {
                    return Err((i, "KDL syntax: `}` closes no block".into()));
                };
                blocks = open;
                slashdashes = 0;
                i += 1;
            }
            b'/' if rest.starts_with(b"//") => {
                i += rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            }
            b'/' if rest.starts_with(b"/-") => {
                slashdashes += 1;
                if slashdashes > MAX_NESTING {
                    return too_deep(i, "`/-` comments");
                }
                i += 2;
            }
            b'/' if rest.starts_with(b"/*") => {
                let mut depth = 0usize;
                let mut j = 0;
                while j < rest.len() {
                    if rest[j..].starts_with(b"/*") {
                        depth += 1;
                        if depth > MAX_NESTING {
                            return too_deep(i + j, "comments");
                        }
                        j += 2;
                    } else if rest[j..].starts_with(b"*/") {
                        depth -= 1;
                        j += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        j += 1;
                    }
                }
                i += j;
            }
            b'"' => i += quoted(rest),
            b'#' => {
                let hashes = rest.iter().take_while(|&&b| b == b'#').count();
                if rest.get(hashes) == Some(&b'"') {
                    i += raw(rest, hashes);
                } else {
                    // #true, #false, #null, #inf, #nan.
                    i += hashes;
                    slashdashes = 0;
                }
            }
            b => {
                if !b.is_ascii_whitespace() {
                    slashdashes = 0;
                }
                i += 1;
            }
        }
    }
    Ok(())
}

/// Bounds the `{` open at any point counting every brace, strings and comments
/// included. [`nesting`] reads strings as valid KDL defines them, but on an invalid one
/// the parser recovers and may end it elsewhere (at the next space, say) and
/// then parse blocks that [`nesting`] took for string content: those still count here.
fn braces(text: &[u8]) -> Result<(), (usize, String)> {
    let mut open = 0usize;
    for (i, &b) in text.iter().enumerate() {
        match b {
            b'{' if open == MAX_BRACES => {
                let msg = format!("KDL syntax: more than {MAX_BRACES} `{{` open");
                return Err((i, msg));
            }
            b'{' => open += 1,
            b'}' => open = open.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The length of the quoted string at the start of `text` (`"..."` or `"""..."""`,
/// with `\` escapes), or of all of `text` if it is not closed.
fn quoted(text: &[u8]) -> usize {
    let delimiter: &[u8] = if text.starts_with(b"\"\"\"") {
        b"\"\"\""
    } else {
        b"\""
    };
    let mut i = delimiter.len();
    while i < text.len() {
        if text[i] == b'\\' {
            i += 2;
        } else if text[i..].starts_with(delimiter) {
            return i + delimiter.len();
        } else {
            i += 1;
        }
    }
    text.len()
}

/// The length of the raw string (`#"..."#`, `##"""..."""##`) at the start of `text`,
/// opened by `hashes` hashes, or of all of `text` if it is not closed.
fn raw(text: &[u8], hashes: usize) -> usize {
    let mut i = hashes + 1;
    while i < text.len() {
        if text[i] == b'"'
            && text[i + 1..]
                .iter()
                .take(hashes)
                .filter(|&&b| b == b'#')
                .count()
                == hashes
        {
            return i + 1 + hashes;
        }
        i += 1;
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns() {
        let mut s = Sources::default();
        let f = s.add("t.kdl".into(), "a 1\n  bé \"x\"\n\nc".into());
        let at = |offset| s.line_col(Pos { file: f, offset });
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(2), (1, 3));
        assert_eq!(at(4), (2, 1));
        assert_eq!(at(6), (2, 3));
        // After the two-byte é: column counts characters.
        assert_eq!(at(9), (2, 5));
        assert_eq!(at(14), (3, 1));
        assert_eq!(at(15), (4, 1));
        assert_eq!(at(999), (4, 2));
        assert!(!s.has_errors());
    }

    #[test]
    fn syntax_errors_are_recorded() {
        let mut s = Sources::default();
        let f = s.add("t.kdl".into(), "a {\n  b 1.\n}\n".into());
        assert!(s.doc(f).is_none());
        let errors = s.into_errors();
        assert_eq!(errors.0[0].line, 2);
        assert_eq!(errors.0[0].column, 5);
        assert!(errors.0[0].message.starts_with("KDL syntax: "));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |open: &str, close: &str, n: usize| open.repeat(n) + &close.repeat(n);
        assert_eq!(nesting(deep("a{", "}", 32).as_bytes()), Ok(()));
        assert_eq!(
            nesting(deep("a{", "}", 33).as_bytes()),
            Err((65, "KDL syntax: blocks nested more than 32 deep".into()))
        );
        assert!(nesting(deep("/*", "*/", 33).as_bytes()).is_err());
        assert!(nesting(deep("/*", "*/", 32).as_bytes()).is_ok());
        assert!(nesting(("a ".to_owned() + &"/-".repeat(33) + "b").as_bytes()).is_err());
        assert!(nesting("/- a /- b /- c".repeat(40).as_bytes()).is_ok());
        assert_eq!(
            nesting(b"a {}\n}"),
            Err((5, "KDL syntax: `}` closes no block".into()))
        );
        // Braces in strings and comments do not count.
        let text = "a { b \"}}\" #\"}\"}\"# ##\"\"\"\n}\"#\n\"\"\"## \"\"\"\n\" }\n\"\"\" \"\\\"}\" /* } /* } */ */ // }\n}";
        assert_eq!(nesting(text.as_bytes()), Ok(()));
        assert!(KdlDocument::parse(text).is_ok());
    }

    /// Inputs that overflow the KDL parser's stack without the nesting bound.
    #[test]
    fn hostile_files_are_errors() {
        for text in [
            "}".repeat(100_000),
            "a{".repeat(100_000),
            "/*".repeat(100_000),
            "a ".to_owned() + &"/-".repeat(100_000),
            // Invalid strings the parser recovers from elsewhere than `nesting` ends
            // them (found while writing fuzz/'s config target).
            "a r\"\\\" ".to_owned() + &"a{".repeat(100_000),
            "a \"\"\"\n ".to_owned() + &"a{".repeat(100_000),
            "x".repeat(MAX_FILE_SIZE + 1),
        ] {
            let mut s = Sources::default();
            let f = s.add("t.kdl".into(), text);
            assert!(s.doc(f).is_none());
            assert!(s.has_errors());
        }
    }
}
