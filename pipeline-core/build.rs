//! Remembers where `LIBTORCH` pointed at build time, so the `torch` module
//! can load libtorch's CUDA backend from there at run time.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_some() {
        if let Ok(dir) = std::env::var("LIBTORCH") {
            println!("cargo:rustc-env=PIPELINE_LIBTORCH_LIB={dir}/lib");
        }
    }
}
