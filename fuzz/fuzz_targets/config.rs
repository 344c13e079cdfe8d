//! A config file: `edge::config::parse` checks it or lists its errors. The KDL parser
//! recurses per nesting level, so this also checks that the size and nesting bounds in
//! front of it hold (a stack overflow is a crash here).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    // In a directory that does not exist: relative includes and certificates fail fast.
    let _ = edge::config::parse(text, Path::new("/nonexistent/fuzz/edge.kdl"));
});
