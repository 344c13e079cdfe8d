//! The value syntaxes of directives: sizes, durations, listen addresses, status codes,
//! header names and values, server names. Each parser returns the message an error
//! for that value should carry; the caller adds where it is.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::StatusCode;

use super::ListenAddr;

/// The longest duration any timeout takes: beyond, it is surely a typo.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// `"512"`, `"64k"`, `"1m"`, `"2g"` (powers of 1024, either case), as nginx writes sizes.
pub fn size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("invalid size {text:?}: expected a number with an optional k, m or g suffix, e.g. \"1m\"")
    };
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 10),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 20),
        Some(b'g' | b'G') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// `"10s"`, `"500ms"`, `"1m30s"`, `"2h"`, `"1d"`, or a bare number of seconds; between
/// 1ms and 24h.
pub fn duration(text: &str) -> Result<Duration, String> {
    duration_from(text, false)
}

/// As [`duration`], 0 included (`fail_timeout=0`, where it means "never").
pub fn duration_or_zero(text: &str) -> Result<Duration, String> {
    duration_from(text, true)
}

fn duration_from(text: &str, zero: bool) -> Result<Duration, String> {
    let bad = || {
        format!("invalid duration {text:?}: expected a number with a unit (ms, s, m, h, d), e.g. \"10s\"")
    };
    let mut total = Duration::ZERO;
    let mut rest = text;
    if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = rest.parse().map_err(|_| bad())?;
        total = Duration::from_secs(secs);
        rest = "";
    }
    if text.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let letters = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        if digits == 0 || letters == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit_ms: u64 = match &rest[digits..digits + letters] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        let part = n.checked_mul(unit_ms).ok_or_else(bad)?;
        total = total
            .checked_add(Duration::from_millis(part))
            .ok_or_else(bad)?;
        rest = &rest[digits + letters..];
    }
    if (total.is_zero() && !zero) || total > MAX_DURATION {
        let min = if zero { "0" } else { "1ms" };
        return Err(format!(
            "duration {text:?} is out of range: between {min} and 24h"
        ));
    }
    Ok(total)
}

/// `tcp://IP:PORT` or `udp://IP:PORT` (IPv6 in brackets); `tls` applies to TCP.
pub fn listen(text: &str, tls: bool) -> Result<ListenAddr, String> {
    let (udp, addr) = if let Some(addr) = text.strip_prefix("tcp://") {
        (false, addr)
    } else if let Some(addr) = text.strip_prefix("udp://") {
        (true, addr)
    } else {
        return Err(format!(
            "invalid listen address {text:?}: expected tcp://IP:PORT or udp://IP:PORT"
        ));
    };
    let addr: SocketAddr = addr.parse().map_err(|_| {
        format!("invalid listen address {text:?}: expected an IP address and a port, e.g. tcp://0.0.0.0:443 or udp://[::]:443")
    })?;
    if let Some(why) = unlistenable(addr) {
        return Err(format!("invalid listen address {text:?}: {why}"));
    }
    Ok(if udp {
        ListenAddr::Udp(addr)
    } else {
        ListenAddr::Tcp { addr, tls }
    })
}

/// Why edge cannot listen on `addr`, if it cannot. Port 0 would give TCP and UDP
/// different ports, neither the one the sites answer on. An IPv4-mapped IPv6 address
/// cannot be bound by an IPv6-only socket, as edge's are (Linux says only "Invalid
/// argument").
pub fn unlistenable(addr: SocketAddr) -> Option<String> {
    if addr.port() == 0 {
        return Some("port 0 is not a port to listen on".into());
    }
    let SocketAddr::V6(v6) = addr else {
        return None;
    };
    let v4 = v6.ip().to_ipv4_mapped()?;
    Some(format!(
        "{} is an IPv4-mapped IPv6 address, on which IPv6 sockets do not listen: write the IPv4 address, {v4}",
        v6.ip()
    ))
}

/// An upstream server's `IP:PORT` or `host:port`: a name is resolved now, to every
/// address it has (each a server of its own, as nginx does; DNS is not asked again
/// while edge runs). Without a port, `default_port` if given.
pub fn upstream_addrs(text: &str, default_port: Option<u16>) -> Result<Vec<SocketAddr>, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let with_port = match (text.rsplit_once(':'), default_port) {
        (Some((host, port)), _) if !host.is_empty() && !host.ends_with(':') => {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("invalid port in {text:?}"))?;
            (
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                port,
            )
        }
        (None, Some(port)) => (text.to_owned(), port),
        _ => {
            return Err(format!(
                "invalid upstream address {text:?}: expected IP:PORT or host:port"
            ))
        }
    };
    if with_port.0.is_empty() {
        return Err(format!("invalid upstream address {text:?}: no host"));
    }
    // cargo-fuzz builds with `--cfg fuzzing`: there a name would cost an input a DNS
    // query (milliseconds, and network traffic from a fuzzer).
    if cfg!(fuzzing) {
        return Err(format!(
            "cannot resolve {text:?}: no DNS lookups while fuzzing"
        ));
    }
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let resolved = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {text:?}: {e}"))?;
    for addr in resolved {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(format!("{text:?} resolves to no address"));
    }
    Ok(addrs)
}

/// A `return` status: 200 to 999 (a 1xx is never a final answer).
pub fn status(n: i128) -> Result<StatusCode, String> {
    u16::try_from(n)
        .ok()
        .filter(|n| *n >= 200)
        .and_then(|n| StatusCode::from_u16(n).ok())
        .ok_or_else(|| format!("invalid status code {n}: expected 200 to 999"))
}

/// 301, 302, 303, 307 and 308: `return` sends its text as `Location`.
pub fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

pub fn header_name(text: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(text.as_bytes()).map_err(|_| format!("invalid header name {text:?}"))
}

/// Why edge does not let `proxy_set_header` (or, with `response`, `add_header`) set
/// `name`: the connection's headers are each hop's own, and a message's length is what
/// edge frames it with.
pub fn set_by_edge(name: &HeaderName, response: bool) -> Option<String> {
    if crate::session::is_connection_specific(name) || name == http::header::CONTENT_LENGTH {
        let what = if response {
            "a response"
        } else {
            "the upstream request"
        };
        return Some(format!(
            "edge sets {name} of {what} itself (connection and framing headers are each \
             hop's own; upgrades such as WebSocket are not proxied)"
        ));
    }
    None
}

pub fn header_value(text: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(text)
        .map_err(|_| format!("invalid header value {text:?}: control characters are not allowed"))
}

/// `example.com`, `*.example.com`, `.example.com` (the name and all its subdomains, as
/// in nginx) or `_` (matches no name: a catch-all server is the first of its port).
/// Names are compared case-insensitively, so they are stored in lower case.
pub fn server_names(text: &str) -> Result<Vec<String>, String> {
    let name = text.to_ascii_lowercase();
    if name.starts_with('~') {
        return Err(format!(
            "regular-expression server names are not supported: {text:?}"
        ));
    }
    let bare = name
        .strip_prefix("*.")
        .or_else(|| name.strip_prefix('.'))
        .unwrap_or(&name);
    let valid = !bare.is_empty()
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid {
        return Err(format!(
            "invalid server name {text:?}: expected a host name, *.suffix, .suffix or _"
        ));
    }
    Ok(if name.starts_with('.') {
        vec![bare.to_owned(), format!("*.{bare}")]
    } else {
        vec![name.clone()]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size("0"), Ok(0));
        assert_eq!(size("512"), Ok(512));
        assert_eq!(size("64k"), Ok(64 * 1024));
        assert_eq!(size("64K"), Ok(64 * 1024));
        assert_eq!(size("1m"), Ok(1 << 20));
        assert_eq!(size("2g"), Ok(2 << 30));
        for bad in ["", "k", "1.5m", "-1", "1t", "1 m", " 1m", "1mb"] {
            assert!(size(bad).is_err(), "{bad:?}");
        }
        assert!(size("99999999999999999999g").is_err());
        assert!(size("17179869184g").is_err(), "overflow");
    }

    #[test]
    fn durations() {
        assert_eq!(duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(duration("1d"), Ok(Duration::from_secs(86400)));
        for bad in [
            "",
            "s",
            "0",
            "0s",
            "10x",
            "1.5s",
            "-1s",
            "25h",
            "2d",
            "10 s",
            "1m30",
            "ms10",
            "99999999999999999999d",
        ] {
            assert!(duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(duration_or_zero("0"), Ok(Duration::ZERO));
        assert_eq!(duration_or_zero("0s"), Ok(Duration::ZERO));
        assert_eq!(duration_or_zero("5"), Ok(Duration::from_secs(5)));
        assert!(duration_or_zero("25h").is_err());
    }

    #[test]
    fn listens() {
        assert_eq!(
            listen("tcp://0.0.0.0:443", true),
            Ok(ListenAddr::Tcp {
                addr: "0.0.0.0:443".parse().unwrap(),
                tls: true
            })
        );
        assert_eq!(
            listen("udp://[::]:443", true),
            Ok(ListenAddr::Udp("[::]:443".parse().unwrap()))
        );
        for bad in [
            "0.0.0.0:443",
            "http://0.0.0.0:443",
            "tcp://localhost:443",
            "tcp://0.0.0.0",
            "tcp://0.0.0.0:0",
            "tcp://::1:443",
            "tcp://0.0.0.0:65536",
        ] {
            assert!(listen(bad, true).is_err(), "{bad:?}");
        }
    }

    /// A name gives every address it resolves to (each once), as nginx's servers.
    #[test]
    fn upstream_names_give_every_address() {
        use std::net::ToSocketAddrs;
        let one: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(upstream_addrs("127.0.0.1:8080", None), Ok(vec![one]));
        let mut all: Vec<SocketAddr> = Vec::new();
        for a in ("localhost", 8080).to_socket_addrs().unwrap() {
            if !all.contains(&a) {
                all.push(a);
            }
        }
        assert_eq!(upstream_addrs("localhost:8080", None), Ok(all.clone()));
        assert_eq!(upstream_addrs("localhost", Some(8080)), Ok(all));
        for bad in ["localhost", ":80", "localhost:x", "[::1]"] {
            assert!(upstream_addrs(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(status(200), Ok(StatusCode::OK));
        assert_eq!(status(999).map(|s| s.as_u16()), Ok(999));
        // A 1xx is never a final answer.
        for bad in [0, 99, 100, 101, 103, 199, 1000, -200, i128::MAX] {
            assert!(status(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers() {
        assert_eq!(header_name("X-Server").unwrap(), "x-server");
        assert!(header_name("bad name").is_err());
        assert!(header_name(":path").is_err());
        assert!(header_name("").is_err());
        assert!(header_value("a value; with=stuff").is_ok());
        assert!(header_value("").is_ok());
        assert!(header_value("line\nbreak").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(server_names("Example.COM"), Ok(vec!["example.com".into()]));
        assert_eq!(
            server_names("*.example.com"),
            Ok(vec!["*.example.com".into()])
        );
        assert_eq!(
            server_names(".example.com"),
            Ok(vec!["example.com".into(), "*.example.com".into()])
        );
        assert_eq!(server_names("_"), Ok(vec!["_".into()]));
        for bad in [
            "",
            "*",
            "*.",
            "a..b",
            "~^www\\.",
            "a b",
            "ex*ample.com",
            "a/b",
        ] {
            assert!(server_names(bad).is_err(), "{bad:?}");
        }
    }
}
