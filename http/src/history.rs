//! The internal history API: how the Order service asks Product, Payment and Cart for their part
//! of an order's audit trail in distributed mode ([`shop_services::history`]), both of its ends.
//! SERVICE tokens only. The Order service's end is [`crate::clients::HttpHistory`].
//!
//! | call                                                          | answers                      |
//! |---------------------------------------------------------------|------------------------------|
//! | `GET /internal/history?orderId=&username=&checkoutId=`        | 200, the service's steps     |

use axum::Json;
use axum::extract::State;
use shop_services::cart::CartService;
use shop_services::history::{HistorySource, HistoryStep, OrderRef};
use shop_services::payment::PaymentService;
use shop_services::product::ProductService;

use crate::error::ApiResult;
use crate::extract::{ApiQuery, Authorized, ServiceOnly};
use crate::openapi::*;

pub(crate) const HISTORY_ROUTE: &str = "/internal/history";

/// The route's handler on one service, documented in that service's OpenAPI document.
macro_rules! history_route {
    ($name:ident, $service:ty, $what:literal) => {
        #[doc = concat!("The ", $what, " of an order's history (SERVICE).")]
        #[utoipa::path(get, path = HISTORY_ROUTE, tag = "internal", security(("bearer" = [])), params(OrderRef),
            responses(
            (status = 200, description = concat!("The ", $what, ", oldest first (none if it has no rows of the order)."), body = Vec<HistoryStep>),
            (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
            (status = 403, response = Forbidden), (status = 503, response = Unavailable),
        ))]
        pub(crate) async fn $name(
            State(service): State<$service>,
            _caller: Authorized<ServiceOnly>,
            ApiQuery(order): ApiQuery<OrderRef>,
        ) -> ApiResult<Json<Vec<HistoryStep>>> {
            Ok(Json(service.steps(&order).await?))
        }
    };
}

history_route!(product_steps, ProductService, "stock steps");
history_route!(payment_steps, PaymentService, "payment steps");
history_route!(cart_steps, CartService, "cart's step");
