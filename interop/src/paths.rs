//! URL paths to file paths, for the files the server serves and the client saves: both
//! refuse any path that would leave their directory.

use std::path::{Component, Path, PathBuf};

/// The file under `root` that a URL path names, or `None` if it would escape `root` or
/// names nothing (`/`).
pub fn under(root: &Path, url_path: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    let mut parts = 0;
    for part in Path::new(url_path.trim_start_matches('/')).components() {
        match part {
            Component::Normal(p) => {
                out.push(p);
                parts += 1;
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    (parts > 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_under_root() {
        let root = Path::new("/www");
        assert_eq!(under(root, "/a/b.txt"), Some(PathBuf::from("/www/a/b.txt")));
        assert_eq!(under(root, "/../etc/passwd"), None);
        assert_eq!(under(root, "/"), None);
    }
}
