//! GUID partition tables: the pure writer and reader live in `keel-disklabel` (fuzzed there); the init adds
//! only what needs the kernel, a random GUID.

pub use keel_disklabel::gpt::*;

/// A random (version 4) GUID from the kernel's generator.
pub fn random_guid() -> std::io::Result<Guid> {
    let mut b = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
    Ok(Guid::v4(b))
}
