//! Keel's OCI pieces that face the network, as pure parsers with no I/O (the PID 1 drives them; fuzz/ fuzzes
//! them): image references pinned by digest, image indexes / manifests / configs, the registry's
//! `WWW-Authenticate` challenge, and a streaming tar reader with the decision of what each layer entry becomes.

pub mod auth;
pub mod digest;
pub mod manifest;
pub mod reference;
pub mod tar;
pub mod unpack;

pub use digest::Digest;
pub use manifest::{Compression, ImageConfig, Index, Layer, Manifest, ManifestError, Platform};
pub use reference::{RefError, Reference};
