//! Load balancing: choosing the next server of a service.

pub mod round_robin;

pub use round_robin::SmoothWeighted;
