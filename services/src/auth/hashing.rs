//! Password hashing away from the request path.
//!
//! BCrypt is slow on purpose (tens of milliseconds of CPU per hash), so a burst of logins could
//! take every core away from checkouts. Hashes are therefore computed on a few dedicated threads
//! that run at the lowest CPU priority (nice 19): they use whatever CPU the request path leaves
//! idle and yield to it at once. The scheduler alone does not keep them out of the way on every
//! machine: a virtual CPU kept busy with hashing still slows its sibling (measured in
//! docs/PERFORMANCE.md). So each thread also rests after every hash, long enough that hashing
//! takes at most a set share of its time (`cpu_share`; under contention a hash takes longer, and
//! its rest with it). Requests wait in a bounded queue; when it is full the caller is told to
//! come back later ([`ServiceError::Busy`], 503) instead of queueing without end.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::{ServiceError, ServiceResult};

/// The nice value of the hashing threads: the lowest priority there is.
const HASHING_NICENESS: i32 = 19;

enum Work {
    Hash { password: String, cost: u32 },
    Verify { password: String, hash: String },
}

enum Answer {
    Hash(String),
    Verified(bool),
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Answer, String>>,
}

/// A handle on the hashing threads. Cheap to clone; the threads end when the last handle goes.
#[derive(Clone)]
pub struct PasswordHasher {
    queue: SyncSender<Job>,
    figures: Arc<Figures>,
}

/// What `/metrics` shows of the hashing queue.
#[derive(Debug, Default)]
struct Figures {
    /// Requests queued or being hashed now.
    waiting: std::sync::atomic::AtomicUsize,
    /// Requests refused because the queue was full.
    refused: std::sync::atomic::AtomicU64,
}

/// Counts a request as waiting until it is answered.
struct Waiting<'a>(&'a Figures);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl PasswordHasher {
    /// Starts `threads` hashing threads (at least one) behind a queue of `queue` waiting requests;
    /// each spends at most `cpu_share` (above 0, at most 1) of its time hashing.
    pub fn start(threads: usize, queue: usize, cpu_share: f64) -> ServiceResult<Self> {
        if !(cpu_share > 0.0 && cpu_share <= 1.0) {
            return Err(ServiceError::Invalid(format!(
                "the hashing threads' CPU share must be above 0 and at most 1, not {cpu_share}"
            )));
        }
        let (tx, rx) = sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("shop-hashing-{i}"))
                .spawn(move || work(&rx, cpu_share))
                .map_err(|e| ServiceError::Internal(format!("starting a hashing thread: {e}")))?;
        }
        Ok(Self { queue: tx, figures: Arc::default() })
    }

    pub async fn hash(&self, password: String, cost: u32) -> ServiceResult<String> {
        match self.submit(Work::Hash { password, cost }).await? {
            Answer::Hash(hash) => Ok(hash),
            Answer::Verified(_) => Err(ServiceError::Internal("hashing answered a verification".into())),
        }
    }

    pub async fn verify(&self, password: String, hash: String) -> ServiceResult<bool> {
        match self.submit(Work::Verify { password, hash }).await? {
            Answer::Verified(ok) => Ok(ok),
            Answer::Hash(_) => Err(ServiceError::Internal("hashing answered a hash".into())),
        }
    }

    /// Requests queued or being hashed now, and requests refused so far.
    pub fn queue(&self) -> (usize, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.figures.waiting.load(Relaxed), self.figures.refused.load(Relaxed))
    }

    async fn submit(&self, work: Work) -> ServiceResult<Answer> {
        let (reply, answer) = oneshot::channel();
        self.figures.waiting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _waiting = Waiting(&self.figures);
        match self.queue.try_send(Job { work, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.figures.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(ServiceError::Busy("too many logins at once; try again shortly".into()));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ServiceError::Internal("the hashing threads have stopped".into()));
            }
        }
        answer
            .await
            .map_err(|_| ServiceError::Internal("a hashing thread died".into()))?
            .map_err(ServiceError::Internal)
    }
}

/// How long a thread rests after hashing for `busy`, so that hashing is `cpu_share` of its time.
fn rest_after(busy: Duration, cpu_share: f64) -> Duration {
    busy.mul_f64((1.0 / cpu_share - 1.0).max(0.0))
}

fn work(jobs: &Mutex<Receiver<Job>>, cpu_share: f64) {
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), HASHING_NICENESS) {
        tracing::warn!(error = %e, "could not lower the priority of a password hashing thread");
    }
    loop {
        // Poisoning needs a panic while receiving, which does not happen; stop if it does.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        // Every handle is gone: nothing more will come.
        let Ok(Job { work, reply }) = job else { return };
        let started = Instant::now();
        let answer = match work {
            Work::Hash { password, cost } => {
                bcrypt::hash(password, cost).map(Answer::Hash).map_err(|e| format!("hashing: {e}"))
            }
            Work::Verify { password, hash } => bcrypt::verify(password, &hash)
                .map(Answer::Verified)
                .map_err(|e| format!("checking a password: {e}")),
        };
        // The caller may have given up waiting; then nobody needs the answer.
        let _ = reply.send(answer);
        std::thread::sleep(rest_after(started.elapsed(), cpu_share));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_a_full_queue_is_refused() {
        let hasher = PasswordHasher::start(1, 1, 1.0).expect("threads");
        let hash = hasher.hash("correct horse".into(), 4).await.expect("hash");
        assert!(hasher.verify("correct horse".into(), hash.clone()).await.expect("verify"));
        assert!(!hasher.verify("wrong horse".into(), hash).await.expect("verify"));

        // One thread busy with a slow hash, one request queued: the next ones are refused.
        let answers =
            futures::future::join_all((0..6).map(|_| hasher.hash("correct horse".into(), 12))).await;
        let refused = answers.iter().filter(|a| matches!(a, Err(ServiceError::Busy(_)))).count();
        assert!(refused >= 3, "expected most of the burst to be refused, got {answers:?}");
        assert!(answers.iter().any(Result::is_ok), "the queued requests must still be answered");
    }

    #[test]
    fn a_thread_rests_long_enough_to_keep_to_its_share() {
        let busy = Duration::from_millis(60);
        assert_eq!(rest_after(busy, 1.0), Duration::ZERO);
        assert_eq!(rest_after(busy, 0.5), busy);
        assert_eq!(rest_after(busy, 0.25), Duration::from_millis(180));
        for share in [0.0, -1.0, 1.5, f64::NAN] {
            assert!(
                matches!(PasswordHasher::start(1, 1, share), Err(ServiceError::Invalid(_))),
                "a share of {share} is refused"
            );
        }
    }

    #[tokio::test]
    async fn hashing_threads_run_at_the_lowest_priority() {
        let hasher = PasswordHasher::start(1, 1, 1.0).expect("threads");
        // Once a hash has been answered, the thread has set its priority.
        hasher.hash("x".repeat(8), 4).await.expect("hash");
        let thread = std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .filter_map(Result::ok)
            .find(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "shop-hashing-0")
            })
            .expect("the hashing thread");
        let stat = std::fs::read_to_string(thread.path().join("stat")).expect("stat");
        // The nice value is field 19 of the thread's stat line; fields 3 on follow the ")".
        let nice = stat.rsplit(')').next().and_then(|s| s.split_whitespace().nth(16)).map(str::to_owned);
        assert_eq!(nice.as_deref(), Some("19"), "stat line: {stat}");
    }
}
