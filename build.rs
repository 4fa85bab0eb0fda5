//! The `ringdb` binary keeps its line tables (for `perf` and backtraces)
//! but stores them zlib-compressed: the release binary is 91 MB instead of
//! 217 MB (it was 490 MB with full debug info). `perf`, `addr2line`, gdb
//! and Rust's own backtraces read compressed sections as plain ones.

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,--compress-debug-sections=zlib");
}
