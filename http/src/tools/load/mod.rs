//! `shop load`: drives a running system (either mode) over HTTP and reports what it saw.
//!
//! It registers `--users` users, then places `--checkouts` checkouts (each: add one item to the
//! cart, then `POST /api/orders`), spread over the users. Closed loop by default (`--concurrency`
//! checkouts in flight); with `--rate` it is an open loop: checkout *i* is due at `i / rate`
//! seconds and its latency is measured from that moment, so a slow system is not hidden by the
//! load generator waiting for it (coordinated omission). One user's checkouts never overlap (a
//! cart is checked out one at a time), so time spent waiting for the user counts as latency too.
//!
//! Each request's own latency is recorded under its endpoint (`cart_add`, `checkout`); the whole
//! checkout, from the moment it was due to its answer, under `checkout_e2e`. With
//! `--login-flood N`, N more clients log in over and over while the checkouts run (under
//! `login_flood`; their 503s are the hashing queue pushing back, counted apart from checkout
//! errors). With `--audit`, the databases are audited at the end.
//!
//! `--duration` runs for that long instead of a count. In an open loop the users scale with the
//! rate (`--think-time` apart, each user's checkouts), so a load does not measure one user's cart
//! waiting for its previous checkout's event. `--ramp` finds the sustained rate by itself: open-loop
//! steps of rising rate, each judged on its own, until one falls behind or its p99 grows past
//! `--ramp-p99-ms`. Every run keeps a timeline (`--slice-seconds`) and the latency distribution;
//! `--report PATH` writes them beside the JSON as one self-contained HTML page of charts.
//!
//! The machine's ceilings come from the same tool: `--scenario health` sends `--requests` GETs to
//! `--health-url` at `--concurrency`, each worker on a hyper connection of its own, as lean as wrk;
//! `--scenario commits` makes single-row durable commits for `--seconds` on `--database-url`,
//! opened as a service opens it (`scripts/ceilings`). `--scenario lists` pages through users'
//! orders and the catalog, for `scripts/growth`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::tools::audit::AuditConfig;
use clap::Args;
use serde::Serialize;
use serde_json::json;
use shop_services::tools::audit::AuditReport;

mod lists;
mod picture;
mod report;

pub use self::report::{EndpointReport, LoadReport, RampReport, RampStep, Slice};
use self::report::{Recorder, Shared, endpoint_reports, lock, print_report, shared, take};

/// What the load tool drives.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Users fill carts and check out.
    Checkout,
    /// GET a health endpoint: the HTTP round-trip ceiling.
    Health,
    /// Single-row durable commits on a database: the commit ceiling.
    Commits,
    /// Users already there read their order history and browse the catalog: what pages cost
    /// as the tables grow (`scripts/growth`).
    Lists,
}

#[derive(Args, Debug, Clone)]
pub struct LoadConfig {
    #[arg(long, env = "SHOP_AUTH_URL", default_value = "http://127.0.0.1:8080")]
    pub auth_url: String,
    #[arg(long, env = "SHOP_CART_URL", default_value = "http://127.0.0.1:8082")]
    pub cart_url: String,
    #[arg(long, env = "SHOP_ORDER_URL", default_value = "http://127.0.0.1:8084")]
    pub order_url: String,
    /// Users to register (each checkout goes to one of them, round robin).
    #[arg(long, default_value_t = 64)]
    pub users: usize,
    /// Checkouts to place.
    #[arg(long, default_value_t = 1000)]
    pub checkouts: usize,
    /// Checkouts in flight at once (closed loop).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Checkouts started per second (open loop); overrides the closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// The product each checkout buys one of. Checkouts take stock: with `--admin-password` the
    /// tool makes a product of its own with stock for any run and buys that instead.
    #[arg(long, default_value_t = 2)]
    pub product_id: i64,
    /// The password of user `admin`, to make the run's product (see `--product-id`).
    #[arg(long, env = "SHOP_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    #[arg(long, env = "SHOP_PRODUCT_URL", default_value = "http://127.0.0.1:8081")]
    pub product_url: String,
    /// Drive the API gateway at this URL (e.g. http://127.0.0.1:8000) instead of the services'
    /// own ports: every service URL above, and the health scenario's, become the gateway's.
    #[arg(long, env = "SHOP_LOAD_GATEWAY")]
    pub gateway: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value_t = Scenario::Checkout)]
    pub scenario: Scenario,
    /// Requests the health scenario sends.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    #[arg(long, default_value = "http://127.0.0.1:8084/health")]
    pub health_url: String,
    /// The database the commits scenario writes to (sqlite://… or mysql://…).
    #[arg(long)]
    pub database_url: Option<String>,
    /// How long the commits scenario runs.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Clients logging in over and over while the checkouts run.
    #[arg(long, default_value_t = 0)]
    pub login_flood: usize,
    /// Audit the databases after the checkouts (`shop audit`), where `--data-dir` or the
    /// SHOP_*_DATABASE_URL variables say they are.
    #[arg(long)]
    pub audit: bool,
    /// `NAME=PID`, repeatable: the CPU time that process spent during the checkouts alone (not
    /// the users' registration before them) goes into the report's `cpuSeconds` (Linux).
    #[arg(long = "cpu-of", value_name = "NAME=PID")]
    pub cpu_of: Vec<String>,
    /// Run for this many seconds instead of a number of checkouts (or, in the health scenario,
    /// of requests).
    #[arg(long, value_name = "SECONDS", conflicts_with_all = ["checkouts", "requests"])]
    pub duration: Option<f64>,
    /// Open loop: each user's checkouts are due at least this many seconds apart, so there are
    /// at least rate × think time users (a load test then measures the system, not one user's
    /// cart waiting for the event of its previous checkout). Each user costs a registration and
    /// a login (two password hashes) before the checkouts begin.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.25)]
    pub think_time: f64,
    /// Find the sustained rate: open-loop steps from `--rate` (50/s unless given), `--ramp-step`
    /// higher every `--step-seconds`, until a step falls behind (a checkout still unanswered
    /// a grace of a tenth of the step, at least 1 s, after the step), errs, or its p99 passes
    /// `--ramp-p99-ms`.
    #[arg(long)]
    pub ramp: bool,
    /// How much each ramp step adds to the rate (the first step's rate unless given).
    #[arg(long, value_name = "PER_SECOND")]
    pub ramp_step: Option<f64>,
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub step_seconds: f64,
    /// The p99 of the whole checkout a ramp step may reach and still count as sustained.
    #[arg(long, value_name = "MS", default_value_t = 100.0)]
    pub ramp_p99_ms: f64,
    /// The ramp stops after the step at this rate.
    #[arg(long, value_name = "PER_SECOND")]
    pub max_rate: Option<f64>,
    /// The width of the report's timeline slices.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub slice_seconds: f64,
    /// Also write the report to PATH.json and, as a picture, to PATH.html: throughput and
    /// p50/p99 over time and the latency distribution, one self-contained page.
    #[arg(long, value_name = "PATH")]
    pub report: Option<std::path::PathBuf>,
    /// The lists scenario logs in as `<prefix><n>`, n spread evenly below `--existing-users`.
    #[arg(long, default_value = "grow")]
    pub login_prefix: String,
    /// How many such users there are.
    #[arg(long, default_value_t = 0)]
    pub existing_users: usize,
    /// Product ids go up to about this many: the lists scenario reads a page after a random one.
    #[arg(long, default_value_t = 0)]
    pub existing_products: usize,
    /// The password of those users.
    #[arg(long, default_value = "load-password-1")]
    pub password: String,
    #[command(flatten)]
    pub databases: AuditConfig,
}

/// Sends `req`, records its latency under `endpoint` and, unless it succeeded, the status under
/// the errors. Answers the body of a success.
async fn timed(
    rec: &Shared,
    endpoint: &'static str,
    since: Instant,
    req: reqwest::RequestBuilder,
) -> Option<serde_json::Value> {
    match sent(rec, endpoint, since, req).await {
        Ok(body) => Some(body),
        Err(status) => {
            lock(rec).error(endpoint, &status);
            None
        }
    }
}

/// Like [`timed`], but a failure is handed back (as its status, or "transport") unrecorded.
async fn sent(
    rec: &Shared,
    endpoint: &'static str,
    since: Instant,
    req: reqwest::RequestBuilder,
) -> Result<serde_json::Value, String> {
    let outcome = req.send().await;
    lock(rec).record(endpoint, since.elapsed());
    match outcome {
        Ok(resp) if resp.status().is_success() => Ok(resp.json().await.unwrap_or(serde_json::Value::Null)),
        Ok(resp) => Err(resp.status().as_str().to_owned()),
        Err(_) => Err("transport".to_owned()),
    }
}

/// How long a checkout is retried while the cart is still held by the user's previous one.
const HELD_CART_PATIENCE: Duration = Duration::from_secs(30);

/// Runs the load and returns the report (and prints it unless `quiet`; writes it where
/// `--report` says).
pub async fn run(mut config: LoadConfig, quiet: bool) -> Result<LoadReport, String> {
    if let Some(gateway) = config.gateway.clone() {
        let gateway = gateway.trim_end_matches('/').to_owned();
        for url in
            [&mut config.auth_url, &mut config.cart_url, &mut config.order_url, &mut config.product_url]
        {
            url.clone_from(&gateway);
        }
        config.health_url = format!("{gateway}/health");
    }
    let positive = |v: f64| v > 0.0 && v.is_finite();
    if config.duration.is_some_and(|d| !positive(d)) {
        return Err("--duration must be a positive number of seconds".into());
    }
    if !positive(config.slice_seconds) || !positive(config.step_seconds) || !positive(config.ramp_p99_ms) {
        return Err("--slice-seconds, --step-seconds and --ramp-p99-ms must be positive numbers".into());
    }
    if !(config.think_time >= 0.0 && config.think_time.is_finite()) {
        return Err("--think-time must be a number of seconds, 0 or more".into());
    }
    if [config.rate, config.ramp_step, config.max_rate].into_iter().flatten().any(|r| !positive(r)) {
        return Err(
            "--rate, --ramp-step and --max-rate must be positive numbers of checkouts per second".into()
        );
    }
    let report = match config.scenario {
        Scenario::Checkout => checkouts(&config, quiet).await?,
        Scenario::Health => health(&config, quiet).await?,
        Scenario::Commits => commits(&config).await?,
        Scenario::Lists => lists::lists(&config, quiet).await?,
    };
    if let Some(path) = &config.report {
        picture::write(path, &report, &config)?;
    }
    if !quiet {
        if config.json {
            println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
        } else {
            print_report(&report, &config);
        }
    }
    Ok(report)
}

fn http_client(config: &LoadConfig) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(config.concurrency.max(8) + config.login_flood)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())
}

fn progress(config: &LoadConfig, quiet: bool, len: usize) -> indicatif::ProgressBar {
    if quiet || config.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(len as u64)
    }
}

fn slice(config: &LoadConfig) -> Duration {
    Duration::from_secs_f64(config.slice_seconds)
}

/// GETs of the health URL at `--concurrency`: `--requests` of them, or for `--duration`. As wrk
/// does, each worker holds one keep-alive connection of its own (hyper's, no pool, no client
/// layer), reads no more of an answer than its status and body bytes, and records on its own: no
/// lock per request.
async fn health(config: &LoadConfig, quiet: bool) -> Result<LoadReport, String> {
    if (config.requests == 0 && config.duration.is_none()) || config.concurrency == 0 {
        return Err("--requests (or --duration) and --concurrency must be at least 1".into());
    }
    let target = HealthTarget::parse(&config.health_url)?;
    let total = if config.duration.is_some() { usize::MAX } else { config.requests };
    let bar = progress(config, quiet, if config.duration.is_some() { 0 } else { total });
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let until = config.duration.map(|d| start + Duration::from_secs_f64(d));
    let workers = (0..config.concurrency).map(|_| {
        let (next, bar, target) = (next.clone(), bar.clone(), target.clone());
        let mut rec = Recorder::new("health", start, slice(config));
        tokio::spawn(async move {
            let mut connection = None;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total
                && until.is_none_or(|u| Instant::now() < u)
            {
                let sent = Instant::now();
                match target.get(&mut connection).await {
                    Ok(status) if status.is_success() => rec.record("health", sent.elapsed()),
                    Ok(status) => rec.error("health", status.as_str()),
                    Err(()) => rec.error("health", "transport"),
                }
                bar.inc(1);
            }
            rec
        })
    });
    let mut rec = Recorder::new("health", start, slice(config));
    for worker in futures::future::join_all(workers).await {
        rec.merge(worker.map_err(|e| format!("a health worker failed: {e}"))?);
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let (ok, _, _) = rec.primary();
    Ok(LoadReport::of_requests(Scenario::Health, &rec, ok, seconds))
}

/// Where the health scenario's GETs go: an `http://` URL, taken apart once.
#[derive(Clone)]
struct HealthTarget {
    /// `host:port`, to connect to and to send as `Host`.
    authority: String,
    path_and_query: String,
}

type Connection = hyper::client::conn::http1::SendRequest<http_body_util::Empty<hyper::body::Bytes>>;

impl HealthTarget {
    fn parse(url: &str) -> Result<Self, String> {
        let uri: axum::http::Uri = url.parse().map_err(|e| format!("--health-url {url}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("--health-url {url}: the health scenario speaks plain http://"));
        }
        let host = uri.host().ok_or_else(|| format!("--health-url {url}: no host"))?;
        let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok(Self { authority, path_and_query })
    }

    /// One GET on `connection` (opened first if there is none, and dropped after a failure so
    /// that the next GET opens another); answers the status once the body is read.
    async fn get(&self, connection: &mut Option<Connection>) -> Result<hyper::StatusCode, ()> {
        use http_body_util::BodyExt as _;
        if connection.as_ref().is_none_or(|c| c.is_closed()) {
            *connection = Some(self.connect().await?);
        }
        let sender = connection.as_mut().ok_or(())?;
        let request = hyper::Request::get(self.path_and_query.as_str())
            .header(hyper::header::HOST, self.authority.as_str())
            .body(http_body_util::Empty::new())
            .map_err(|_| ())?;
        let outcome = async {
            sender.ready().await.map_err(|_| ())?;
            let response = sender.send_request(request).await.map_err(|_| ())?;
            let status = response.status();
            response.into_body().collect().await.map_err(|_| ())?;
            Ok(status)
        }
        .await;
        if outcome.is_err() {
            *connection = None;
        }
        outcome
    }

    async fn connect(&self) -> Result<Connection, ()> {
        let stream = tokio::net::TcpStream::connect(self.authority.as_str()).await.map_err(|_| ())?;
        stream.set_nodelay(true).map_err(|_| ())?;
        let (sender, driver) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|_| ())?;
        // The connection's reads and writes run on their own task until either side closes it.
        tokio::spawn(driver);
        Ok(sender)
    }
}

/// Single-row durable commits on `--database-url` for `--seconds` at `--concurrency`.
async fn commits(config: &LoadConfig) -> Result<LoadReport, String> {
    let url = config.database_url.as_deref().ok_or("--scenario commits needs --database-url")?;
    if !(config.seconds > 0.0 && config.seconds.is_finite()) {
        return Err("--seconds must be a positive number".into());
    }
    let c = shop_services::tools::ceiling::measure(
        url,
        config.concurrency,
        Duration::from_secs_f64(config.seconds),
        &shop_services::storage::PoolConfig::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(LoadReport {
        scenario: Scenario::Commits,
        operations: usize::try_from(c.commits).unwrap_or(usize::MAX),
        seconds: c.seconds,
        per_second: c.commits_per_second,
        paid: 0,
        cancelled: 0,
        errors: BTreeMap::new(),
        held_cart_retries: 0,
        endpoints: BTreeMap::new(),
        audit: None,
        cpu_seconds: BTreeMap::new(),
        timeline: Vec::new(),
        distribution: Vec::new(),
        ramp: None,
    })
}

/// What every checkout of a run shares: where to send it, what to buy, and who buys.
struct Shoppers {
    http: reqwest::Client,
    urls: Arc<(String, String)>,
    product: i64,
    users: Vec<User>,
    run_id: String,
}

impl Shoppers {
    /// Registers users until there are `n`.
    async fn at_least(&mut self, config: &LoadConfig, rec: &Shared, n: usize) -> Result<(), String> {
        if self.users.len() < n {
            let more = register_users(config, &self.http, rec, &self.run_id, self.users.len()..n).await?;
            self.users.extend(more);
        }
        Ok(())
    }

    /// The users an open loop at `rate` needs for each user's checkouts to be `--think-time`
    /// apart (and never fewer than `--users`).
    fn for_rate(config: &LoadConfig, rate: f64) -> usize {
        let n = (rate * config.think_time).ceil();
        if n.is_finite() && n > 0.0 { config.users.max(n as usize) } else { config.users }
    }
}

/// How checkouts are placed: closed loop at `--concurrency` or open loop at `rate`; `count` of
/// them, or as many as are due within `length`.
#[derive(Clone, Copy)]
struct Plan {
    rate: Option<f64>,
    count: usize,
    length: Option<Duration>,
}

/// Places the checkouts of `plan` and waits for all of them; answers when the last one was due
/// (open loop) or started (closed loop).
async fn place(
    config: &LoadConfig,
    shoppers: &Shoppers,
    rec: &Shared,
    plan: Plan,
    bar: &indicatif::ProgressBar,
) -> Result<Instant, String> {
    let start = Instant::now();
    let until = plan.length.map(|l| start + l);
    let slots = Arc::new(tokio::sync::Semaphore::new(if plan.rate.is_some() {
        tokio::sync::Semaphore::MAX_PERMITS
    } else {
        config.concurrency
    }));
    let mut tasks = tokio::task::JoinSet::new();
    let mut last = start;
    for i in 0..plan.count {
        let due = match plan.rate {
            Some(rate) => {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                if until.is_some_and(|u| due >= u) {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        let permit = slots.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        let due = if plan.rate.is_some() { due } else { Instant::now() };
        if plan.rate.is_none() && until.is_some_and(|u| due >= u) {
            break;
        }
        last = due;
        let (http, rec, bar) = (shoppers.http.clone(), rec.clone(), bar.clone());
        let (user, urls) = (shoppers.users[i % shoppers.users.len()].clone(), shoppers.urls.clone());
        let product = shoppers.product;
        tasks.spawn(async move {
            let _permit = permit;
            one_checkout(&http, &rec, &user, &urls, product, due).await;
            bar.inc(1);
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(last)
}

/// Users fill their carts and check out, closed or open loop (or a ramp of open loops),
/// optionally beside a login flood.
async fn checkouts(config: &LoadConfig, quiet: bool) -> Result<LoadReport, String> {
    if config.users == 0 || config.checkouts == 0 || config.concurrency == 0 {
        return Err("--users, --checkouts and --concurrency must be at least 1".into());
    }
    let watched = watched_processes(&config.cpu_of)?;
    let http = http_client(config)?;
    let rec = shared(Recorder::new("checkout_e2e", Instant::now(), slice(config)));
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let first_rate = if config.ramp { Some(config.rate.unwrap_or(RAMP_FIRST_RATE)) } else { config.rate };
    let users = first_rate.map_or(config.users, |r| Shoppers::for_rate(config, r));
    let users = register_users(config, &http, &rec, &run_id, 0..users).await?;
    let product = match &config.admin_password {
        Some(password) => run_product(config, &http, password).await?,
        None => config.product_id,
    };
    let urls = Arc::new((config.cart_url.clone(), config.order_url.clone()));
    let mut shoppers = Shoppers { http: http.clone(), urls, product, users, run_id: run_id.clone() };
    let flooding = Arc::new(std::sync::atomic::AtomicBool::new(config.login_flood > 0));
    let flood = login_flood(config, &http, &rec, &run_id, &flooding);

    let cpu_before: Vec<u64> = watched.iter().map(|(_, pid)| cpu_ticks(*pid)).collect::<Result<_, _>>()?;
    let length = config.duration.map(Duration::from_secs_f64);
    let bar = progress(config, quiet, if config.ramp || length.is_some() { 0 } else { config.checkouts });
    let start = Instant::now();
    lock(&rec).start_at(start);
    let ramped = if config.ramp {
        Some(ramp(config, &mut shoppers, &rec, &bar).await?)
    } else {
        let count = if length.is_some() { usize::MAX } else { config.checkouts };
        place(config, &shoppers, &rec, Plan { rate: config.rate, count, length }, &bar).await?;
        None
    };
    let seconds = start.elapsed().as_secs_f64();
    let mut cpu_seconds = BTreeMap::new();
    for ((name, pid), before) in watched.iter().zip(cpu_before) {
        let spent = cpu_ticks(*pid)?.saturating_sub(before);
        cpu_seconds.insert(name.clone(), spent as f64 / CLOCK_TICKS_PER_SECOND);
    }
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    for login in flood {
        // A flood client that panicked has nothing left to report.
        let _ = login.await;
    }
    bar.finish_and_clear();

    let audit = if config.audit { Some(settled_audit(&config.databases).await?) } else { None };
    let r = lock(&rec);
    // Each checkout placed ended as one of these: an outcome, a refused add, a refused checkout.
    let refused = r.errors_of("cart_add") + r.errors_of("checkout");
    let placed = r.paid + r.cancelled + usize::try_from(refused).unwrap_or(usize::MAX);
    Ok(LoadReport {
        scenario: Scenario::Checkout,
        operations: placed,
        seconds,
        per_second: (r.paid + r.cancelled) as f64 / seconds,
        paid: r.paid,
        cancelled: r.cancelled,
        errors: r.errors.clone(),
        held_cart_retries: r.held_retries,
        endpoints: endpoint_reports(&r),
        audit,
        cpu_seconds,
        timeline: r.timeline(),
        distribution: r.distribution(),
        ramp: ramped,
    })
}

/// The first step's rate of a ramp not given `--rate`.
const RAMP_FIRST_RATE: f64 = 50.0;

/// `--ramp`: open-loop steps of rising rate until one does not keep up. Each step's checkouts
/// are all answered before the next begins, so a step is judged on its own.
async fn ramp(
    config: &LoadConfig,
    shoppers: &mut Shoppers,
    rec: &Shared,
    bar: &indicatif::ProgressBar,
) -> Result<RampReport, String> {
    let mut rate = config.rate.unwrap_or(RAMP_FIRST_RATE);
    let rise = config.ramp_step.unwrap_or(rate);
    let step = Duration::from_secs_f64(config.step_seconds);
    let grace = (step / 10).max(Duration::from_secs(1));
    let origin = Instant::now();
    let (mut steps, mut sustained) = (Vec::new(), None);
    let stopped = loop {
        if config.max_rate.is_some_and(|max| rate > max) {
            break format!("the next step, {rate}/s, is past --max-rate");
        }
        shoppers.at_least(config, rec, Shoppers::for_rate(config, rate)).await?;
        let step_rec = shared(lock(rec).sibling());
        let at = origin.elapsed().as_secs_f64();
        let offered = (rate * config.step_seconds).round().max(1.0) as usize;
        let last_due =
            place(config, shoppers, &step_rec, Plan { rate: Some(rate), count: offered, length: None }, bar)
                .await?;
        let drained = last_due.elapsed();
        let seen = take(&step_rec);
        let (completed, p50_ms, p99_ms) = seen.primary();
        let errors = seen.errors_of("checkout") + seen.errors_of("cart_add");
        let completed = usize::try_from(completed).unwrap_or(usize::MAX);
        lock(rec).merge(seen);
        let kept_up = completed == offered && errors == 0 && drained <= grace && p99_ms <= config.ramp_p99_ms;
        steps.push(RampStep {
            rate,
            at_seconds: at,
            seconds: config.step_seconds,
            offered,
            completed,
            errors,
            p50_ms,
            p99_ms,
            drained_seconds: drained.as_secs_f64(),
            kept_up,
        });
        if !kept_up {
            break if errors > 0 || completed < offered {
                format!(
                    "at {rate}/s, {} of {offered} checkouts did not complete",
                    offered - completed.min(offered)
                )
            } else if drained > grace {
                format!(
                    "at {rate}/s the checkouts fell behind: the last answered {:.2} s after it was due",
                    drained.as_secs_f64()
                )
            } else {
                format!("at {rate}/s p99 reached {p99_ms:.1} ms, past --ramp-p99-ms {}", config.ramp_p99_ms)
            };
        }
        sustained = Some(rate);
        rate += rise;
    };
    Ok(RampReport { steps, sustained_rate: sustained, stopped })
}

/// A load user: its token, and a lock that keeps its checkouts one at a time.
type User = Arc<(String, tokio::sync::Mutex<()>)>;

/// A product with stock for any run, made as `admin`.
async fn run_product(config: &LoadConfig, http: &reqwest::Client, password: &str) -> Result<i64, String> {
    let login: serde_json::Value = http
        .post(format!("{}/api/auth/login", config.auth_url))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("admin login: {e}"))?
        .json()
        .await
        .map_err(|e| format!("admin login: {e}"))?;
    let token = login["token"].as_str().ok_or("admin login: no token")?;
    let body = json!({"name": "Load test item", "price": "1.00", "stock": shop_services::product::MAX_STOCK});
    let product: serde_json::Value = http
        .post(format!("{}/api/products", config.product_url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("making the run's product: {e}"))?
        .json()
        .await
        .map_err(|e| format!("making the run's product: {e}"))?;
    product["id"].as_i64().ok_or_else(|| format!("making the run's product: {product}"))
}

/// The load's users numbered `which`, registered and logged in 16 at a time.
async fn register_users(
    config: &LoadConfig,
    http: &reqwest::Client,
    rec: &Shared,
    run_id: &str,
    which: std::ops::Range<usize>,
) -> Result<Vec<User>, String> {
    let mut tokens = Vec::with_capacity(which.len());
    for chunk in which.collect::<Vec<_>>().chunks(16) {
        let logins = chunk.iter().map(|i| {
            let (http, rec, auth) = (http.clone(), rec.clone(), config.auth_url.clone());
            let name = format!("load{}{i}", &run_id[..8]);
            async move {
                let body = json!({"username": name, "email": format!("{name}@load.test"), "password": "load-password-1"});
                timed(&rec, "register", Instant::now(), http.post(format!("{auth}/api/auth/register")).json(&body))
                    .await?;
                let body = json!({"username": name, "password": "load-password-1"});
                let login =
                    timed(&rec, "login", Instant::now(), http.post(format!("{auth}/api/auth/login")).json(&body))
                        .await?;
                login["token"].as_str().map(str::to_owned)
            }
        });
        for token in futures::future::join_all(logins).await {
            tokens.push(token.ok_or("registering the load users failed; is the system running?")?);
        }
    }
    Ok(tokens.into_iter().map(|t| Arc::new((t, tokio::sync::Mutex::new(())))).collect())
}

/// `--login-flood` clients logging in over and over while `flooding` holds.
fn login_flood(
    config: &LoadConfig,
    http: &reqwest::Client,
    rec: &Shared,
    run_id: &str,
    flooding: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..config.login_flood)
        .map(|i| {
            let (http, rec, flooding) = (http.clone(), rec.clone(), flooding.clone());
            let (auth, name) = (config.auth_url.clone(), format!("load{}{}", &run_id[..8], i % config.users));
            tokio::spawn(async move {
                let body = json!({"username": name, "password": "load-password-1"});
                while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                    let login = http.post(format!("{auth}/api/auth/login")).json(&body);
                    timed(&rec, "login_flood", Instant::now(), login).await;
                }
            })
        })
        .collect()
}

/// One checkout of `user`: add one of `product` to the cart, then place the order, asking again
/// while the cart is still held by the user's previous checkout. Latency from `due`.
async fn one_checkout(
    http: &reqwest::Client,
    rec: &Shared,
    user: &User,
    (cart, order): &(String, String),
    product: i64,
    due: Instant,
) {
    let _turn = user.1.lock().await;
    let token = &user.0;
    let add = http
        .post(format!("{cart}/api/cart/add"))
        .bearer_auth(token)
        .json(&json!({"productId": product, "quantity": 1}));
    if timed(rec, "cart_add", Instant::now(), add).await.is_none() {
        return;
    }
    // In distributed mode the previous checkout's cart is released when its event arrives
    // through Kafka; until then the cart answers 409. A user tries again.
    let patience = Instant::now() + HELD_CART_PATIENCE;
    let mut pause = Duration::from_millis(10);
    let placed = loop {
        let checkout = http.post(format!("{order}/api/orders")).bearer_auth(token);
        match sent(rec, "checkout", Instant::now(), checkout).await {
            Err(status) if status == "409" && Instant::now() < patience => {
                lock(rec).held_retries += 1;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(250));
            }
            Err(status) => {
                lock(rec).error("checkout", &status);
                return;
            }
            Ok(order) => break order,
        }
    };
    let mut r = lock(rec);
    r.record("checkout_e2e", due.elapsed());
    match placed["status"].as_str() {
        Some("PAID") => r.paid += 1,
        Some("CANCELLED") => r.cancelled += 1,
        _ => r.error("checkout", "unexpected body"),
    }
}

/// How long the audit waits for the system to settle after the last checkout answered.
const SETTLE: Duration = Duration::from_secs(10);

/// The audit once the system has settled: in distributed mode the outbox relay publishes the
/// last outcome events just after their checkouts answered, so an audit at that instant finds
/// them unsent. It is asked again every 200 ms until it is clean or [`SETTLE`] has passed; what
/// it still finds then is reported.
async fn settled_audit(databases: &AuditConfig) -> Result<AuditReport, String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let report = databases.audit().await.map_err(|e| format!("audit: {e}"))?;
        if report.violations.is_empty() || Instant::now() >= deadline {
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The unit of `/proc/<pid>/stat`'s CPU times: USER_HZ, 100 on every Linux architecture.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// `--cpu-of NAME=PID` arguments, parsed.
fn watched_processes(args: &[String]) -> Result<Vec<(String, u32)>, String> {
    args.iter()
        .map(|a| {
            let (name, pid) = a.split_once('=').ok_or_else(|| format!("--cpu-of {a}: expected NAME=PID"))?;
            let pid = pid.parse().map_err(|_| format!("--cpu-of {a}: {pid:?} is not a process id"))?;
            Ok((name.to_owned(), pid))
        })
        .collect()
}

/// CPU time (user and system, in clock ticks) process `pid` has spent so far.
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("--cpu-of: reading /proc/{pid}/stat: {e}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    // utime and stime are fields 14 and 15; the first field after the name is field 3.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    match (field(14), field(15)) {
        (Some(user), Some(system)) => Ok(user + system),
        _ => Err(format!("--cpu-of: /proc/{pid}/stat has no CPU times")),
    }
}
