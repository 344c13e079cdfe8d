//! The `Date` header of responses that carry none (RFC 9110 6.6.1: an origin server
//! with a clock sends one, and a proxy adds one to a response it forwards without):
//! edge's own answers, and an upstream's that lacked it.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

thread_local! {
    /// The second it was made for, and the value: formatted once a second per thread,
    /// as nginx caches its time strings.
    static NOW: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((0, None)) };
}

/// The current time as a `Date` value (`None` only if the formatter's output were not a
/// header value, which IMF-fixdate always is).
pub fn now() -> Option<HeaderValue> {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    NOW.with_borrow_mut(|(made_for, value)| {
        if *made_for != second || value.is_none() {
            let text = bytes::Bytes::from(httpdate::fmt_http_date(now));
            *value = HeaderValue::from_maybe_shared(text).ok();
            *made_for = second;
        }
        value.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_imf_fixdate_of_now() {
        let value = now().unwrap();
        let text = value.to_str().unwrap();
        // "Sun, 06 Nov 1994 08:49:37 GMT"
        assert_eq!(text.len(), 29, "{text}");
        assert!(text.ends_with(" GMT"), "{text}");
        let parsed = httpdate::parse_http_date(text).unwrap();
        let off = SystemTime::now().duration_since(parsed).unwrap_or_default();
        assert!(off.as_secs() <= 1, "{text}");
    }
}
