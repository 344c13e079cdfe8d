//! Re-emits nghttp3-sys's version cfg flags for this crate (build-script cfgs do not
//! cross crate boundaries; nghttp3-sys exports the header version as metadata).

fn main() {
    // (flag, first nghttp3 version with it): the subset of nghttp3-sys's flags used here.
    const FEATURES: &[(&str, u32)] = &[("nghttp3_read_stream2", 0x01_0c_00)];
    let version = std::env::var("DEP_NGHTTP3_VERSION_NUM")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .expect("nghttp3-sys exports DEP_NGHTTP3_VERSION_NUM");
    for (flag, since) in FEATURES {
        println!("cargo:rustc-check-cfg=cfg({flag})");
        if version >= *since {
            println!("cargo:rustc-cfg={flag}");
        }
    }
}
