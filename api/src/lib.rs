//! Keel's node API without the node (docs/api.md): the route table ([`router`]), the request types it decodes
//! ([`request`]), its replies ([`reply`]), the refusal table every signed write answers from ([`refusals`]) and the
//! signed-command checks ([`command`]). What the handlers need from the node (its status, config pipeline, power,
//! logs, metrics, slot writer, credential checks) is the [`NodeApi`] trait: the PID 1 implements it on its state
//! (init/src/api/), and the fuzz target `api_request` on a fake that stops where the node would touch its state,
//! so both serve this one router. Pure: no sockets, no TLS, no files but the command nonces' own.

pub mod command;
pub mod refusals;
pub mod reply;
pub mod request;
mod router;

pub use router::{router, Action, Failure, NodeApi, MAX_BODY};
