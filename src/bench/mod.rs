//! `ttx bench …`: each figure measured against a baseline in the same process.

pub mod transport;
