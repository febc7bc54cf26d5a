//! Node config: where it comes from (the image, the state volume, a URL, the API), the acceptance pipeline every
//! config goes through, and the mapping from an accepted config to each controller's desired state.

pub mod apply;
#[cfg(test)]
mod fleet_bench;
pub mod http;
pub mod pipeline;
pub mod pull;
pub mod rollout;
pub mod run;
pub mod store;
pub mod submit;
pub mod tls;
pub mod trust;
