//! What every service refuses before a handler runs: bodies over [`BODY_LIMIT`] (413) and bodies
//! that take longer than [`BODY_DEADLINE`] to arrive (408, the slow client), and the client's
//! address, which the login and registration limits count by.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

/// The largest request body any endpoint reads. The largest real one, a product, is under 1 KiB.
pub const BODY_LIMIT: usize = 64 * 1024;
/// How long a request body may take to arrive, from the moment its headers did.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// Whether a body could not be read because its deadline passed.
pub(crate) fn timed_out(rejection: &BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = source {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// The address the request came from, when the server knows it (it does when serving a socket).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())))
    }
}
