//! docker-compose.yml must stay true to the binary: every SHOP_ variable it sets is one `shop`
//! reads, and every service gets what `shop serve <service>` refuses to start without.

use std::collections::BTreeSet;

use clap::CommandFactory;
use serde_yaml::Value;
use shop_http::Cli;

/// Every environment variable the binary reads, from its own command-line definition.
fn known_variables() -> BTreeSet<String> {
    fn collect(cmd: &clap::Command, out: &mut BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                out.insert(env.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            collect(sub, out);
        }
    }
    let mut out = BTreeSet::from(["SHOP_LOG", "SHOP_LOG_FORMAT", "SHOP_OTLP_ENDPOINT"].map(str::to_owned));
    collect(&Cli::command(), &mut out);
    out
}

fn compose() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml");
    let text = std::fs::read_to_string(path).expect("docker-compose.yml");
    serde_yaml::from_str(&text).expect("docker-compose.yml is YAML")
}

/// The gateway: published on 8000, with every service's URL, and nothing it does not read.
fn check_gateway(name: &str, def: &Value, known: &BTreeSet<String>) {
    let env = def["environment"].as_mapping().unwrap_or_else(|| panic!("{name}: environment as a map"));
    let vars: BTreeSet<String> = env.keys().filter_map(Value::as_str).map(str::to_owned).collect();
    for var in vars.iter().filter(|v| v.starts_with("SHOP_")) {
        assert!(known.contains(var), "{name} sets {var}, which shop does not read");
    }
    for (var, url) in [
        ("SHOP_AUTH_URL", "http://auth:8080"),
        ("SHOP_PRODUCT_URL", "http://product:8081"),
        ("SHOP_CART_URL", "http://cart:8082"),
        ("SHOP_ORDER_URL", "http://order:8084"),
    ] {
        assert_eq!(env[&Value::from(var)].as_str(), Some(url), "{name}: {var}");
    }
    assert!(!vars.contains("SHOP_PAYMENT_URL"), "the gateway does not expose Payment");
    assert_eq!(env[&Value::from("SHOP_GATEWAY_PORT")].as_str(), Some("8000"));
    let published: Vec<&str> =
        def["ports"].as_sequence().into_iter().flatten().filter_map(Value::as_str).collect();
    assert_eq!(published, ["8000:8000"], "{name}");
}

#[test]
fn compose_sets_only_known_variables_and_everything_each_service_needs() {
    let known = known_variables();
    for required in ["SHOP_JWT_SECRET", "SHOP_KAFKA_BROKERS", "SHOP_CART_URL", "SHOP_ORDER_DATABASE_URL"] {
        assert!(known.contains(required), "the binary no longer reads {required}; fix this test");
    }
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    let mut served = BTreeSet::new();
    let mut scraped = BTreeSet::new();
    for (name, def) in services {
        let name = name.as_str().expect("service name");
        let Some(command) = def["command"].as_sequence() else { continue };
        if command.get(1).and_then(Value::as_str) == Some("gateway") {
            check_gateway(name, def, &known);
            served.insert("gateway".to_owned());
            continue;
        }
        if let Some(port) = def["environment"].as_mapping().and_then(|env| {
            env.iter().find_map(|(k, v)| k.as_str().filter(|k| k.ends_with("_PORT")).and(v.as_str()))
        }) {
            scraped.insert(format!("{name}:{port}"));
        }
        let args: Vec<&str> = command.iter().filter_map(Value::as_str).collect();
        assert_eq!(args.first(), Some(&"serve"), "{name}: {args:?}");
        let service = args.get(1).copied().expect("serve <service>");
        served.insert(service.to_owned());
        let env = def["environment"].as_mapping().unwrap_or_else(|| panic!("{name}: environment as a map"));
        let vars: BTreeSet<String> = env.keys().filter_map(Value::as_str).map(str::to_owned).collect();
        for var in vars.iter().filter(|v| v.starts_with("SHOP_")) {
            assert!(known.contains(var), "{name} sets {var}, which shop does not read");
        }
        let upper = service.to_uppercase();
        let mut needs = vec![
            "SHOP_JWT_SECRET".to_owned(),
            "SHOP_HOST".to_owned(),
            format!("SHOP_{upper}_PORT"),
            format!("SHOP_{upper}_DATABASE_URL"),
        ];
        match service {
            "cart" => needs.extend(["SHOP_KAFKA_BROKERS".into(), "SHOP_PRODUCT_URL".into()]),
            "product" => needs.push("SHOP_KAFKA_BROKERS".into()),
            "order" => {
                let peers = ["SHOP_KAFKA_BROKERS", "SHOP_PRODUCT_URL", "SHOP_CART_URL", "SHOP_PAYMENT_URL"];
                needs.extend(peers.map(str::to_owned))
            }
            _ => {}
        }
        for need in &needs {
            assert!(vars.contains(need), "{name} misses {need}");
        }
        let url = env[&Value::from(format!("SHOP_{upper}_DATABASE_URL"))].as_str().unwrap_or_default();
        assert!(url.starts_with("mysql://") && url.ends_with(&format!("/{service}_db")), "{name}: {url}");
        let port = env[&Value::from(format!("SHOP_{upper}_PORT"))].as_str().unwrap_or_default().to_owned();
        let published: Vec<&str> =
            def["ports"].as_sequence().into_iter().flatten().filter_map(Value::as_str).collect();
        assert!(
            published.iter().any(|p| p.ends_with(&format!(":{port}"))),
            "{name} publishes {published:?}, listens on {port}"
        );
    }
    assert_eq!(
        served,
        ["auth", "cart", "gateway", "order", "payment", "product"].map(str::to_owned).into_iter().collect()
    );
    assert!(services.contains_key("mysql") && services.contains_key("kafka"));

    // Prometheus scrapes each service where it listens, and the dashboard asks for figures the
    // services export.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/prometheus.yml");
    let prometheus: Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).expect("prometheus.yml")).expect("YAML");
    let targets: BTreeSet<String> = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    assert_eq!(targets, scraped, "deploy/prometheus.yml scrapes what compose runs");
    assert_eq!(prometheus["scrape_configs"][0]["metrics_path"].as_str(), Some("/metrics"));
    assert!(services.contains_key("prometheus") && services.contains_key("grafana"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/dashboards/shop.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("dashboard JSON");
    let exported = [
        "shop_checkouts_total",
        "shop_http_requests_total",
        "shop_http_request_duration_seconds_bucket",
        "shop_payment_pool_in_flight",
        "shop_payment_pool_queued",
        "shop_actors_live",
        "shop_login_hashing_waiting",
        "shop_login_hashing_refused_total",
        "shop_checkout_duration_seconds_bucket",
        "shop_outbox_backlog",
        "shop_outbox_oldest_unsent_seconds",
        "shop_outbox_relay_lag_seconds_bucket",
        "shop_kafka_consumer_lag",
        "shop_db_connections_in_use",
        "shop_db_waiting",
        "shop_db_waits_total",
    ];
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            assert!(exported.iter().any(|m| expr.contains(m)), "{expr} asks for no figure shop exports");
        }
    }
    assert_eq!(
        compose["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"].as_str(),
        Some("broker,controller")
    );
}
