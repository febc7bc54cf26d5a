//! HTTP/1.1 as the node's clients speak it, without I/O: [`url`] parses the URLs they fetch, [`response`]
//! the responses they get (fuzz target `http_response`). The connections, TLS and deadlines are the init's.

pub mod response;
pub mod url;

pub use response::{parse_head, parse_response, Dechunker, Head, Response};
pub use url::{parse_url, Url, UrlError};
