//! Compile-time checks: each mistake in `ui/<category>/*.rs` must be one
//! error at the user's tokens, as recorded in the `.stderr` snapshot beside
//! it. The snapshots are made by stable Rust 1.95 (other versions word
//! diagnostics differently); regenerate with `TRYBUILD=overwrite cargo test
//! -p pipeline-tests --test ui` and read the diff before committing.
//! On any other compiler the test is ignored (`rustversion`), so a newer
//! rustc's wording never turns CI red without a code change.

#[rustversion::attr(not(stable(1.95)), ignore)]
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    // `UI_ONLY='ui/sig/*.rs'` checks only those cases (while writing new
    // ones, as a glob of compile-fail cases).
    if let Ok(only) = std::env::var("UI_ONLY") {
        t.compile_fail(only);
        return;
    }
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/edges/*.rs");
    t.compile_fail("ui/attr/*.rs");
    t.compile_fail("ui/item/*.rs");
    t.compile_fail("ui/sig/*.rs");
    t.compile_fail("ui/remote/*.rs");
    t.compile_fail("ui/stream/*.rs");
}
