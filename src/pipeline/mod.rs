//! The way in: frames from a source into the bounded queue the writer pool takes them from.
//!
//! [`receiver`] runs a pull source on its own thread; [`intake`] is the same steps for a push
//! source (a device callback hands each frame to the queue itself); [`queue`] is the bounded
//! queue and its overflow policy.

pub mod compress;
pub mod intake;
pub mod queue;
pub mod receiver;
