//! The write-through engine every entity actor runs its commands on.
//!
//! An entity actor (a cart, an order) caches its entity and writes every change through to its
//! store before it answers. One command at a time ([`AtomicResponse`]): while a command awaits
//! storage, no other command of that entity starts, so the cache can be lent to the running
//! command and put back after it. Each command goes:
//!
//! 1. take the cache, or load the entity if there is none;
//! 2. decide: change the entity (or refuse, or answer without a change);
//! 3. write the change; a store that refuses it as based on a stale version
//!    ([`StoreError::Conflict`]) makes the command reload and decide again, up to
//!    [`CONFLICT_ATTEMPTS`] times (the first retry at once, since a stale cache is the usual
//!    cause; later ones after a back-off, since another writer is busy on this entity);
//! 4. keep the entity as the new cache, or drop it when storage failed.
//!
//! Reads, no-ops and refusals write nothing, so no version check would catch a stale cache
//! (another process may share the database): they are answered from freshly loaded state only.
//!
//! An entity writes only [`WriteThrough::decide`], [`WriteThrough::load`] and
//! [`WriteThrough::save`]; [`run`] is the one loop around them.

use actix::prelude::*;

use crate::ports::StoreError;
use crate::registry::Entity;
use crate::retry::Backoff;

/// Stale writes are retried this many times, from freshly loaded state, before the conflict is
/// reported to the caller.
pub(crate) const CONFLICT_ATTEMPTS: u32 = 10;

/// 2, 4, 8 … ms (capped at 64) plus jitter between conflicting writes.
const CONFLICT_BACKOFF: Backoff =
    Backoff::Exponential { base: std::time::Duration::from_millis(1), max_doublings: 6 };

/// What a command came to.
pub(crate) enum Decision<W, X> {
    /// Nothing to store; answer `X`.
    Unchanged(X),
    /// Store the entity (with `W`, what the save needs beyond it), then answer `X`.
    Changed(W, X),
}

/// An entity actor whose commands run on the write-through engine.
pub(crate) trait WriteThrough: Entity {
    type State: Clone + 'static;
    type Command: Clone + 'static;
    /// What a save needs beside the entity (an event to put in the outbox, say).
    type Write: 'static;
    /// What a command answers beside the entity.
    type Extra: 'static;
    /// What the caller gets: the entity and the extra, as the handle shows them.
    type Answer: 'static;
    type Error: From<StoreError> + 'static;

    fn cache(&mut self) -> &mut Option<Self::State>;
    fn deps(&self) -> &Self::Deps;

    async fn load(deps: &Self::Deps, key: &Self::Key) -> Result<Self::State, Self::Error>;
    async fn decide(
        deps: &Self::Deps,
        state: &mut Self::State,
        cmd: Self::Command,
    ) -> Result<Decision<Self::Write, Self::Extra>, Self::Error>;
    /// Stores `state` if the stored version is still the one it was loaded at, answering the new
    /// version; [`StoreError::Conflict`] otherwise.
    async fn save(deps: &Self::Deps, state: &Self::State, write: Self::Write) -> Result<i64, StoreError>;
    fn set_version(state: &mut Self::State, version: i64);
    fn answer(state: Self::State, extra: Self::Extra) -> Self::Answer;

    /// A refusal that a stale cache may have caused: decided again from fresh state.
    fn is_refusal(error: &Self::Error) -> bool;
    /// A storage failure: the cache is dropped, so the next command rebuilds from storage.
    fn is_store_error(error: &Self::Error) -> bool;
    /// The entity does not exist: the actor stops rather than stay alive for nothing.
    fn is_missing(_error: &Self::Error) -> bool {
        false
    }
    /// The state the sender already knows, to start from when nothing is cached (the store's
    /// version check still refuses it if it is stale).
    fn known(_cmd: &Self::Command, _key: &Self::Key) -> Option<Self::State> {
        None
    }
    /// Whether the actor stops once this command has been stored.
    fn passivates_after(_cmd: &Self::Command) -> bool {
        false
    }
}

type Answer<E> = Result<<E as WriteThrough>::Answer, <E as WriteThrough>::Error>;

/// Runs `cmd` on `actor` as described in the module docs: the one handler body of every
/// write-through entity.
pub(crate) fn run<E: WriteThrough>(actor: &mut E, cmd: E::Command) -> AtomicResponse<E, Answer<E>> {
    actor.activation().touch();
    let key = actor.activation().key().clone();
    let deps = actor.deps().clone();
    let passivate = E::passivates_after(&cmd);
    let mut cached = actor.cache().take().or_else(|| E::known(&cmd, &key));
    let work = async move {
        let mut last_conflict = None;
        for attempt in 0..CONFLICT_ATTEMPTS {
            let (mut state, fresh) = match cached.take() {
                Some(state) => (state, false),
                None => (E::load(&deps, &key).await?, true),
            };
            match E::decide(&deps, &mut state, cmd.clone()).await {
                Ok(Decision::Changed(write, extra)) => match E::save(&deps, &state, write).await {
                    Ok(version) => {
                        E::set_version(&mut state, version);
                        return Ok((state, extra));
                    }
                    Err(conflict @ StoreError::Conflict(_)) => {
                        if attempt > 0 {
                            CONFLICT_BACKOFF.wait(attempt).await;
                        }
                        last_conflict = Some(conflict);
                    }
                    Err(e) => return Err(e.into()),
                },
                Ok(Decision::Unchanged(extra)) if fresh => return Ok((state, extra)),
                Err(e) if fresh || !E::is_refusal(&e) => return Err(e),
                // Answered from a cache that may be stale: load and decide again.
                Ok(Decision::Unchanged(_)) | Err(_) => {}
            }
        }
        let conflict =
            last_conflict.unwrap_or_else(|| StoreError::Conflict(format!("{key:?} kept changing")));
        Err(conflict.into())
    };
    AtomicResponse::new(Box::pin(work.into_actor(actor).map(move |result, act, ctx| {
        match &result {
            Ok(_) if passivate => ctx.stop(),
            Ok((state, _)) => *act.cache() = Some(state.clone()),
            Err(e) if E::is_missing(e) => ctx.stop(),
            Err(e) if E::is_store_error(e) => *act.cache() = None,
            Err(_) => {}
        }
        result.map(|(state, extra)| E::answer(state, extra))
    })))
}
