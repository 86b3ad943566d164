//! footfall's HQ gateway. Ingest, storage, campaigns and the API land with
//! issues #4 and #5; today it holds only what the report contract gives it.

pub use footfall_report as report;
