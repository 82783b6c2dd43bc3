//! The domain core: what an event is, how it is encoded, hashed, sealed and
//! verified. Pure: it must never import actix, rusqlite or tokio, nor touch
//! files or the clock except through its callers (architecture invariant 7).

pub mod chain;
pub mod error;
pub mod event;
pub mod filter;
pub mod json;
pub mod policy;
pub mod verify;

pub use chain::{Anchor, Hash, HmacKey, KeyId, Keyring, GENESIS};
pub use error::{FieldError, InputError};
pub use event::{EventId, EventType, Level, NewEvent, Placement};
pub use filter::{EventMatch, Filter, FilterInput};
pub use policy::{DropPolicy, Dropped};
pub use verify::{Checker, Failure, FailureKind, Report, Row};
