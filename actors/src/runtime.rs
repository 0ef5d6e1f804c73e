//! The actix system the core runs on, started on its own thread so that the core can be driven
//! from any tokio program (an axum handler, a `#[tokio::test]`, a benchmark) without that program
//! running actix itself.

use std::hash::{Hash, Hasher};
use std::io;
use std::sync::Mutex;
use std::thread::JoinHandle;

use actix::{Arbiter, ArbiterHandle, System};

/// A running actix system with a fixed set of arbiters (one thread and one single-threaded tokio
/// runtime each). Entity actors are placed on an arbiter chosen by hashing their key, so one
/// entity always lives on one thread while different entities spread over all of them.
pub struct ActorRuntime {
    system: System,
    arbiters: Vec<ArbiterHandle>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ActorRuntime {
    /// Starts the system thread and `arbiters` arbiters (at least one).
    pub fn start(arbiters: usize) -> io::Result<Self> {
        let count = arbiters.max(1);
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("shop-actor-system".into()).spawn(move || {
            let runner = System::new();
            let handles: Vec<ArbiterHandle> = (0..count).map(|_| Arbiter::new().handle()).collect();
            // The receiver only goes away if `start` itself has gone; then nobody needs the system.
            if tx.send((System::current(), handles)).is_ok()
                && let Err(e) = runner.run()
            {
                tracing::error!(error = %e, "actor system stopped with an error");
            }
        })?;
        let (system, arbiters) =
            rx.recv().map_err(|_| io::Error::other("the actor system thread died while starting"))?;
        Ok(Self { system, arbiters, thread: Mutex::new(Some(thread)) })
    }

    /// The arbiter that hosts everything hashed to `key`.
    pub fn arbiter_for<K: Hash + ?Sized>(&self, key: &K) -> &ArbiterHandle {
        &self.arbiters[self.index_for(key)]
    }

    /// The index (in [`ActorRuntime::arbiters`]) of the arbiter that hosts everything hashed to
    /// `key`. A `String` and its `str` hash alike, so a user's cart, checkouts and orders can be
    /// put on one thread and talk to each other without waking another.
    pub fn index_for<K: Hash + ?Sized>(&self, key: &K) -> usize {
        placement(key, self.arbiters.len())
    }

    pub fn arbiters(&self) -> &[ArbiterHandle] {
        &self.arbiters
    }

    /// Stops every actor and arbiter and waits for the system thread to end. Messages sent after
    /// this fail with `MailboxError::Closed`.
    pub fn shutdown(&self) {
        self.system.stop();
        let thread = self.thread.lock().map(|mut t| t.take()).unwrap_or(None);
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("actor system thread panicked");
        }
    }
}

/// Which of `slots` places `key` goes to; the same for a `String` and its `str`.
pub(crate) fn placement<K: Hash + ?Sized>(key: &K, slots: usize) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    // The modulo keeps the index below `slots`, which fits in a usize.
    (h.finish() % slots.max(1) as u64) as usize
}

impl Drop for ActorRuntime {
    fn drop(&mut self) {
        self.system.stop();
    }
}
