//! Node config: sources, the acceptance pipeline, and the controllers it drives.
pub mod http;
