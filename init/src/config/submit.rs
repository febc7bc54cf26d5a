//! A config handed to the pipeline (by the pull, the API), with where to send the verdict. Its own module so the
//! pull and the config task that runs it do not import each other.

use super::pipeline::Rejection;
use super::store::Signed;
use tokio::sync::oneshot;

pub struct Submit {
    pub source: String,
    pub signed: Signed,
    pub reply: Option<oneshot::Sender<Result<u64, Rejection>>>,
}
