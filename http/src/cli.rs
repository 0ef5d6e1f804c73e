//! The `shop` command line: one subcommand per way of running it.

use clap::{Parser, Subcommand};

use crate::config::{RunConfig, ServeConfig};
use crate::tools::audit::AuditConfig;
use crate::tools::load::LoadConfig;

#[derive(Parser, Debug)]
#[command(name = "shop", version, about = "An actor-based e-commerce checkout system")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no command, `shop` runs the embedded system (same as `shop run`).
    #[command(flatten)]
    pub run: RunConfig,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Runs all five services in one process: SQLite under the data dir, in-process events.
    Run(RunConfig),
    /// Runs one service in this process (distributed mode): REST to the other services, events
    /// through Kafka. Needs SHOP_JWT_SECRET.
    Serve(ServeConfig),
    /// Drives a running system (either mode) over HTTP: registers users, places checkouts at a
    /// concurrency or a fixed arrival rate, reports throughput and latency percentiles.
    Load(LoadConfig),
    /// Checks the invariants across the service databases (orders against payments, nothing
    /// left PENDING, no negative stock); exits non-zero when one is broken.
    Audit(AuditConfig),
}
