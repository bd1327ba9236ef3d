//! A deterministic generator of realistic telemetry for the deals system of the monitoring
//! overview: requests enter at `api-gateway` and fan out through `auth-service`,
//! `deal-analysis-service`, `ai-service`, `token-service` and `database` as traces (one log
//! line per span, in the seed's log format), and every service reports metrics every
//! `metrics_interval` (10 s by default). [`Topology::Mesh`] simulates a larger system instead
//! (tens of services, endpoints three to five services deep).
//!
//! ```text
//! [generator] ─► NDJSON logs + metrics ─► sources / files / Kafka ─► decode ─► ...
//! ```
//!
//! Incidents can be injected: errors, outages, latency, CPU saturation or a traffic drop on one
//! service, over an event-time window. Failures propagate to callers the way they do in a real
//! system, so the gateway's availability drops when `token-service` fails. The same seed gives
//! the same bytes.
#![warn(missing_docs)]

mod generator;
mod incident;
mod rng;
mod topology;

pub use generator::{Config, Generator, MAX_RATE};
pub use incident::{Incident, IncidentKind};
pub use rng::Rng;
pub use topology::{SERVICES, Topology};
