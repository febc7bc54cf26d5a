//! The Markdown files an operator reads, for the tests that keep them true (docs.rs, docs_ops.rs).

use std::path::{Path, PathBuf};

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("ctl/ has a parent").to_path_buf()
}

/// README.md, config/README.md, ctl/README.md and every docs/*.md, in that order.
pub fn docs() -> Vec<PathBuf> {
    let root = root();
    let mut files = vec![root.join("README.md"), root.join("config/README.md"), root.join("ctl/README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    more.sort();
    files.extend(more);
    files
}

/// A file's text; a test fails naming the file when it cannot be read.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
