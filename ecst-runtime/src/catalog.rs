//! Every event type of a program, with its versions and schemas.
//!
//! `#[derive(StateEvent)]` registers each type it derives (through the
//! `inventory` crate: a static constructor per type, collected at start-up),
//! so [`Catalog::registered`] lists them all without a hand-kept list.
//!
//! The trade-off: registration happens at link time, so a type is listed only
//! if its crate is linked into the running binary. Call
//! `ecst::schema::assert_lock` (crate `ecst-schema`) from a test *inside the crate that
//! defines the event types* (a unit test in its `lib.rs`, or an integration
//! test that uses the crate), and every type is there. Where that is not
//! wanted (an example, a tool checking two generations of one entity), build
//! a catalog by hand with [`Catalog::with`].

use core::fmt;

use serde_json::Value;

use crate::compatibility::Mode;
use crate::event::StateEvent;

/// One event type as the catalog knows it.
#[derive(Clone, Copy)]
pub struct EventType {
    entity: &'static str,
    version: u32,
    compatibility: Mode,
    type_name: fn() -> &'static str,
    schema: fn(u32) -> Option<schemars::Schema>,
}

impl EventType {
    /// The catalog entry of `T`.
    pub const fn of<T: StateEvent>() -> Self {
        EventType {
            entity: T::ENTITY,
            version: T::VERSION,
            compatibility: T::COMPATIBILITY,
            type_name: core::any::type_name::<T>,
            schema: T::schema,
        }
    }

    /// The entity name (CloudEvents `type`).
    pub fn entity(&self) -> &'static str {
        self.entity
    }

    /// The newest schema version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The compatibility mode declared for new versions of this type.
    pub fn compatibility(&self) -> Mode {
        self.compatibility
    }

    /// The Rust type's name.
    pub fn type_name(&self) -> &'static str {
        (self.type_name)()
    }

    /// The JSON Schema of `version` as JSON.
    pub fn schema(&self, version: u32) -> Option<Value> {
        (self.schema)(version).map(|schema| schema.to_value())
    }

    /// The JSON Schema of every version, oldest first.
    pub fn schemas(&self) -> Vec<(u32, Value)> {
        (1..=self.version)
            .filter_map(|v| self.schema(v).map(|s| (v, s)))
            .collect()
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventType")
            .field("entity", &self.entity)
            .field("version", &self.version)
            .field("compatibility", &self.compatibility)
            .field("type", &self.type_name())
            .finish()
    }
}

/// What `#[derive(StateEvent)]` submits for each type.
#[doc(hidden)]
pub struct Registration(pub EventType);

inventory::collect!(Registration);

/// Two types claim the same entity name.
#[derive(Debug, thiserror::Error)]
#[error(
    "entity `{entity}` is declared by both `{first}` and `{second}`: entity names must be unique"
)]
pub struct DuplicateEntity {
    /// The entity name.
    pub entity: &'static str,
    /// The type registered first.
    pub first: &'static str,
    /// The other type.
    pub second: &'static str,
}

/// A list of event types, sorted by entity name.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    types: Vec<EventType>,
}

impl Catalog {
    /// An empty catalog, to fill with [`Catalog::with`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Every type `#[derive(StateEvent)]` registered in this binary.
    pub fn registered() -> Result<Self, DuplicateEntity> {
        let mut catalog = Catalog::new();
        for registration in inventory::iter::<Registration> {
            catalog.insert(registration.0)?;
        }
        Ok(catalog)
    }

    /// This catalog plus `T`.
    pub fn with<T: StateEvent>(mut self) -> Result<Self, DuplicateEntity> {
        self.insert(EventType::of::<T>())?;
        Ok(self)
    }

    /// Adds an entry.
    pub fn insert(&mut self, entry: EventType) -> Result<(), DuplicateEntity> {
        match self.types.binary_search_by(|t| t.entity.cmp(entry.entity)) {
            Ok(i) => Err(DuplicateEntity {
                entity: entry.entity,
                first: self.types[i].type_name(),
                second: entry.type_name(),
            }),
            Err(i) => {
                self.types.insert(i, entry);
                Ok(())
            }
        }
    }

    /// The entry of `entity`.
    pub fn get(&self, entity: &str) -> Option<&EventType> {
        self.types
            .binary_search_by(|t| t.entity.cmp(entity))
            .ok()
            .map(|i| &self.types[i])
    }

    /// The entries, sorted by entity name.
    pub fn iter(&self) -> impl Iterator<Item = &EventType> + '_ {
        self.types.iter()
    }

    /// The number of event types.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// `true` when there is no event type.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
}
