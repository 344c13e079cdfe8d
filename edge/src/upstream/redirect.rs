//! `proxy_redirect`: the upstream's own address in the `Location` and `Refresh` fields
//! of its answers, replaced as nginx does. An upstream sent `Host: $proxy_host` (its
//! internal name) builds absolute redirects to that name; passed on unchanged they
//! would send browsers to an address only edge can reach. By default (nginx's
//! `proxy_redirect default`) `http://PROXY_HOST/` becomes `/`.

use http::header::{HeaderMap, HeaderValue, LOCATION};

/// A location's rules: each replaces the prefix `from` (compared ignoring ASCII case,
/// as scheme and host are) by `to`. The first that matches applies, as in nginx.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redirects(Vec<(String, String)>);

impl Redirects {
    /// nginx's `proxy_redirect default` for `proxy_pass "http://HOST"`.
    pub fn default_for(proxy_host: &str) -> (String, String) {
        (format!("http://{proxy_host}/"), "/".to_owned())
    }

    pub fn new(rules: Vec<(String, String)>) -> Self {
        Redirects(rules)
    }

    /// Rewrites the answer's `Location` and `Refresh` fields (`Refresh: 5; url=URL`).
    pub fn rewrite(&self, headers: &mut HeaderMap) {
        if self.0.is_empty() {
            return;
        }
        // One pass over the few fields of an answer: cheaper than two hashed lookups,
        // and nearly every answer has neither.
        for (name, value) in headers.iter_mut() {
            let url_at = if name == LOCATION {
                0
            } else if name.as_str() == "refresh" {
                match refresh_url(value.as_bytes()) {
                    Some(at) => at,
                    None => continue,
                }
            } else {
                continue;
            };
            if let Some(new) = self.replaced(value.as_bytes(), url_at) {
                *value = new;
            }
        }
    }

    /// `value` with the first matching prefix at `at` replaced, if one matches.
    fn replaced(&self, value: &[u8], at: usize) -> Option<HeaderValue> {
        let url = &value[at..];
        let (from, to) = self.0.iter().find(|(from, _)| {
            url.len() >= from.len() && url[..from.len()].eq_ignore_ascii_case(from.as_bytes())
        })?;
        let mut out = Vec::with_capacity(value.len() - from.len() + to.len());
        out.extend_from_slice(&value[..at]);
        out.extend_from_slice(to.as_bytes());
        out.extend_from_slice(&url[from.len()..]);
        // Both parts were valid field bytes, and so is `to` (checked with the config).
        HeaderValue::from_bytes(&out).ok()
    }
}

/// Where the URL of a `Refresh` value (`5; url=URL`, `url` in any case) starts.
fn refresh_url(value: &[u8]) -> Option<usize> {
    value
        .windows(4)
        .position(|w| w.eq_ignore_ascii_case(b"url="))
        .map(|i| i + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(rules: &[(&str, &str)], fields: &[(&str, &str)]) -> Vec<String> {
        let redirects = Redirects::new(
            rules
                .iter()
                .map(|(f, t)| (f.to_string(), t.to_string()))
                .collect(),
        );
        let mut headers = HeaderMap::new();
        for (n, v) in fields {
            headers.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        redirects.rewrite(&mut headers);
        headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect()
    }

    #[test]
    fn the_default_makes_the_upstreams_own_urls_relative() {
        let (from, to) = Redirects::default_for("app:8080");
        let rules = [(from.as_str(), to.as_str())];
        assert_eq!(
            rewritten(
                &rules,
                &[
                    ("location", "HTTP://App:8080/login?next=/x"),
                    ("refresh", "5; URL=http://app:8080/r"),
                    ("x-other", "http://app:8080/kept"),
                ]
            ),
            [
                "location: /login?next=/x",
                "refresh: 5; URL=/r",
                "x-other: http://app:8080/kept"
            ]
        );
        // Another host, another port, or no path after the host: unchanged.
        let kept = [
            ("location", "http://example.com/a"),
            ("location", "http://app:80801/a"),
            ("location", "http://app:8080"),
            ("location", "/relative"),
            ("refresh", "5"),
        ];
        let expected: Vec<String> = kept.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        assert_eq!(rewritten(&rules, &kept), expected);
    }

    #[test]
    fn the_first_matching_rule_applies_and_none_means_off() {
        let rules = [
            ("http://a/", "https://www.example.com/"),
            ("http://a/", "/never"),
            ("http://b/x/", "/y/"),
        ];
        assert_eq!(
            rewritten(
                &rules,
                &[("location", "http://a/p"), ("location", "http://b/x/q")]
            ),
            ["location: https://www.example.com/p", "location: /y/q"]
        );
        assert_eq!(
            rewritten(&[], &[("location", "http://a/p")]),
            ["location: http://a/p"]
        );
    }
}
