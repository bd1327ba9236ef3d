//! Incidents the generator can inject, and their textual form
//! `kind:service@start+duration[*intensity]`, e.g. `errors:token-service@30m+15m`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use vigil_core::InvalidInput;
use vigil_core::units::{format_duration, parse_duration};

use crate::topology::{System, Topology};

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentKind {
    /// The service fails a share of its operations (`intensity`, default 0.3) with ERROR
    /// logs and 5xx; callers fail with it.
    Errors,
    /// The service fails almost everything (`intensity`, default 0.95), fast.
    Outage,
    /// The service's own processing time is multiplied by `intensity` (default 4).
    Latency,
    /// The service's `cpu_percent` sits near `intensity` percent (default 93), and its own
    /// processing slows as work queues for the CPU (by `1 / (1 - utilisation)`, at most 4×).
    Cpu,
    /// A share (`intensity`, default 0.8) of the requests that would reach the service never
    /// arrive.
    TrafficDrop,
    /// Calls to the service spend `intensity` more milliseconds on the network (default
    /// 200), between the caller's client span and the service's own span: the service itself
    /// is no slower. Shows as such only with client spans (`Config::client_spans`); without
    /// them it looks like the caller's own time.
    Network,
    /// The service throws on a share of its operations (`intensity`, default 0.3) without
    /// logging it: its span ends early at INFO with no status code, as in traces without
    /// status codes. Only its callers show the failure: their client span records the 500
    /// (`Config::client_spans`), or without client spans their own span logs the upstream
    /// error.
    Exception,
}

impl IncidentKind {
    fn name(self) -> &'static str {
        match self {
            IncidentKind::Errors => "errors",
            IncidentKind::Outage => "outage",
            IncidentKind::Latency => "latency",
            IncidentKind::Cpu => "cpu",
            IncidentKind::TrafficDrop => "traffic-drop",
            IncidentKind::Network => "network",
            IncidentKind::Exception => "exception",
        }
    }

    fn default_intensity(self) -> f64 {
        match self {
            IncidentKind::Errors => 0.3,
            IncidentKind::Outage => 0.95,
            IncidentKind::Latency => 4.0,
            IncidentKind::Cpu => 93.0,
            IncidentKind::TrafficDrop => 0.8,
            IncidentKind::Network => 200.0,
            IncidentKind::Exception => 0.3,
        }
    }
}

/// An incident on one service over an event-time window relative to the generator's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// What goes wrong.
    pub kind: IncidentKind,
    /// The affected service, by name: one of the generated system's (see
    /// [`Incident::check_service`]).
    pub service: String,
    /// Start, relative to the generator's start time.
    pub start: Duration,
    /// How long it lasts.
    pub duration: Duration,
    /// Strength; its meaning depends on `kind`.
    pub intensity: f64,
}

impl Incident {
    /// An incident with the kind's default intensity.
    pub fn new(kind: IncidentKind, service: &str, start: Duration, duration: Duration) -> Self {
        Self {
            kind,
            service: service.to_string(),
            start,
            duration,
            intensity: kind.default_intensity(),
        }
    }

    /// Name of the affected service.
    pub fn service_name(&self) -> &str {
        &self.service
    }

    /// Whether the service is one of `topology`'s.
    pub fn check_service(&self, topology: Topology) -> Result<(), InvalidInput> {
        let system = System::build(topology);
        if system.index(&self.service).is_some() {
            return Ok(());
        }
        const SHOWN: usize = 12;
        let mut names = system.services[..system.services.len().min(SHOWN)].join(", ");
        if system.services.len() > SHOWN {
            names.push_str(", …");
        }
        Err(InvalidInput(format!(
            "invalid incident `{self}`: unknown service `{}` in the {topology} system, expected one of {names}",
            self.service
        )))
    }

    /// Whether the incident is active at `offset` from the generator's start.
    pub fn active_at(&self, offset_micros: i64) -> bool {
        let start = self.start.as_micros() as i64;
        offset_micros >= start && offset_micros < start + self.duration.as_micros() as i64
    }
}

impl fmt::Display for Incident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}@{}+{}*{}",
            self.kind.name(),
            self.service_name(),
            format_duration(self.start),
            format_duration(self.duration),
            self.intensity
        )
    }
}

impl FromStr for Incident {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = || {
            InvalidInput(format!(
                "invalid incident `{s}`: expected `kind:service@start+duration[*intensity]`, \
                 e.g. `errors:token-service@30m+15m`; kinds are errors, outage, latency, cpu, traffic-drop, network, \
                 exception"
            ))
        };
        let (kind, rest) = s.split_once(':').ok_or_else(usage)?;
        let (service, rest) = rest.split_once('@').ok_or_else(usage)?;
        let (start, rest) = rest.split_once('+').ok_or_else(usage)?;
        let (duration, intensity) = match rest.split_once('*') {
            Some((d, i)) => (d, Some(i.parse::<f64>().map_err(|_| usage())?)),
            None => (rest, None),
        };
        let kind = match kind {
            "errors" => IncidentKind::Errors,
            "outage" => IncidentKind::Outage,
            "latency" => IncidentKind::Latency,
            "cpu" => IncidentKind::Cpu,
            "traffic-drop" => IncidentKind::TrafficDrop,
            "network" => IncidentKind::Network,
            "exception" => IncidentKind::Exception,
            _ => return Err(usage()),
        };
        if service.is_empty() {
            return Err(usage());
        }
        Ok(Self {
            kind,
            service: service.to_string(),
            start: parse_duration(start)?,
            duration: parse_duration(duration)?,
            intensity: intensity.unwrap_or(kind.default_intensity()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let i: Incident = "errors:token-service@30m+15m".parse().unwrap();
        assert_eq!(i.kind, IncidentKind::Errors);
        assert_eq!(i.service_name(), "token-service");
        assert_eq!(i.start, Duration::from_secs(1800));
        assert_eq!(i.to_string(), "errors:token-service@30m+15m*0.3");
        assert_eq!(i.to_string().parse::<Incident>().unwrap(), i);
        let nope: Incident = "errors:nope@1m+1m".parse().unwrap();
        let err = nope.check_service(Topology::Deals).unwrap_err().to_string();
        assert!(
            err.contains("unknown service `nope` in the deals system"),
            "{err}"
        );
        assert!(i.check_service(Topology::Deals).is_ok());
        let mesh: Incident = "errors:svc-03@1m+1m".parse().unwrap();
        assert!(mesh.check_service(Topology::Mesh(40)).is_ok());
        assert!(mesh.check_service(Topology::Deals).is_err());
        assert!("boom".parse::<Incident>().is_err());
    }
}
