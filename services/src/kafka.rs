//! The Kafka bridge: an actor that publishes order events to `ORDER_EVENTS` (and the legacy
//! `ORDER_CREATED`) and, for the Cart service, consumes `ORDER_EVENTS` into an [`EventHandler`].
//!
//! Producing: idempotent producer, `acks=all`, records keyed by username (one user's events stay
//! in order on one partition). Consuming: a consumer group with `enable.auto.offset.store=false`;
//! the poll loop hands records to one worker per partition and keeps polling; a worker handles
//! what has arrived as a batch, each user's events in order and different users concurrently,
//! and stores the batch's offset (auto-committed later) only after every handler succeeded, so a
//! consumer that dies mid-batch sees it again after a restart. A handler that fails is retried
//! with back-off (that user's later events wait; the partition's next batch waits too). A record
//! that is not an order event is logged and skipped. Handlers must tolerate duplicates: the cart
//! applies a completed order once, by order id.
//!
//! A record carries its event's trace as a `traceparent` header (kept with the event in the
//! outbox), and the consumer handles each event in an `event` span of that trace. librdkafka's
//! statistics (every 5 s) give the consumer's lag ([`ConsumerLag`], `/metrics`). Stopping,
//! [`KafkaBus::close`] waits for the producer's last acknowledgements and commits the offsets of
//! what was handled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use shop_actors::model::OrderEvent;
use shop_actors::ports::{BusError, EventBus, EventHandler};
use shop_actors::retry::{Backoff, Retry};
use shop_actors::runtime::ActorRuntime;
use shop_actors::trace::{Start, TraceContext};
use tokio::sync::mpsc;
use tracing::Instrument;

pub const ORDER_EVENTS: &str = "ORDER_EVENTS";
pub const ORDER_CREATED: &str = "ORDER_CREATED";
/// The record header carrying the event's W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`
    pub brokers: String,
    /// Partitions of topics created at start-up.
    pub partitions: i32,
    /// How long a publish may wait for the broker's acknowledgement (librdkafka keeps retrying
    /// meanwhile). Long, so that a broker away for a while does not time messages out.
    pub send_timeout: Duration,
    /// Create the topics at start-up if they are missing (off where an operator manages them).
    pub create_topics: bool,
    /// The longest the broker may hold the consumer's fetch of a partition with nothing new
    /// (`fetch.wait.max.ms`). The broker answers as soon as a record is there (fetch.min.bytes
    /// 1), so this is not the event's wait for delivery: measured with Tansu, 25 ms against 100
    /// left the order-event latency as it was and cost the broker a third more CPU under load
    /// (2.3 times as much over a phase with idle stretches).
    pub fetch_wait: Duration,
}

/// `fetch.wait.max.ms` unless configured: measured in docs/PERFORMANCE.md (issue 16).
pub const DEFAULT_FETCH_WAIT_MS: u64 = 100;

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            partitions: 3,
            send_timeout: Duration::from_secs(30),
            create_topics: true,
            fetch_wait: Duration::from_millis(DEFAULT_FETCH_WAIT_MS),
        }
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        // A broker that stops answering (paused, overloaded) times out librdkafka's ApiVersion
        // request; by default it would then assume a pre-0.10 broker for 20 minutes, without the
        // idempotent producer. Ask again instead.
        c.set("api.version.fallback.ms", "0");
        c
    }
}

fn kafka_err(e: impl std::fmt::Display) -> BusError {
    BusError(format!("kafka: {e}"))
}

/// Creates `ORDER_EVENTS` and `ORDER_CREATED` if they do not exist yet.
pub async fn ensure_topics(config: &KafkaConfig) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> = config.client().create().map_err(kafka_err)?;
    let topics: Vec<NewTopic<'_>> = [ORDER_EVENTS, ORDER_CREATED]
        .iter()
        .map(|t| NewTopic::new(t, config.partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Timeout::After(Duration::from_secs(30))));
    for result in admin.create_topics(&topics, &options).await.map_err(kafka_err)? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(kafka_err(format!("creating {topic}: {code}"))),
        }
    }
    Ok(())
}

/// Asks the broker for the metadata of `ORDER_EVENTS` (`/ready`), on a client of its own made
/// once.
#[derive(Clone)]
pub struct BrokerProbe {
    client: Arc<rdkafka::consumer::BaseConsumer>,
}

impl BrokerProbe {
    pub fn new(config: &KafkaConfig) -> Result<Self, BusError> {
        Ok(Self { client: Arc::new(config.client().create().map_err(kafka_err)?) })
    }

    /// Whether the broker answers within `timeout`, with the topic.
    pub async fn check(&self, timeout: Duration) -> Result<(), BusError> {
        let client = self.client.clone();
        let answer = tokio::task::spawn_blocking(move || {
            client.fetch_metadata(Some(ORDER_EVENTS), timeout).map_err(kafka_err).and_then(|m| {
                match m.topics().iter().find(|t| t.name() == ORDER_EVENTS) {
                    Some(t) if t.error().is_none() => Ok(()),
                    _ => Err(kafka_err(format!("the broker does not have {ORDER_EVENTS}"))),
                }
            })
        })
        .await;
        answer.unwrap_or_else(|e| Err(kafka_err(e)))
    }
}

/// How far the Cart consumer is behind `ORDER_EVENTS`: records on the broker it has not stored
/// the offset of yet, summed over its partitions, from librdkafka's statistics (every
/// [`STATS_INTERVAL`]); `None` until the first statistics arrive. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ConsumerLag(Arc<std::sync::atomic::AtomicI64>);

const UNKNOWN_LAG: i64 = i64::MIN;
const STATS_INTERVAL: &str = "5000";

impl ConsumerLag {
    fn unknown() -> Self {
        Self(Arc::new(std::sync::atomic::AtomicI64::new(UNKNOWN_LAG)))
    }

    pub fn records(&self) -> Option<u64> {
        let lag = self.0.load(std::sync::atomic::Ordering::Relaxed);
        (lag != UNKNOWN_LAG).then(|| u64::try_from(lag).unwrap_or_default())
    }
}

/// The Cart side's consumer of `ORDER_EVENTS`.
type OrderConsumer = StreamConsumer<LagContext>;

/// The consumer's context: it keeps the lag from each statistics report.
pub struct LagContext {
    lag: ConsumerLag,
}

impl rdkafka::ClientContext for LagContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        // Partition -1 is librdkafka's internal "unassigned" entry; a lag of -1 is unknown.
        let lag =
            statistics.topics.get(ORDER_EVENTS).map_or(0, |topic| {
                topic
                    .partitions
                    .values()
                    .filter(|p| p.partition >= 0)
                    // Behind what this consumer has handled (stored), or, before it has stored an
                    // offset, behind what its group committed.
                    .map(|p| {
                        if p.consumer_lag_stored >= 0 { p.consumer_lag_stored } else { p.consumer_lag.max(0) }
                    })
                    .sum()
            });
        self.lag.0.store(lag, std::sync::atomic::Ordering::Relaxed);
    }
}

impl rdkafka::consumer::ConsumerContext for LagContext {}

/// Publish one event; answered once the broker has acknowledged it.
#[derive(Clone)]
struct Publish(OrderEvent);

impl actix::Message for Publish {
    type Result = Result<(), BusError>;
}

/// Flush the producer and commit the consumer's offsets: the last thing before stopping.
struct Close(Duration);

impl actix::Message for Close {
    type Result = Result<(), BusError>;
}

impl Handler<Close> for KafkaBridge {
    type Result = ResponseFuture<Result<(), BusError>>;

    fn handle(&mut self, Close(timeout): Close, _ctx: &mut Self::Context) -> Self::Result {
        let producer = self.producer.clone();
        let consumer = self.consumer.as_ref().map(|(c, _)| c.clone());
        Box::pin(async move {
            // Both calls block on the broker.
            let closed = tokio::task::spawn_blocking(move || {
                producer.flush(Timeout::After(timeout)).map_err(kafka_err)?;
                let Some(consumer) = consumer else { return Ok(()) };
                match consumer.commit_consumer_state(CommitMode::Sync) {
                    // Nothing handled since the last commit.
                    Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
                    Err(e) => Err(kafka_err(e)),
                }
            });
            closed.await.map_err(kafka_err)?
        })
    }
}

/// The bridge actor. Publishing is concurrent (the producer pipelines records); consuming, when
/// the bridge has a handler, runs as the actor's own stream.
pub struct KafkaBridge {
    producer: FutureProducer,
    config: KafkaConfig,
    consumer: Option<(Arc<OrderConsumer>, Arc<dyn EventHandler>)>,
}

impl Actor for KafkaBridge {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        if let Some((consumer, handler)) = self.consumer.clone() {
            ctx.spawn(consume(consumer, handler).into_actor(self));
        }
    }
}

impl Handler<Publish> for KafkaBridge {
    type Result = ResponseActFuture<Self, Result<(), BusError>>;

    fn handle(&mut self, Publish(event): Publish, _ctx: &mut Self::Context) -> Self::Result {
        let sender = self.producer.clone();
        let timeout = self.config.send_timeout;
        let send = async move {
            let payload = serde_json::to_vec(&event).map_err(|e| (kafka_err(e), false))?;
            let mut record = FutureRecord::to(event.topic()).key(&event.username).payload(&payload);
            if let Some(traceparent) = &event.traceparent {
                record = record.headers(
                    OwnedHeaders::new()
                        .insert(Header { key: TRACEPARENT, value: Some(traceparent.as_bytes()) }),
                );
            }
            sender.send(record, Timeout::After(timeout)).await.map(|_| ()).map_err(|(e, _)| {
                let stale = matches!(
                    e.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::ProducerFenced
                            | RDKafkaErrorCode::InvalidProducerEpoch
                            | RDKafkaErrorCode::UnknownProducerId
                            | RDKafkaErrorCode::OutOfOrderSequenceNumber
                            | RDKafkaErrorCode::InvalidProducerIdMapping
                    )
                );
                (kafka_err(e), stale)
            })
        };
        Box::pin(send.into_actor(self).map(|result, act, _ctx| {
            // An idempotent producer can lose its standing with the broker (messages timed out
            // while the broker was away, then the broker fences the old producer id): every later
            // send fails. Replace it; the events it failed on are still in the outbox and go out
            // again with the new one.
            let fatal = act.producer.client().fatal_error();
            if matches!(result, Err((_, true))) || fatal.is_some() {
                tracing::error!(?fatal, "the Kafka producer can no longer send; creating a new one");
                match producer(&act.config) {
                    Ok(p) => act.producer = p,
                    Err(e) => tracing::error!(error = %e, "could not create a new Kafka producer"),
                }
            }
            result.map_err(|(e, _)| e)
        }))
    }
}

fn producer(config: &KafkaConfig) -> Result<FutureProducer, BusError> {
    config
        .client()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", config.send_timeout.as_millis().to_string())
        .create()
        .map_err(kafka_err)
}

/// The poll loop: hands each record to its partition's worker and goes straight back to
/// polling, so a slow or failing handler holds up only its own partition (in order, as Kafka
/// promises) and never the consumer's membership in its group.
async fn consume(consumer: Arc<OrderConsumer>, handler: Arc<dyn EventHandler>) {
    let mut workers: HashMap<(String, i32), mpsc::Sender<OwnedMessage>> = HashMap::new();
    loop {
        let message = match consumer.recv().await {
            Ok(m) => m.detach(),
            Err(e) => {
                tracing::warn!(error = %e, "kafka consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let key = (message.topic().to_owned(), message.partition());
        let worker =
            workers.entry(key).or_insert_with(|| partition_worker(consumer.clone(), handler.clone()));
        // A full queue (the handler is far behind) waits here: back-pressure, bounded memory.
        if worker.send(message).await.is_err() {
            tracing::error!("a partition worker has stopped");
        }
    }
}

/// Records a partition worker takes at once.
const BATCH: usize = 256;

/// Handles one partition's records: what has arrived is taken as a batch, each user's events in
/// the order they were written, different users' concurrently (the order a key-partitioned topic
/// promises, without one slow cart apply holding up every other user of the partition). The
/// batch's last offset is stored only once every record of it was handled, so an event whose
/// handler never finished is delivered again after a restart.
fn partition_worker(
    consumer: Arc<OrderConsumer>,
    handler: Arc<dyn EventHandler>,
) -> mpsc::Sender<OwnedMessage> {
    let (tx, mut rx) = mpsc::channel::<OwnedMessage>(1024);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            let mut by_user: HashMap<String, Vec<OrderEvent>> = HashMap::new();
            for message in &batch {
                match message.payload().map(serde_json::from_slice::<OrderEvent>) {
                    Some(Ok(event)) => {
                        let event = event.in_trace(traceparent(message));
                        by_user.entry(event.username.clone()).or_default().push(event)
                    }
                    other => tracing::error!(
                        topic = message.topic(),
                        offset = message.offset(),
                        problem = ?other.map(|r| r.err()),
                        "skipping a record that is not an order event"
                    ),
                }
            }
            let chains = by_user.into_values().map(|events| handle_in_order(&*handler, events));
            futures::future::join_all(chains).await;
            if let Some(last) = batch.last()
                && let Err(e) = consumer.store_offset(last.topic(), last.partition(), last.offset())
            {
                // After a rebalance the partition may belong to another instance now; it will
                // see the records again, and handlers ignore duplicates.
                tracing::warn!(error = %e, "could not store a consumed offset; events may be seen again");
            }
            batch.clear();
        }
    });
    tx
}

/// The record's `traceparent` header, when it has a well-formed one.
fn traceparent(message: &OwnedMessage) -> Option<String> {
    let header = message.headers()?.iter().find(|h| h.key == TRACEPARENT)?;
    let value = std::str::from_utf8(header.value?).ok()?;
    TraceContext::parse(value).map(|_| value.to_owned())
}

/// One user's events, one after another; a failing handler is retried with back-off until it
/// succeeds (the user's later events wait for it). Each is handled in an `event` span, in the
/// trace its record's header names (or a trace of its own), so the handler's logs and calls
/// join the checkout's trace.
async fn handle_in_order(handler: &dyn EventHandler, events: Vec<OrderEvent>) {
    // 100 ms, 200 ms … 3.2 s (each with jitter), for as long as it takes.
    let retry = Retry {
        attempts: u32::MAX,
        backoff: Backoff::Exponential { base: Duration::from_millis(50), max_doublings: 6 },
    };
    for event in events {
        let next = Start::after(event.traceparent.as_deref().and_then(TraceContext::parse));
        let (kind, order_id) = (event.event_type.as_str(), event.order_id);
        let span = match &next {
            Start::Known(c) => tracing::info_span!("event", kind, order_id, trace_id = %c.trace_hex()),
            Start::Exported(_) => {
                tracing::info_span!("event", kind, order_id, trace_id = tracing::field::Empty)
            }
        };
        next.begin(&span);
        let handled = async {
            // Never gives up, so it never answers an error.
            let _ = retry.run("event handler", |_| true, || handler.handle(&event)).await;
            tracing::debug!("handled");
        };
        handled.instrument(span).await;
    }
}

/// The [`EventBus`] of distributed mode: publishes through the bridge actor.
#[derive(Clone)]
pub struct KafkaBus {
    bridge: Addr<KafkaBridge>,
    timeout: Duration,
    lag: Option<ConsumerLag>,
}

impl KafkaBus {
    /// Creates the topics if needed and starts the bridge on the runtime. With a `handler`
    /// (and its consumer `group`), the bridge also consumes `ORDER_EVENTS` into it.
    pub async fn start(
        runtime: &ActorRuntime,
        config: KafkaConfig,
        consume: Option<(&str, Arc<dyn EventHandler>)>,
    ) -> Result<Self, BusError> {
        if config.create_topics {
            ensure_topics(&config).await?;
        }
        let producer = producer(&config)?;
        let mut lag = None;
        let consumer = match consume {
            Some((group, handler)) => {
                let context = LagContext { lag: ConsumerLag::unknown() };
                lag = Some(context.lag.clone());
                let consumer: StreamConsumer<LagContext> = config
                    .client()
                    .set("group.id", group)
                    .set("enable.auto.commit", "true")
                    .set("auto.commit.interval.ms", "500")
                    .set("enable.auto.offset.store", "false")
                    .set("auto.offset.reset", "earliest")
                    // How long an idle partition's fetch is held (see `KafkaConfig::fetch_wait`).
                    // At 10 ms the polls took two thirds of the broker's CPU.
                    .set("fetch.wait.max.ms", config.fetch_wait.as_millis().to_string())
                    .set("session.timeout.ms", "10000")
                    .set("statistics.interval.ms", STATS_INTERVAL)
                    .create_with_context(context)
                    .map_err(kafka_err)?;
                consumer.subscribe(&[ORDER_EVENTS]).map_err(kafka_err)?;
                Some((Arc::new(consumer), handler))
            }
            None => None,
        };
        let timeout = config.send_timeout + Duration::from_secs(5);
        let arbiter = runtime.arbiter_for("kafka-bridge");
        let bridge =
            KafkaBridge::start_in_arbiter(arbiter, move |_| KafkaBridge { producer, config, consumer });
        Ok(Self { bridge, timeout, lag })
    }

    /// Waits (at most `timeout` for each) until every record sent has been acknowledged, and
    /// commits the offsets of what the consumer has handled: for a clean stop.
    pub async fn close(&self, timeout: Duration) -> Result<(), BusError> {
        match self.bridge.send(Close(timeout)).timeout(timeout * 2 + Duration::from_secs(1)).await {
            Ok(result) => result,
            Err(e) => Err(kafka_err(format!("bridge: {e}"))),
        }
    }

    /// The consumer's lag, when the bus consumes.
    pub fn consumer_lag(&self) -> Option<ConsumerLag> {
        self.lag.clone()
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    async fn publish(&self, event: OrderEvent) -> Result<(), BusError> {
        match self.bridge.send(Publish(event)).timeout(self.timeout).await {
            Ok(result) => result,
            Err(e) => Err(kafka_err(format!("bridge: {e}"))),
        }
    }
}
