//! Cursor paging of the list endpoints (`GET /api/products`, `GET /api/orders`).
//!
//! The body stays what it was before paging, a JSON array; `?limit=` (1 to [`MAX_LIMIT`],
//! default [`MAX_LIMIT`]) bounds it and `?after=` (an id) says where it goes on from. When more
//! entries may follow, the answer carries `Link: </api/…?limit=N&after=ID>; rel="next"`
//! (RFC 8288), ID being the last entry's: a client follows it until there is none. The cursor is
//! an id in a stable order (products oldest first, a user's orders newest first), so pages do
//! not shift while rows are added and each costs one index range scan, however deep.

use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shop_actors::ports::Page;

use crate::error::ApiError;

/// The most entries one page holds, and the size of a page when none is asked for.
pub const MAX_LIMIT: u32 = 100;

/// `?limit=&after=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// At most this many entries (1 to 100; default 100).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Go on after the entry with this id: the `after` of the `Link: rel="next"` of the page
    /// before.
    after: Option<i64>,
}

impl PageQuery {
    /// The page asked for, and one entry more: that one, if it comes, says a next page exists.
    pub(crate) fn page(&self) -> Result<(Page, u32), ApiError> {
        let limit = self.limit.unwrap_or(MAX_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_LIMIT}, not {limit}"
            )));
        }
        Ok((Page { after: self.after, limit: limit + 1 }, limit))
    }
}

/// The page's answer: at most `limit` of `items` (fetched with one more, see
/// [`PageQuery::page`]), with the `Link` to the next page when that one more came.
pub(crate) fn answer<T: Serialize>(
    path: &str,
    limit: u32,
    mut items: Vec<T>,
    id: impl Fn(&T) -> i64,
) -> Response {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = items
        .last()
        .filter(|_| more)
        .map(|last| format!("<{path}?limit={limit}&after={}>; rel=\"next\"", id(last)));
    let mut response = Json(items).into_response();
    if let Some(link) = next.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_outside_one_to_a_hundred_is_refused() {
        for bad in [0, 101, u32::MAX] {
            assert!(PageQuery { limit: Some(bad), after: None }.page().is_err(), "{bad}");
        }
        let (page, limit) = PageQuery { limit: None, after: Some(7) }.page().expect("default");
        assert_eq!((page, limit), (Page { after: Some(7), limit: 101 }, 100));
    }

    #[test]
    fn the_next_link_comes_only_when_one_entry_more_did() {
        let full = answer("/api/products", 2, vec![5_i64, 6, 9], |id| *id);
        assert_eq!(full.headers()[header::LINK], "</api/products?limit=2&after=6>; rel=\"next\"");
        let last = answer("/api/products", 2, vec![5_i64, 6], |id| *id);
        assert!(last.headers().get(header::LINK).is_none());
    }
}
