//! IO adapters over the sans-IO [`crate::client::Client`].

#[cfg(feature = "blocking")]
pub mod blocking;
