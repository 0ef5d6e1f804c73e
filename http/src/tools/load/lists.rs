//! `shop load --scenario lists`: what a shop's pages cost as its tables grow. Users already in the
//! system (`--login-prefix` + a number below `--existing-users`, spread evenly over them) read
//! their order history, first page (5 orders) and the next one through its `Link: rel="next"`,
//! and browse the catalog, its first page (20 products) and a page deep in it (after a random id
//! below `--existing-products`). `scripts/growth` fills the databases and compares the p99s.

use std::time::{Duration, Instant};

use rand::Rng as _;
use serde_json::json;

use super::report::Recorder;
use super::{LoadConfig, LoadReport, Scenario, slice};

/// Entries per page the scenario asks for: a user's orders, and the catalog's products.
const ORDERS_PAGE: usize = 5;
const PRODUCTS_PAGE: usize = 20;

pub(super) async fn lists(config: &LoadConfig, quiet: bool) -> Result<LoadReport, String> {
    if config.users == 0
        || config.concurrency == 0
        || config.existing_users == 0
        || config.existing_products == 0
    {
        return Err(
            "--users, --concurrency, --existing-users and --existing-products must be at least 1".into()
        );
    }
    let http = super::http_client(config)?;
    let mut rec = Recorder::new("orders", Instant::now(), slice(config));
    let mut tokens = Vec::with_capacity(config.users);
    for i in 0..config.users {
        let n = i * config.existing_users / config.users;
        let name = format!("{}{n}", config.login_prefix);
        let since = Instant::now();
        let login = http
            .post(format!("{}/api/auth/login", config.auth_url))
            .json(&json!({"username": name, "password": config.password}))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("logging in as {name}: {e}"))?;
        rec.record("login", since.elapsed());
        let body: serde_json::Value = login.json().await.map_err(|e| format!("logging in as {name}: {e}"))?;
        tokens.push(
            body["token"].as_str().ok_or_else(|| format!("logging in as {name}: no token"))?.to_owned(),
        );
    }
    let rounds = if config.duration.is_some() { usize::MAX } else { config.requests.div_ceil(4).max(1) };
    let bar = super::progress(config, quiet, if config.duration.is_some() { 0 } else { rounds });
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    rec.start_at(start);
    let until = config.duration.map(|d| start + Duration::from_secs_f64(d));
    let workers = (0..config.concurrency).map(|w| {
        let (http, next, bar) = (http.clone(), next.clone(), bar.clone());
        let token = tokens[w % tokens.len()].clone();
        let (order_url, product_url, products) =
            (config.order_url.clone(), config.product_url.clone(), config.existing_products);
        let mut rec = rec.sibling();
        tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < rounds
                && until.is_none_or(|u| Instant::now() < u)
            {
                let first = format!("{order_url}/api/orders?limit={ORDERS_PAGE}");
                let following = get(&http, &mut rec, "orders", &first, Some(&token)).await;
                if let Some(path) = following {
                    get(&http, &mut rec, "orders_next", &format!("{order_url}{path}"), Some(&token)).await;
                }
                let catalog = format!("{product_url}/api/products?limit={PRODUCTS_PAGE}");
                get(&http, &mut rec, "products", &catalog, None).await;
                let after = rand::rng().random_range(0..products);
                let deep = format!("{product_url}/api/products?limit={PRODUCTS_PAGE}&after={after}");
                get(&http, &mut rec, "products_deep", &deep, None).await;
                bar.inc(1);
            }
            rec
        })
    });
    for worker in futures::future::join_all(workers).await {
        rec.merge(worker.map_err(|e| format!("a lists worker failed: {e}"))?);
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let pages: u64 = ["orders", "orders_next", "products", "products_deep"]
        .iter()
        .filter_map(|e| rec.histograms.get(e).map(hdrhistogram::Histogram::len))
        .sum();
    Ok(LoadReport::of_requests(Scenario::Lists, &rec, pages, seconds))
}

/// GETs one page and records it under `endpoint`; answers the path of the next page, when the
/// answer links one.
async fn get(
    http: &reqwest::Client,
    rec: &mut Recorder,
    endpoint: &'static str,
    url: &str,
    token: Option<&str>,
) -> Option<String> {
    let mut req = http.get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let since = Instant::now();
    match req.send().await {
        Ok(resp) if resp.status().is_success() => {
            let next = next_link(resp.headers());
            let read = resp.bytes().await.is_ok();
            if read {
                rec.record(endpoint, since.elapsed());
            } else {
                rec.error(endpoint, "transport");
            }
            next
        }
        Ok(resp) => {
            rec.error(endpoint, resp.status().as_str());
            None
        }
        Err(_) => {
            rec.error(endpoint, "transport");
            None
        }
    }
}

/// The target of `Link: <…>; rel="next"`.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers.get_all(reqwest::header::LINK).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        v.split(',').find_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            params
                .contains("rel=\"next\"")
                .then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_among_others() {
        let mut headers = reqwest::header::HeaderMap::new();
        let value =
            "</api/orders?limit=1&after=0>; rel=\"first\", </api/orders?limit=20&after=41>; rel=\"next\"";
        headers.insert(reqwest::header::LINK, value.parse().expect("a header value"));
        assert_eq!(next_link(&headers).as_deref(), Some("/api/orders?limit=20&after=41"));
        headers.insert(reqwest::header::LINK, "</x>; rel=\"prev\"".parse().expect("a header value"));
        assert_eq!(next_link(&headers), None);
    }
}
