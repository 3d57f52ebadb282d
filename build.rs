//! Release builds embed `web/dist/` (the browser assets, made by `scripts/web-build`); this
//! makes cargo rebuild when that folder changes, new files included (rust-embed alone tracks
//! only the files it saw). Debug builds read the folder at run time and need no rebuild.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_CFG_DEBUG_ASSERTIONS").is_some() {
        return;
    }
    println!("cargo:rerun-if-changed=web/dist");
    if std::env::var_os("CARGO_FEATURE_SERVER").is_some()
        && !std::path::Path::new("web/dist/common.js").exists()
    {
        println!(
            "cargo:warning=web/dist is missing or incomplete: run scripts/web-build first, or the \
             binary's pages will have no scripts"
        );
    }
}
