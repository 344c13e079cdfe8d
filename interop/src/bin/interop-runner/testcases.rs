//! The testcases as the official runner (`testcases_quic.py`) defines them: the name
//! each role is started with, the files to serve, the network scenario, and what is
//! checked afterwards; and its two measurements, goodput and crosstraffic.

use std::time::Duration;

use crate::network::{RandomEvents, Rebinding, Scenario};

/// One testcase.
#[derive(Clone, Debug)]
pub struct Testcase {
    /// The name in the matrix.
    pub name: &'static str,
    /// `TESTCASE` for the client and for the server (the runner's `testname()`).
    pub client_name: &'static str,
    pub server_name: &'static str,
    /// File sizes to serve; one request each.
    pub files: Vec<usize>,
    /// Length of the random file names (zerortt uses long ones).
    pub name_len: usize,
    /// The network.
    pub scenario: Scenario,
    /// How long the client may take.
    pub timeout: Duration,
    /// Certificates in the server's chain (amplificationlimit: 9, as the official runner).
    pub cert_chain: usize,
}

const KB: usize = 1024;
const MB: usize = 1024 * 1024;

/// Every testcase name, in the official order.
pub const ALL: &[&str] = &[
    "handshake",
    "transfer",
    "longrtt",
    "chacha20",
    "multiplexing",
    "retry",
    "resumption",
    "zerortt",
    "http3",
    "blackhole",
    "keyupdate",
    "ecn",
    "amplificationlimit",
    "handshakeloss",
    "transferloss",
    "handshakecorruption",
    "transfercorruption",
    "ipv6",
    "v2",
    "rebind-port",
    "rebind-addr",
    "connectionmigration",
    "goodput",
    "crosstraffic",
];

/// The CI subset.
pub const FAST: &[&str] = &[
    "handshake",
    "transfer",
    "retry",
    "http3",
    "chacha20",
    "resumption",
    "zerortt",
    "keyupdate",
    "transferloss",
];

fn loss(rate: u8) -> [RandomEvents; 2] {
    [RandomEvents { rate, burst: 3 }; 2]
}

/// The testcase called `name`; `quick` shrinks files and runs for CI.
pub fn get(name: &str, quick: bool) -> Option<Testcase> {
    let shrink = |n: usize| if quick { (n / 10).max(KB) } else { n };
    let mut t = Testcase {
        name: "",
        client_name: "transfer",
        server_name: "transfer",
        files: vec![shrink(2 * MB), shrink(3 * MB), shrink(5 * MB)],
        name_len: 10,
        scenario: Scenario::default(),
        timeout: Duration::from_secs(60),
        cert_chain: 1,
    };
    let same = |n: &'static str| (n, n);
    let (c, s) = match name {
        "handshake" => {
            t.files = vec![KB];
            same("handshake")
        }
        "transfer" | "blackhole" | "transferloss" | "transfercorruption" => {
            if name == "blackhole" {
                t.scenario.blackhole = Some((Duration::from_secs(5), Duration::from_secs(2)));
                // The blackout must fall inside the transfer.
                t.files = vec![10 * MB];
            }
            if name == "transferloss" {
                t.scenario.drop = loss(2);
            }
            if name == "transfercorruption" {
                t.scenario.corrupt = loss(2);
            }
            same("transfer")
        }
        "longrtt" => {
            t.files = vec![KB];
            t.scenario.delay = Duration::from_millis(750);
            same("handshake")
        }
        "chacha20" => {
            t.files = vec![3 * MB];
            same("chacha20")
        }
        "multiplexing" => {
            t.files = vec![32; if quick { 200 } else { 2000 }];
            same("transfer")
        }
        "retry" => {
            t.files = vec![10 * KB];
            same("retry")
        }
        "resumption" => {
            t.files = vec![5 * KB, 10 * KB];
            same("resumption")
        }
        "zerortt" => {
            t.files = vec![32; 40];
            t.name_len = 250;
            same("zerortt")
        }
        "http3" => {
            t.files = vec![shrink(2 * MB), shrink(3 * MB), shrink(5 * MB)];
            same("http3")
        }
        "keyupdate" => {
            t.files = vec![shrink(3 * MB).max(200 * KB)];
            ("keyupdate", "transfer")
        }
        "ecn" => {
            t.files = vec![100 * KB];
            same("ecn")
        }
        "amplificationlimit" => {
            t.files = vec![5 * KB];
            t.scenario.droplist[0] = vec![2, 3, 4, 5, 6, 7];
            t.cert_chain = 9;
            same("transfer")
        }
        "handshakeloss" | "handshakecorruption" => {
            t.files = vec![KB; if quick { 10 } else { 50 }];
            if name == "handshakeloss" {
                t.scenario.drop = loss(30);
            } else {
                t.scenario.corrupt = loss(30);
            }
            t.timeout = Duration::from_secs(300);
            same("multiconnect")
        }
        "ipv6" => {
            t.files = vec![5 * KB, 10 * KB];
            same("transfer")
        }
        "v2" => {
            t.files = vec![KB];
            same("v2")
        }
        "rebind-port" | "rebind-addr" => {
            t.scenario.rebind = Some(Rebinding {
                first: Duration::from_secs(1),
                every: Duration::from_secs(5),
                addr: name == "rebind-addr",
            });
            t.files = vec![10 * MB];
            same("transfer")
        }
        "connectionmigration" => {
            t.files = vec![shrink(2 * MB)];
            ("transfer", "connectionmigration")
        }
        "goodput" | "crosstraffic" => {
            // One repetition (the official runner makes 5 and reports their mean).
            if name == "goodput" {
                t.files = vec![shrink(10 * MB)];
            } else {
                t.files = vec![shrink(25 * MB)];
                t.scenario.cross_traffic = true;
                t.timeout = Duration::from_secs(180);
            }
            same("transfer")
        }
        _ => return None,
    };
    t.name = ALL.iter().find(|n| **n == name).copied()?;
    t.client_name = c;
    t.server_name = s;
    Some(t)
}
