//! Each service's OpenAPI 3 document, generated from its routes: every handler carries a
//! `#[utoipa::path]` naming what it answers, and `utoipa_axum` collects them as the router is
//! built, so the document cannot name a route the service does not have. Served at
//! `/openapi.json`, browsable at `/docs` (Swagger UI, from its vendored copy: nothing is fetched
//! at build or view time).
//!
//! Error answers are problem+json ([`Problem`]); the responses below name each status once, and
//! the handlers list the ones they can give.

use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

/// An error, as every service answers it (`application/problem+json`, RFC 9457). Some carry
/// extension members besides (a shortage names `productId`, `productName`, `requested`,
/// `available`).
#[derive(ToSchema)]
#[allow(dead_code)] // Only its schema is used; `ApiError` writes the body.
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[schema(example = "about:blank")]
    r#type: String,
    /// The status's reason phrase.
    title: String,
    status: u16,
    /// What went wrong, for a person.
    detail: String,
}

/// The problem+json responses, one per status; handlers name the ones they can give
/// (`(status = 404, response = NotFound)`).
macro_rules! problems {
    ($($name:ident: $description:literal,)*) => {
        $(
            #[derive(utoipa::ToResponse)]
            #[response(description = $description, content_type = "application/problem+json")]
            #[allow(dead_code)] // Only its schema is used.
            pub(crate) struct $name(Problem);
        )*

        /// The base of every service's document: the bearer scheme, the problem schema and
        /// the error responses.
        #[derive(OpenApi)]
        #[openapi(components(schemas(Problem), responses($($name),*)), modifiers(&Bearer))]
        struct BaseDoc;
    };
}

problems! {
    BadRequest: "The request is malformed or breaks a rule.",
    Unauthorized: "No valid bearer token, or wrong credentials.",
    Forbidden: "The caller's role may not do this.",
    NotFound: "No such resource.",
    Conflict: "The resource's state refuses it: taken, held by a checkout, out of stock.",
    RequestTimeout: "The body did not arrive within the deadline (a slow client).",
    PayloadTooLarge: "The body is larger than the service takes (64 KiB).",
    TooManyRequests: "Too many attempts; retry after the `Retry-After` seconds.",
    UnsupportedMediaType: "The body is not `application/json`.",
    Unavailable: "Busy, or a service it needs is away; retry after the `Retry-After` seconds.",
}

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

/// The start of `service`'s document.
pub(crate) fn base(service: &str, description: &str) -> Document {
    let mut doc = BaseDoc::openapi();
    doc.info.title = format!("shop {service} service");
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.info.description = Some(description.to_string());
    doc.info.license = None;
    doc
}

/// `/openapi.json` and `/docs` for `doc`.
pub(crate) fn docs<S: Clone + Send + Sync + 'static>(doc: Document) -> axum::Router<S> {
    SwaggerUi::new("/docs").url("/openapi.json", doc).into()
}
