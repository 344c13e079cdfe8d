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
        let parsed = KdlDocument::parse(&text);
        self.files.push(File {
            path,
            canonical,
            text,
            line_starts,
            doc: None,
        });
        match parsed {
            Ok(doc) => self.files[id].doc = Some(Rc::new(doc)),
            Err(e) => {
                for d in e.diagnostics {
                    let mut message = d.message.unwrap_or_else(|| "invalid KDL".into());
                    if let Some(help) = d.help {
                        message = format!("{message} ({help})");
                    }
                    let pos = Pos {
                        file: id,
                        offset: d.span.offset(),
                    };
                    self.error(pos, format!("KDL syntax: {message}"));
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
}
