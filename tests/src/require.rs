//! Parts a test needs that a machine may lack (the shared captures, a
//! browser, a broker): a test without one skips with the reason printed,
//! unless `FOOTFALL_REQUIRE` demands the part, as `.ci/run` does; then it
//! fails. Shared by source with the agent's integration tests.

use std::path::PathBuf;

/// Whether `FOOTFALL_REQUIRE` (comma-separated: `shared-data`, `chromium`,
/// `mosquitto`, `postgres`, or `all`) demands `part`. `.ci/run` sets it, so that in CI
/// a missing part fails the test that needs it instead of skipping it.
pub fn required(part: &str) -> bool {
    std::env::var("FOOTFALL_REQUIRE")
        .unwrap_or_default()
        .split(',')
        .any(|p| p.trim() == part || p.trim() == "all")
}

/// A test that cannot run because `part` is missing: skipped with the
/// reason printed, or failed when `FOOTFALL_REQUIRE` demands the part.
pub fn skip(part: &str, why: &str) {
    assert!(
        !required(part),
        "FOOTFALL_REQUIRE demands {part}, but {why}"
    );
    println!("skipped: {why}");
}

/// The shared captures (`../shared/data`, or `FOOTFALL_SHARED_DATA`), or
/// `None` after `skip` when they are absent (a user's clone has none).
pub fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("FOOTFALL_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    if dir.join("expected.tsv").is_file() {
        Some(dir)
    } else {
        skip(
            "shared-data",
            &format!(
                "{} has no expected.tsv (shared captures are not in a user's clone)",
                dir.display()
            ),
        );
        None
    }
}
