//! Finds libnghttp3, generates the bindings from the very headers it was built with,
//! compiles the macro shim, and tells dependents (and the crate itself, through cfg
//! flags) which nghttp3 version they are built against.
//!
//! Where the library comes from, in order:
//! 0. Feature `vendored`: compiled here with `cc` from the nghttp3 source tree named by
//!    `NGHTTP3_SRC_DIR` (default `<workspace>/.deps/nghttp3-src`, which `scripts/setup.sh`
//!    unpacks), whatever the environment says. `NGHTTP3_SYS_CC` and `NGHTTP3_SYS_CFLAGS`
//!    apply to that build alone: the fuzz build instruments nghttp3's C code with them.
//! 1. `NGHTTP3_SYS_USE_PKG_CONFIG=1`: a system libnghttp3 >= 1.8 found by pkg-config
//!    (linked as pkg-config says; `LIBNGHTTP3_STATIC=1` asks for the static archive).
//! 2. `NGHTTP3_DIR=<prefix>`: `<prefix>/include` and `libnghttp3.a` in `<prefix>/lib`.
//! 3. The source tree as in 0, if there is one: what the project's own builds use.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// The oldest nghttp3 these bindings support (Debian bookworm-backports ships it).
const MIN_VERSION: u32 = 0x01_08_00;

/// cfg flags for API that appeared after 1.8, so safe layers can use it where present.
/// (flag, first version that has it, what it gates)
const FEATURES: &[(&str, u32, &str)] = &[
    (
        "nghttp3_origin",
        0x01_0b_00,
        "ORIGIN frames, the rand callback, qpack_encoder_new2",
    ),
    (
        "nghttp3_read_stream2",
        0x01_0c_00,
        "read_stream2 and the glitch rate limiter",
    ),
    (
        "nghttp3_qpack_indexing_strat",
        0x01_0d_00,
        "settings.qpack_indexing_strat",
    ),
    (
        "nghttp3_recv_settings2",
        0x01_0e_00,
        "the recv_settings2 callback",
    ),
    (
        "nghttp3_const_getters",
        0x01_10_00,
        "is_stream_writable2, get_stream_user_data, ...",
    ),
    (
        "nghttp3_stream_flushed",
        0x01_11_00,
        "is_stream_flushed and the varint helpers",
    ),
];

struct Library {
    include: PathBuf,
    /// `cargo:` link lines, emitted after the shim so static archives resolve in order.
    link: Vec<String>,
    origin: String,
}

fn main() {
    for var in [
        "NGHTTP3_SRC_DIR",
        "NGHTTP3_SYS_CC",
        "NGHTTP3_SYS_CFLAGS",
        "NGHTTP3_SYS_USE_PKG_CONFIG",
        "NGHTTP3_DIR",
        "LIBNGHTTP3_STATIC",
        "PKG_CONFIG_PATH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-changed=src/shim.h");

    let lib = find_library().unwrap_or_else(|msg| {
        eprintln!("\nerror: {msg}\n");
        std::process::exit(1);
    });
    let header = lib.include.join("nghttp3/nghttp3.h");
    let version_h = lib.include.join("nghttp3/version.h");
    println!("cargo:rerun-if-changed={}", header.display());
    println!("cargo:rerun-if-changed={}", version_h.display());

    let (version_num, version_str) = header_version(&version_h);
    if version_num < MIN_VERSION {
        eprintln!(
            "\nerror: nghttp3 {version_str} at {} is older than 1.8\n",
            lib.origin
        );
        std::process::exit(1);
    }

    for (flag, since, _) in FEATURES {
        println!("cargo:rustc-check-cfg=cfg({flag})");
        if version_num >= *since {
            println!("cargo:rustc-cfg={flag}");
        }
    }
    // Exported to dependents as DEP_NGHTTP3_*.
    println!("cargo:version_num={version_num}");
    println!("cargo:include={}", lib.include.display());
    println!("cargo:rustc-env=NGHTTP3_SYS_HEADER_VERSION={version_str}");
    println!("cargo:rustc-env=NGHTTP3_SYS_ORIGIN={}", lib.origin);

    cc::Build::new()
        .file("src/shim.c")
        .include(&lib.include)
        .warnings(true)
        .extra_warnings(true)
        .compile("nghttp3_sys_shim");
    for line in &lib.link {
        println!("{line}");
    }

    generate_bindings(&lib.include);
}

fn find_library() -> Result<Library, String> {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    if env::var_os("CARGO_FEATURE_VENDORED").is_some() {
        let src = env::var_os("NGHTTP3_SRC_DIR")
            .map_or_else(|| manifest.join("../.deps/nghttp3-src"), PathBuf::from);
        return from_source(&src);
    }
    if env::var("NGHTTP3_SYS_USE_PKG_CONFIG").is_ok_and(|v| v == "1") {
        return from_pkg_config();
    }
    if let Some(dir) = env::var_os("NGHTTP3_DIR") {
        return from_prefix(Path::new(&dir), "NGHTTP3_DIR");
    }
    let src = manifest.join("../.deps/nghttp3-src");
    if src.join("CMakeLists.txt").exists() {
        let src = src.canonicalize().map_err(|e| e.to_string())?;
        return from_source(&src);
    }
    println!("cargo:rerun-if-changed={}", src.display());
    Err(
        "nghttp3 not found. Run `scripts/setup.sh` through the README's commands \
         (`scripts/run.sh` or `scripts/test.sh`), which unpack nghttp3's source into \
         .deps/nghttp3-src; or set NGHTTP3_SRC_DIR with feature `vendored`; or set \
         NGHTTP3_DIR to a prefix holding include/nghttp3/nghttp3.h and lib/libnghttp3.a; \
         or set NGHTTP3_SYS_USE_PKG_CONFIG=1 to use a system libnghttp3 >= 1.8 (Debian: \
         libnghttp3-dev)."
            .into(),
    )
}

fn from_prefix(prefix: &Path, how: &str) -> Result<Library, String> {
    let include = prefix.join("include");
    if !include.join("nghttp3/nghttp3.h").exists() {
        return Err(format!(
            "{how}: no include/nghttp3/nghttp3.h under {}",
            prefix.display()
        ));
    }
    let libdir = ["lib", "lib64"]
        .iter()
        .map(|d| prefix.join(d))
        .find(|d| d.join("libnghttp3.a").exists())
        .ok_or_else(|| format!("{how}: no lib/libnghttp3.a under {}", prefix.display()))?;
    Ok(Library {
        include,
        link: vec![
            format!("cargo:rustc-link-search=native={}", libdir.display()),
            "cargo:rustc-link-lib=static=nghttp3".into(),
        ],
        origin: format!("static {} ({how})", libdir.join("libnghttp3.a").display()),
    })
}

/// Compiles nghttp3's `lib/` (and its bundled sfparse) into a static archive in
/// `OUT_DIR`, with the `version.h` its CMake build would generate.
fn from_source(src: &Path) -> Result<Library, String> {
    let lib = src.join("lib");
    let cmake = fs::read_to_string(src.join("CMakeLists.txt")).map_err(|e| {
        format!(
            "no nghttp3 source tree at {} ({e}); run scripts/setup.sh's \
             setup_nghttp3_src or set NGHTTP3_SRC_DIR",
            src.display()
        )
    })?;
    println!("cargo:rerun-if-changed={}", src.display());
    // `project(nghttp3 VERSION 1.18.0 ...)`
    let version = cmake
        .split("project(nghttp3 VERSION ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or("nghttp3 source: no version in CMakeLists.txt")?;
    let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    let [major, minor, patch] = parts[..] else {
        return Err(format!("nghttp3 source: version {version:?}"));
    };

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("vendored");
    let include = out.join("include");
    fs::create_dir_all(include.join("nghttp3")).map_err(|e| e.to_string())?;
    fs::copy(
        lib.join("includes/nghttp3/nghttp3.h"),
        include.join("nghttp3/nghttp3.h"),
    )
    .map_err(|e| format!("nghttp3 source: nghttp3.h: {e}"))?;
    let template = fs::read_to_string(lib.join("includes/nghttp3/version.h.in"))
        .map_err(|e| format!("nghttp3 source: version.h.in: {e}"))?;
    let version_h = template.replace("@PACKAGE_VERSION@", version).replace(
        "@PACKAGE_VERSION_NUM@",
        &format!("0x{major:02x}{minor:02x}{patch:02x}"),
    );
    fs::write(include.join("nghttp3/version.h"), version_h).map_err(|e| e.to_string())?;

    let mut sources: Vec<PathBuf> = fs::read_dir(&lib)
        .map_err(|e| e.to_string())?
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    sources.sort();
    sources.push(lib.join("sfparse/sfparse.c"));

    let mut build = cc::Build::new();
    // Optimized in every profile: tests and debug builds drive it hard too. The flags
    // below come later and may override it.
    build.opt_level(2);
    if let Some(cc) = env::var_os("NGHTTP3_SYS_CC") {
        build.compiler(cc);
    }
    for flag in env::var("NGHTTP3_SYS_CFLAGS")
        .unwrap_or_default()
        .split_whitespace()
    {
        build.flag(flag);
    }
    // What CMake's checks find on a Unix libc (no config.h: HAVE_CONFIG_H stays unset).
    build
        .files(&sources)
        .include(&include)
        .include(&lib)
        .define("NGHTTP3_STATICLIB", None)
        // Streams and tree nodes from malloc, not from per-connection pools: a freed
        // object goes back to the allocator, which hands it out again while it is still
        // in cache, where a pool keeps each connection's own, gone cold while the other
        // connections ran (3% less CPU per request with 100 connections, benches/README.md).
        // Address sanitizer builds see each object's lifetime too.
        .define("NOMEMPOOL", None)
        .warnings(false)
        .cargo_metadata(false);
    if cfg!(unix) {
        for have in ["HAVE_ARPA_INET_H", "HAVE_NETINET_IN_H", "HAVE_UNISTD_H"] {
            build.define(have, None);
        }
    }
    if env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux") {
        for have in ["HAVE_ENDIAN_H", "HAVE_BYTESWAP_H"] {
            build.define(have, None);
        }
        build
            .define("HAVE_DECL_BE64TOH", "1")
            .define("HAVE_DECL_BSWAP_64", "1");
    }
    build
        .out_dir(&out)
        .try_compile("nghttp3")
        .map_err(|e| format!("nghttp3 source: compiling nghttp3 {version}: {e}"))?;
    Ok(Library {
        include,
        link: vec![
            format!("cargo:rustc-link-search=native={}", out.display()),
            "cargo:rustc-link-lib=static=nghttp3".into(),
        ],
        origin: format!("nghttp3 {version} compiled from {}", src.display()),
    })
}

fn from_pkg_config() -> Result<Library, String> {
    let found = pkg_config::Config::new()
        .atleast_version("1.8.0")
        .cargo_metadata(false)
        .probe("libnghttp3")
        .map_err(|e| format!("NGHTTP3_SYS_USE_PKG_CONFIG=1: {e}"))?;
    let include = found
        .include_paths
        .iter()
        .find(|p| p.join("nghttp3/nghttp3.h").exists())
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/usr/include"));
    let statik = env::var("LIBNGHTTP3_STATIC").is_ok_and(|v| v == "1");
    let mut link: Vec<String> = found
        .link_paths
        .iter()
        .map(|p| format!("cargo:rustc-link-search=native={}", p.display()))
        .collect();
    let kind = if statik { "static=" } else { "" };
    link.extend(
        found
            .libs
            .iter()
            .map(|l| format!("cargo:rustc-link-lib={kind}{l}")),
    );
    Ok(Library {
        include,
        link,
        origin: format!(
            "{} libnghttp3 {} (pkg-config, {})",
            if statik { "static" } else { "shared" },
            found.version,
            found
                .link_paths
                .first()
                .map_or("".into(), |p| p.display().to_string())
        ),
    })
}

/// `NGHTTP3_VERSION_NUM` and `NGHTTP3_VERSION` from `nghttp3/version.h`.
fn header_version(version_h: &Path) -> (u32, String) {
    let text = fs::read_to_string(version_h)
        .unwrap_or_else(|e| panic!("reading {}: {e}", version_h.display()));
    let define = |name: &str| {
        text.lines()
            .filter_map(|l| l.strip_prefix("#define "))
            .find_map(|l| {
                l.strip_prefix(name)
                    .filter(|rest| rest.starts_with([' ', '\t']))
            })
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("{name} missing from {}", version_h.display()))
    };
    let num = define("NGHTTP3_VERSION_NUM");
    let num = u32::from_str_radix(num.trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("NGHTTP3_VERSION_NUM {num:?}: {e}"));
    (num, define("NGHTTP3_VERSION"))
}

/// Shim functions are named `nghttp3_sys_X` in C (so they cannot clash with the
/// library's own symbols) and exposed as `nghttp3_X`, the macro's name, in Rust.
#[derive(Debug)]
struct ShimNames;

impl bindgen::callbacks::ParseCallbacks for ShimNames {
    fn generated_name_override(&self, item: bindgen::callbacks::ItemInfo<'_>) -> Option<String> {
        item.name
            .strip_prefix("nghttp3_sys_")
            .map(|rest| format!("nghttp3_{rest}"))
    }
}

fn generate_bindings(include: &Path) {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    bindgen::Builder::default()
        .header("src/shim.h")
        .clang_arg(format!("-I{}", include.display()))
        .allowlist_function("nghttp3_.*")
        .allowlist_type("nghttp3_.*")
        .allowlist_var("NGHTTP3_.*")
        // Plain integer constants: a C library may hand back values an enum lacks.
        .default_enum_style(bindgen::EnumVariation::Consts)
        .use_core()
        .derive_default(true)
        .generate_comments(true)
        .parse_callbacks(Box::new(ShimNames))
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen failed on nghttp3.h")
        .write_to_file(out.join("bindings.rs"))
        .expect("writing bindings.rs");
}
