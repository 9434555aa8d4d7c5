//! framerec: records high-rate sensor frames to disk through a pool of io_uring writers, and
//! never loses a frame without saying so.
//!
//! Data flows one way:
//! [`source`] -> [`pipeline`] (receiver, queue) -> [`sink`] (writer pool, layouts; files through
//! [`io`]) -> [`segment`] (the MCAP format),
//! with [`observe`] (and its interval logs, [`hlog`]) beside them and [`config`] and [`recorder`] at the edge. [`frame`] is the
//! bottom layer they all share.
#![deny(unsafe_code)]

pub mod config;
pub mod control;
pub mod export;
mod failpoint;
pub mod frame;
pub mod hlog;
pub mod io;
pub mod ledger;
pub mod observe;
pub mod pipeline;
pub mod plot;
pub mod recorder;
pub mod repair;
pub mod segment;
pub mod serve;
pub mod service;
pub mod sink;
pub mod socket_path;
pub mod source;
pub mod stop;
pub mod store;
pub mod tune;
pub mod wake;
