use std::process::ExitCode;

use clap::Parser;
use shop_http::{Application, Cli, Command};
use tracing_subscriber::EnvFilter;

// Every request and actor message allocates; jemalloc is faster than glibc's malloc for that
// pattern, and its background thread (.cargo/config.toml) hands freed memory back to the system
// after a burst even when the threads that freed it have gone idle (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("SHOP_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Human-readable by default; one JSON object a line with SHOP_LOG_FORMAT=json. Either way a
    // line logged in a request carries that request's span: its request id and trace id.
    match std::env::var("SHOP_LOG_FORMAT").as_deref() {
        Ok("json") => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .init(),
        Ok("text") | Err(_) => tracing_subscriber::fmt().with_env_filter(filter).init(),
        Ok(other) => {
            eprintln!("shop: SHOP_LOG_FORMAT must be json or text, not {other:?}");
            return ExitCode::FAILURE;
        }
    }
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
                let app = Application::build(config).await?;
                for (service, addr) in app.addrs() {
                    tracing::info!("{} service listening on http://{addr}", service.name());
                }
                app.run_until(shutdown_signal()).await?;
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
            Command::Serve(config) => {
                let node = shop_http::serve::Node::start(config).await?;
                tracing::info!("{} service listening on http://{}", node.service().name(), node.addr());
                node.run_until(shutdown_signal()).await?;
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

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
