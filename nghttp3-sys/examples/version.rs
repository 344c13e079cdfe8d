//! Prints which nghttp3 this build links: `cargo run -p nghttp3-sys --example version`.

fn main() {
    let (num, version) = nghttp3_sys::linked_version();
    println!(
        "nghttp3 {version} (0x{num:06x}) linked; headers {}; {}",
        nghttp3_sys::HEADER_VERSION,
        nghttp3_sys::ORIGIN
    );
}
