//! The OCI distribution API client: GETs against one registry with anonymous access first, then the auth the
//! registry's `WWW-Authenticate` challenge asks for (a Bearer token from its token service, or Basic), and
//! bounded redirects (≤ 5) for blobs served elsewhere. Authorization never follows a redirect to another host.

use super::http_stream::{self, Body, Head};
use super::PullError;
use crate::config::http::{parse_url, HttpError, Url};
use crate::config::tls;
use base64::Engine;
use keel_oci::auth::{parse_challenge, parse_token_response, token_url, Challenge};
use keel_oci::Reference;
use std::time::Duration;
use tokio_rustls::TlsConnector;

/// Idle deadline for connecting, the response head, and each body read.
pub const IDLE: Duration = Duration::from_secs(30);
const MAX_REDIRECTS: usize = 5;
const MAX_ERROR_BODY: usize = 16 << 10;

pub struct Registry {
    scheme_https: bool,
    host: String,
    port: u16,
    repository: String,
    connector: Option<TlsConnector>,
    secret: Option<String>,
    /// The `Authorization` value that worked (or was obtained) for this registry.
    auth: Option<String>,
}

fn network(e: HttpError) -> PullError {
    PullError::Network(e.to_string())
}

impl Registry {
    pub fn new(spec: &super::PullSpec) -> Result<Registry, PullError> {
        let r: &Reference = &spec.reference;
        let scheme = if spec.plain_http { "http" } else { "https" };
        let base = parse_url(&format!("{scheme}://{}/", r.api_host()))
            .map_err(|e| PullError::BadManifest(format!("registry {}: {e}", r.registry)))?;
        let connector = if spec.plain_http {
            None
        } else {
            let made = match &spec.ca_pem {
                Some(pem) => tls::connector(pem.as_bytes(), &format!("the CA of registry {}", r.registry)),
                None => tls::image_client().clone(),
            };
            Some(made.map_err(|e| PullError::Network(format!("registry {}: {e}", r.registry)))?)
        };
        Ok(Registry {
            scheme_https: base.tls,
            host: base.host,
            port: base.port,
            repository: r.repository.clone(),
            connector,
            secret: spec.token.clone(),
            auth: None,
        })
    }

    fn url(&self, path: String) -> Url {
        Url { tls: self.scheme_https, host: self.host.clone(), port: self.port, path }
    }

    fn same_origin(&self, u: &Url) -> bool {
        u.tls == self.scheme_https && u.host == self.host && u.port == self.port
    }

    fn secret_as_basic(&self) -> Option<String> {
        let s = self.secret.as_deref()?;
        s.contains(':').then(|| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s)))
    }

    /// GET `path` on the registry; `extra` headers go to the registry and to redirect targets. Returns the
    /// final response (2xx or an error status the caller classifies), after auth and redirects.
    pub async fn get(&mut self, path: String, extra: &[(&str, String)]) -> Result<(Head, Body), PullError> {
        let mut url = self.url(path);
        let mut authed = false;
        let mut hops = 0;
        loop {
            let same = self.same_origin(&url);
            let mut headers: Vec<(&str, String)> = extra.to_vec();
            if same {
                if let Some(a) = &self.auth {
                    headers.push(("Authorization", a.clone()));
                }
            }
            let connector = if !url.tls {
                None
            } else if same {
                self.connector.clone()
            } else {
                tls::image_client().as_ref().ok().cloned()
            };
            let (head, body) = http_stream::get(&url, connector.as_ref(), &headers, IDLE).await.map_err(network)?;
            match head.status {
                401 if same && !authed => {
                    authed = true;
                    let challenge = head.get("www-authenticate").unwrap_or("").to_string();
                    drop(body);
                    self.authenticate(&url, &challenge).await?;
                }
                401 | 403 => {
                    let text = error_text(body).await;
                    return Err(PullError::Unauthorized(format!("{url} answered {}{text}", head.status)));
                }
                301 | 302 | 303 | 307 | 308 => {
                    hops += 1;
                    if hops > MAX_REDIRECTS {
                        return Err(PullError::Network(format!("{url}: more than {MAX_REDIRECTS} redirects")));
                    }
                    let location = head.get("location").unwrap_or("").to_string();
                    url = if location.starts_with('/') {
                        Url { path: location, ..url }
                    } else {
                        parse_url(&location)
                            .map_err(|e| PullError::Network(format!("{url}: bad redirect {location:?}: {e}")))?
                    };
                }
                _ => return Ok((head, body)),
            }
        }
    }

    async fn authenticate(&mut self, url: &Url, challenge: &str) -> Result<(), PullError> {
        let parsed = parse_challenge(challenge)
            .map_err(|e| PullError::Unauthorized(format!("{url} answered 401 without a usable challenge: {e}")))?;
        match parsed {
            Challenge::Basic { .. } => {
                let basic = self.secret_as_basic().ok_or_else(|| {
                    PullError::Unauthorized(format!(
                        "{url} asks for Basic credentials: set the registry's token to \"user:password\""
                    ))
                })?;
                self.auth = Some(basic);
            }
            Challenge::Bearer { realm, service, scope } => {
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                let text = token_url(&realm, service.as_deref(), Some(&scope));
                let turl =
                    parse_url(&text).map_err(|e| PullError::Unauthorized(format!("token service {text:?}: {e}")))?;
                let mut headers = Vec::new();
                if let Some(basic) = self.secret_as_basic() {
                    headers.push(("Authorization", basic));
                } else if let Some(t) = &self.secret {
                    headers.push(("Authorization", format!("Bearer {t}")));
                }
                let connector = match (turl.tls, self.same_origin(&turl) || turl.host == self.host) {
                    (false, _) => None,
                    (true, true) => self.connector.clone(),
                    (true, false) => tls::image_client().as_ref().ok().cloned(),
                };
                let (head, body) =
                    http_stream::get(&turl, connector.as_ref(), &headers, IDLE).await.map_err(network)?;
                if head.status == 401 || head.status == 403 {
                    return Err(PullError::Unauthorized(format!("token service {turl} answered {}", head.status)));
                }
                if head.status != 200 {
                    return Err(PullError::Network(format!("token service {turl} answered {}", head.status)));
                }
                let body = body.read_all(64 << 10).await.map_err(network)?;
                let token = parse_token_response(&body)
                    .map_err(|e| PullError::Unauthorized(format!("token service {turl}: {e}")))?;
                self.auth = Some(format!("Bearer {token}"));
            }
        }
        Ok(())
    }
}

/// A short excerpt of an error response's body, for the message.
pub async fn error_text(body: Body) -> String {
    match body.read_all(MAX_ERROR_BODY).await {
        Ok(b) if !b.is_empty() => {
            let text: String = String::from_utf8_lossy(&b).chars().take(200).collect();
            format!(": {}", text.trim())
        }
        _ => String::new(),
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
