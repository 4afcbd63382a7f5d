//! The shared library's SONAME: `libcreative_ffi.so.<ABI>`, so a host linked
//! against ABI 1 keeps loading an ABI-1 library after upgrades and refuses
//! another (the install script lays out the versioned file and its links).

fn main() {
    // Kept equal to `CREATIVE_ABI_VERSION` in src/lib.rs; the host tests read the
    // SONAME back and compare.
    const ABI: u32 = 1;
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" || os.ends_with("bsd") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcreative_ffi.so.{ABI}");
    } else if os == "macos" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-install_name,@rpath/libcreative_ffi.{ABI}.dylib");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
