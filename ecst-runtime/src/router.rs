//! Several replicas behind one entry point, each event sent to the replica
//! of its entity type.

use core::any::Any;
use core::convert::Infallible;
use std::collections::HashMap;

use crate::envelope::{decode_header, DataSlot, Header};
use crate::error::{DecodeError, DecodeErrorKind};
use crate::event::StateEvent;
use crate::replica::{Outcome, Replica};

/// Where a routed event went and what it did there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routed {
    /// The entity type (the replica) the event was applied to.
    pub entity: &'static str,
    /// What applying it did.
    pub outcome: Outcome,
}

/// A replica for this entity name is already registered.
#[derive(Debug, thiserror::Error)]
#[error("a replica for entity `{entity}` is already registered")]
pub struct EntityTaken {
    /// The entity name.
    pub entity: &'static str,
}

/// Holds one [`Replica`] per entity type and applies each event to the
/// replica its CloudEvents `type` names.
///
/// ```
/// # use ecst_runtime::{Router, Replica};
/// # fn demo<A: ecst_runtime::StateEvent, B: ecst_runtime::StateEvent>(bytes: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
/// let mut router = Router::new();
/// router.add(Replica::<A>::new())?;
/// router.add(Replica::<B>::new())?;
/// let routed = router.apply_json(bytes)?;
/// println!("{} -> {:?}", routed.entity, routed.outcome);
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct Router {
    routes: HashMap<&'static str, Box<dyn Route>>,
    rejected: u64,
}

impl Router {
    /// A router with no replicas.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the replica of entity `T`.
    pub fn add<T: StateEvent>(&mut self, replica: Replica<T>) -> Result<(), EntityTaken> {
        if self.routes.contains_key(T::ENTITY) {
            return Err(EntityTaken { entity: T::ENTITY });
        }
        self.routes.insert(T::ENTITY, Box::new(replica));
        Ok(())
    }

    /// Decodes a CloudEvents JSON event and applies it to the replica of its
    /// entity type. An event of an entity with no replica is a
    /// [`DecodeErrorKind::UnknownEntity`] error.
    pub fn apply_json(&mut self, json: &[u8]) -> Result<Routed, DecodeError> {
        let (header, slot) = match decode_header(json) {
            Ok(parts) => parts,
            Err(error) => {
                self.rejected += 1;
                return Err(error);
            }
        };
        match self.routes.get_mut(&*header.entity) {
            Some(route) => {
                let outcome = route.apply(header, slot)?;
                Ok(Routed {
                    entity: route.entity(),
                    outcome,
                })
            }
            None => {
                self.rejected += 1;
                Err(header.error(DecodeErrorKind::UnknownEntity))
            }
        }
    }

    /// The replica of entity `T`, if registered.
    pub fn replica<T: StateEvent>(&self) -> Option<&Replica<T>> {
        self.routes
            .get(T::ENTITY)
            .and_then(|route| route.as_any().downcast_ref())
    }

    /// The replica of entity `T`, mutably, if registered.
    pub fn replica_mut<T: StateEvent>(&mut self) -> Option<&mut Replica<T>> {
        self.routes
            .get_mut(T::ENTITY)
            .and_then(|route| route.as_any_mut().downcast_mut())
    }

    /// The registered entity names.
    pub fn entities(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.routes.keys().copied()
    }

    /// Events rejected before reaching a replica (malformed envelopes and
    /// unknown entities). Rejections inside a replica are counted in its
    /// [`ApplyStats`](crate::ApplyStats).
    pub fn rejected(&self) -> u64 {
        self.rejected
    }
}

trait Route: Any {
    fn entity(&self) -> &'static str;
    fn apply(
        &mut self,
        header: Header<'_>,
        slot: DataSlot<'_, Infallible>,
    ) -> Result<Outcome, DecodeError>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: StateEvent> Route for Replica<T> {
    fn entity(&self) -> &'static str {
        T::ENTITY
    }

    fn apply(
        &mut self,
        header: Header<'_>,
        slot: DataSlot<'_, Infallible>,
    ) -> Result<Outcome, DecodeError> {
        self.apply_parts(header, slot.retype())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
