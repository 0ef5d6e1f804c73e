use std::process::ExitCode;

use clap::Parser;
use shop_http::otlp::Otlp;
use shop_http::{Application, Cli, Command};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

// Every request and actor message allocates; jemalloc is faster than glibc's malloc for that
// pattern, and its background thread (.cargo/config.toml) hands freed memory back to the system
// after a burst even when the threads that freed it have gone idle (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("SHOP_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // The services log to standard output; the tools (`shop load`, `shop audit`) to standard
    // error, since their report is their standard output (JSON with `--json`).
    let tool = matches!(cli.command, Some(Command::Load(_) | Command::Audit(_)));
    let writer =
        || if tool { BoxMakeWriter::new(std::io::stderr) } else { BoxMakeWriter::new(std::io::stdout) };
    // Human-readable by default; one JSON object a line with SHOP_LOG_FORMAT=json. Either way a
    // line logged in a request carries that request's span: its request id and trace id.
    let logs = match std::env::var("SHOP_LOG_FORMAT").as_deref() {
        Ok("json") => {
            fmt::layer().json().with_current_span(true).with_span_list(false).with_writer(writer()).boxed()
        }
        Ok("text") | Err(_) => fmt::layer().with_writer(writer()).boxed(),
        Ok(other) => {
            eprintln!("shop: SHOP_LOG_FORMAT must be json or text, not {other:?}");
            return ExitCode::FAILURE;
        }
    };
    // The request and event spans (INFO, shop's own) to an OpenTelemetry collector, only when
    // asked; the exporter's HTTP client is made here, before the async runtime.
    let service_name = match &cli.command {
        Some(Command::Serve(config)) => {
            format!("shop-{}", config.service.name())
        }
        _ => "shop".to_owned(),
    };
    let otlp = match std::env::var("SHOP_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => match Otlp::start(&endpoint, &service_name) {
            Ok(started) => Some(started),
            Err(e) => {
                eprintln!("shop: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let (otlp, tracer) = otlp.unzip();
    match tracer {
        // Each layer its own filter: SHOP_LOG decides what is logged, not what is exported.
        Some(tracer) => {
            let shop = Targets::new()
                .with_target("shop_http", Level::INFO)
                .with_target("shop_services", Level::INFO)
                .with_target("shop_actors", Level::INFO);
            let spans = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(shop);
            tracing_subscriber::registry().with(logs.with_filter(filter)).with(spans).init();
        }
        // One global filter, as without any exporter: callsites it disables cost nothing.
        None => tracing_subscriber::registry().with(logs).with(filter).init(),
    }
    let code = run(cli);
    if let Some(otlp) = otlp {
        otlp.shutdown();
    }
    code
}

fn run(cli: Cli) -> ExitCode {
    let workers = match &cli.command {
        None => cli.run.worker_threads,
        Some(Command::Run(run) | Command::Serve(shop_http::ServeConfig { run, .. })) => run.worker_threads,
        Some(Command::Load(_) | Command::Audit(_)) => None,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shop: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = cli.command.unwrap_or(Command::Run(cli.run));
    let result = runtime.block_on(async move {
        match command {
            Command::Run(config) => {
                let signal = shutdown_signal();
                let app = Application::build(config).await?;
                for (service, addr) in app.addrs() {
                    tracing::info!("{} service listening on http://{addr}", service.name());
                }
                tracing::info!(
                    "the shop is open: storefront and API gateway on http://{}/",
                    app.gateway_addr()
                );
                app.run_until(signal).await?;
                Ok::<(), Box<dyn std::error::Error>>(())
            }
            Command::Load(config) => {
                let report = shop_http::tools::load::run(config, false).await?;
                match report.audit {
                    Some(audit) if !audit.is_clean() => {
                        Err("the audit after the load found violations".into())
                    }
                    _ => Ok(()),
                }
            }
            Command::Audit(config) => {
                let report = config.audit().await?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                if report.is_clean() { Ok(()) } else { Err("the audit found violations".into()) }
            }
            Command::Serve(config) if config.service == shop_http::config::ServiceArg::Gateway => {
                let signal = shutdown_signal();
                let gateway = shop_http::serve::GatewayNode::start(&config).await?;
                tracing::info!("gateway and storefront on http://{}/", gateway.addr());
                gateway.run_until(signal).await?;
                Ok(())
            }
            Command::Serve(config) => {
                let signal = shutdown_signal();
                let node = shop_http::serve::Node::start(config).await?;
                tracing::info!("{} service listening on http://{}", node.service().name(), node.addr());
                node.run_until(signal).await?;
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shop: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM. The handlers are installed when this is called, not when it is first
/// awaited: a signal that arrives while the services start is not lost (nor does it kill the
/// process the default way).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {},
                () = wait(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("shutting down");
    }
}
