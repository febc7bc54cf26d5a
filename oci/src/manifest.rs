//! Image indexes (manifest lists), image manifests and image configs, OCI and Docker v2 schema 2, each parsed
//! from a bounded body. Nothing here trusts a size or a digest: the caller verifies every body it fetched against
//! the digest that named it before parsing it.

use crate::digest::Digest;
use serde::Deserialize;

/// A manifest, index or config body over this size is refused before it is read further.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Layers per image; real images have tens.
pub const MAX_LAYERS: usize = 512;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// What a manifest GET sends as `Accept`.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("{what} of {len} bytes is over the {max}-byte limit")]
    TooLarge { what: &'static str, len: usize, max: usize },
    #[error("{what} is not valid JSON of the expected shape: {detail}")]
    Json { what: &'static str, detail: String },
    #[error("unsupported media type {0:?}")]
    MediaType(String),
    #[error("{0} layers (at most {MAX_LAYERS})")]
    TooManyLayers(usize),
    #[error("unsupported layer media type {0:?} (tar, tar+gzip or tar+zstd layers only)")]
    LayerType(String),
    #[error("schemaVersion {0} (only 2 is supported)")]
    SchemaVersion(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub manifests: Vec<Descriptor>,
}

impl Index {
    /// The manifest for linux/amd64, if the index has one.
    pub fn linux_amd64(&self) -> Option<&Descriptor> {
        self.manifests.iter().find(|d| {
            d.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                && (d.media_type.is_empty() || d.media_type == OCI_MANIFEST || d.media_type == DOCKER_MANIFEST)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub digest: Digest,
    pub size: u64,
    pub compression: Compression,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub config: Descriptor,
    pub layers: Vec<Layer>,
}

impl Manifest {
    /// Bytes to fetch for the whole image (config and layers), as the manifest states them.
    pub fn total_size(&self) -> u64 {
        self.layers.iter().fold(self.config.size, |sum, l| sum.saturating_add(l.size))
    }
}

/// What a manifest GET returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    Index(Index),
    Manifest(Manifest),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTop {
    #[serde(default)]
    schema_version: Option<u64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

fn layer_compression(media_type: &str) -> Option<Compression> {
    Some(match media_type {
        "application/vnd.oci.image.layer.v1.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip" | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            Compression::Gzip
        }
        "application/vnd.oci.image.layer.v1.tar+zstd" => Compression::Zstd,
        _ => return None,
    })
}

fn bounded(what: &'static str, body: &[u8]) -> Result<(), ManifestError> {
    if body.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge { what, len: body.len(), max: MAX_MANIFEST_BYTES });
    }
    Ok(())
}

fn json_err(what: &'static str) -> impl Fn(serde_json::Error) -> ManifestError {
    move |e| ManifestError::Json { what, detail: e.to_string() }
}

/// Parses a manifest GET's body; `content_type` is the response's `Content-Type`, used when the body does not
/// say its own media type (Docker lists and older manifests).
pub fn parse_manifest(content_type: Option<&str>, body: &[u8]) -> Result<Fetched, ManifestError> {
    bounded("manifest", body)?;
    let raw: RawTop = serde_json::from_slice(body).map_err(json_err("manifest"))?;
    if let Some(v) = raw.schema_version {
        if v != 2 {
            return Err(ManifestError::SchemaVersion(v));
        }
    }
    let header = content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string());
    let media = raw.media_type.clone().or(header).unwrap_or_default();
    let is_index = match media.as_str() {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        // application/json or nothing: the shape decides.
        "" | "application/json" => raw.manifests.is_some(),
        other => return Err(ManifestError::MediaType(other.to_string())),
    };
    if is_index {
        let manifests = raw
            .manifests
            .ok_or_else(|| ManifestError::Json { what: "index", detail: "no \"manifests\" list".into() })?;
        if manifests.len() > MAX_LAYERS {
            return Err(ManifestError::Json { what: "index", detail: format!("{} entries", manifests.len()) });
        }
        return Ok(Fetched::Index(Index { manifests }));
    }
    let config = raw.config.ok_or_else(|| ManifestError::Json { what: "manifest", detail: "no \"config\"".into() })?;
    let raw_layers =
        raw.layers.ok_or_else(|| ManifestError::Json { what: "manifest", detail: "no \"layers\"".into() })?;
    if raw_layers.len() > MAX_LAYERS {
        return Err(ManifestError::TooManyLayers(raw_layers.len()));
    }
    let mut layers = Vec::with_capacity(raw_layers.len());
    for d in raw_layers {
        let compression = layer_compression(&d.media_type).ok_or(ManifestError::LayerType(d.media_type))?;
        layers.push(Layer { digest: d.digest, size: d.size, compression });
    }
    Ok(Fetched::Manifest(Manifest { config, layers }))
}

/// What Keel takes from an image config: the process to run and its environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `uid`, `uid:gid`, or a name (resolved against the image's /etc/passwd by the runner).
    pub user: Option<String>,
    pub os: String,
    pub architecture: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawRunConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    config: Option<RawRunConfig>,
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

impl ImageConfig {
    pub fn parse(body: &[u8]) -> Result<ImageConfig, ManifestError> {
        bounded("image config", body)?;
        let raw: RawConfig = serde_json::from_slice(body).map_err(json_err("image config"))?;
        let c = raw.config.unwrap_or_default();
        let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
        Ok(ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: nonempty(c.working_dir),
            user: nonempty(c.user),
            os: raw.os,
            architecture: raw.architecture,
        })
    }

    /// The command line the image runs by default: entrypoint then cmd.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn oci_index_resolves_linux_amd64() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":10,"platform":{{"architecture":"arm64","os":"linux"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":11,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            d('a'),
            d('b')
        );
        let Fetched::Index(index) = parse_manifest(None, body.as_bytes()).unwrap() else { panic!("not an index") };
        assert_eq!(index.linux_amd64().unwrap().digest.to_string(), d('b'));
        let arm_only = Index { manifests: index.manifests[..1].to_vec() };
        assert!(arm_only.linux_amd64().is_none());
    }

    #[test]
    fn docker_list_by_content_type() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            d('c')
        );
        let got = parse_manifest(Some(&format!("{DOCKER_LIST}; charset=utf-8")), body.as_bytes()).unwrap();
        assert!(matches!(got, Fetched::Index(i) if i.linux_amd64().is_some()));
    }

    #[test]
    fn manifests_of_both_kinds_with_each_compression() {
        for (mt, lt, want) in [
            (OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar+gzip", Compression::Gzip),
            (OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar+zstd", Compression::Zstd),
            (OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar", Compression::None),
            (DOCKER_MANIFEST, "application/vnd.docker.image.rootfs.diff.tar.gzip", Compression::Gzip),
        ] {
            let body = format!(
                r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{{"mediaType":"x","digest":"{}","size":5}},
                   "layers":[{{"mediaType":"{lt}","digest":"{}","size":100}}]}}"#,
                d('1'),
                d('2')
            );
            let Fetched::Manifest(m) = parse_manifest(None, body.as_bytes()).unwrap() else { panic!() };
            assert_eq!(m.layers[0].compression, want);
            assert_eq!(m.total_size(), 105);
        }
    }

    #[test]
    fn refuses_bad_manifests() {
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(parse_manifest(None, &big), Err(ManifestError::TooLarge { .. })));
        let foreign = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":5}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{}","size":1}}]}}"#,
            d('1'),
            d('2')
        );
        assert!(matches!(parse_manifest(None, foreign.as_bytes()), Err(ManifestError::LayerType(_))));
        let bad_digest = r#"{"schemaVersion":2,"config":{"digest":"sha256:zz","size":5},"layers":[]}"#;
        assert!(matches!(parse_manifest(None, bad_digest.as_bytes()), Err(ManifestError::Json { .. })));
        let v1 = r#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert_eq!(parse_manifest(None, v1.as_bytes()), Err(ManifestError::SchemaVersion(1)));
        let odd = r#"{"schemaVersion":2,"mediaType":"text/html"}"#;
        assert!(matches!(parse_manifest(None, odd.as_bytes()), Err(ManifestError::MediaType(_))));
        for junk in ["", "[]", "{", "null", r#"{"layers":5}"#] {
            assert!(parse_manifest(None, junk.as_bytes()).is_err(), "{junk}");
        }
    }

    #[test]
    fn image_config_fields() {
        let body = r#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/app"],"Cmd":["--port","80"],
            "Env":["PATH=/usr/bin","A=b"],"WorkingDir":"/srv","User":"1000:1000"},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let c = ImageConfig::parse(body.as_bytes()).unwrap();
        assert_eq!(c.argv(), ["/bin/app", "--port", "80"]);
        assert_eq!(c.env, ["PATH=/usr/bin", "A=b"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        let empty = ImageConfig::parse(br#"{"config":{"Cmd":null,"WorkingDir":""}}"#).unwrap();
        assert_eq!(empty, ImageConfig::default());
        assert!(ImageConfig::parse(br#"{"config":{"Env":"x"}}"#).is_err());
    }
}
