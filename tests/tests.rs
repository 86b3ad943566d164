//! End-to-end tests: the built binaries against real files.
