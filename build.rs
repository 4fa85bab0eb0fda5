//! The `ringdb` binary keeps its line tables (for `perf` and backtraces)
//! but stores them zlib-compressed: the release binary is 91 MB instead of
//! 217 MB (it was 490 MB with full debug info). `perf`, `addr2line`, gdb
//! and Rust's own backtraces read compressed sections as plain ones. Only
//! for Linux release builds: the flag is GNU ld's (and lld's).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let release = std::env::var("PROFILE").is_ok_and(|profile| profile == "release");
    if linux && release {
        println!("cargo:rustc-link-arg-bins=-Wl,--compress-debug-sections=zlib");
    }
}
