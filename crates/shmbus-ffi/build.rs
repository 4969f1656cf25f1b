//! Gives `libshmbus.so` the soname `libshmbus.so.0` (the install step makes
//! the `libshmbus.so.0` and `libshmbus.so` links, as cargo-c does), so C
//! programs linked against it record the versioned name.
fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libshmbus.so.{major}");
    println!("cargo:rerun-if-changed=build.rs");
}
