//! Picking by host name as nginx picks a server: an exact name, else the longest
//! `*.suffix` wildcard the name ends in, else the default (the first entry). The server
//! router and the certificate resolver both pick this way, so a name gets its
//! certificate from the server that answers it.

use std::collections::HashMap;

#[derive(Debug)]
pub struct ServerNames<T> {
    exact: HashMap<String, T>,
    /// `(".suffix", value)`, longest first.
    wildcards: Vec<(String, T)>,
    default: T,
    /// More than one entry: the name decides.
    several: bool,
}

impl<T: Clone> ServerNames<T> {
    /// `entries`: each value with its names (lower case, as the config keeps them), in
    /// config order. A name given twice keeps its first value; the repeats are returned
    /// for a warning. `None` without entries.
    pub fn new(entries: Vec<(T, Vec<String>)>) -> Option<(Self, Vec<String>)> {
        let default = entries.first()?.0.clone();
        let several = entries.len() > 1;
        let (mut exact, mut wildcards, mut repeated) = (HashMap::new(), Vec::new(), Vec::new());
        for (value, names) in entries {
            for name in names {
                let taken = match name.strip_prefix('*') {
                    Some(suffix) if wildcards.iter().any(|(s, _)| s == suffix) => true,
                    Some(suffix) => {
                        wildcards.push((suffix.to_owned(), value.clone()));
                        false
                    }
                    None if exact.contains_key(&name) => true,
                    None => {
                        exact.insert(name.clone(), value.clone());
                        false
                    }
                };
                if taken {
                    repeated.push(name);
                }
            }
        }
        // Stable: of equal lengths, the first configured stays first.
        wildcards.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        Some((
            ServerNames {
                exact,
                wildcards,
                default,
                several,
            },
            repeated,
        ))
    }

    /// The value for `name` (any case, with or without a trailing dot), or the default.
    /// `name` is only asked for when there is more than one entry.
    pub fn pick<'n>(&self, name: impl FnOnce() -> Option<&'n str>) -> &T {
        if !self.several {
            return &self.default;
        }
        name().and_then(|n| self.find(n)).unwrap_or(&self.default)
    }

    fn find(&self, name: &str) -> Option<&T> {
        let name = name.strip_suffix('.').unwrap_or(name);
        // Names come in lower case nearly always: no copy then.
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        self.exact.get(name).or_else(|| {
            self.wildcards
                .iter()
                .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix.as_str()))
                .map(|(_, value)| value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(entries: &[(u8, &[&str])]) -> (ServerNames<u8>, Vec<String>) {
        let entries = entries
            .iter()
            .map(|(v, n)| (*v, n.iter().map(|s| s.to_string()).collect()))
            .collect();
        ServerNames::new(entries).unwrap()
    }

    #[test]
    fn exact_then_longest_wildcard_then_default() {
        let (n, repeated) = names(&[
            (0, &["default.test"]),
            (1, &["*.example.com"]),
            (2, &["www.example.com"]),
            (3, &["*.a.example.com"]),
        ]);
        assert!(repeated.is_empty());
        for (host, want) in [
            ("www.example.com", 2),
            ("WWW.Example.com.", 2),
            ("x.example.com", 1),
            ("x.a.example.com", 3),
            ("a.example.com", 1),
            ("example.com", 0),
            ("www.example.com..", 0),
            ("xexample.com", 0),
        ] {
            assert_eq!(*n.pick(|| Some(host)), want, "{host}");
        }
        assert_eq!(*n.pick(|| None), 0);
    }

    #[test]
    fn a_repeated_name_keeps_its_first_value() {
        let (n, repeated) = names(&[
            (0, &["a.test", "*.b.test"]),
            (1, &["a.test", "*.b.test", "c.test"]),
        ]);
        assert_eq!(repeated, ["a.test", "*.b.test"]);
        assert_eq!(*n.pick(|| Some("a.test")), 0);
        assert_eq!(*n.pick(|| Some("x.b.test")), 0);
        assert_eq!(*n.pick(|| Some("c.test")), 1);
    }

    #[test]
    fn one_entry_never_asks_for_the_name() {
        let (n, _) = names(&[(7, &["a.test"])]);
        assert_eq!(*n.pick(|| unreachable!("name asked for")), 7);
        assert!(ServerNames::<u8>::new(Vec::new()).is_none());
    }
}
