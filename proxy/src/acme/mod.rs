//! Automatic certificates (ACME): ordering, challenges, storage and renewal.

pub mod dns01;
