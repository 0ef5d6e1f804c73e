//! What every service refuses before a handler runs: bodies over [`BODY_LIMIT`] (413) and bodies
//! that take longer than [`BODY_DEADLINE`] to arrive (408, the slow client), and the client's
//! address, which the login and registration limits count by.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
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

/// The proxies whose `X-Forwarded-For` is believed (`SHOP_TRUSTED_PROXIES`): the gateway's
/// address in distributed mode. Empty, the header is never read.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Arc<[IpAddr]>);

/// The address the request came from, when the server knows it (it does when serving a socket):
/// the peer's, or, when the peer is a trusted proxy, the last address of its `X-Forwarded-For`
/// (the one that proxy added). A client's own claim is never believed.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl ClientAddr {
    fn of(parts: &Parts, trusted: &TrustedProxies) -> Option<IpAddr> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())?;
        if !trusted.0.contains(&peer) {
            return Some(peer);
        }
        // Only the last entry is the proxy's; one that does not parse counts as the proxy itself,
        // never as an earlier entry, which the client may have written.
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|a| a.trim().parse::<IpAddr>().ok());
        Some(forwarded.unwrap_or(peer))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr
where
    TrustedProxies: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Self::of(parts, &TrustedProxies::from_ref(state))))
    }
}
