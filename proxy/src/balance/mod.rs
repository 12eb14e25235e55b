//! Load balancing: choosing the next server of a service.

pub mod choose;
pub mod hash;
pub mod load;
pub mod round_robin;
pub mod sticky;

pub use choose::{Affinity, Balancing, Strategy};
pub use load::{Loads, ServerLoad};
pub use round_robin::SmoothWeighted;
pub use sticky::Sticky;
