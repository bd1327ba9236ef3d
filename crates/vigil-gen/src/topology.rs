//! The systems the generator simulates: the deals system of the monitoring overview (its
//! services, the endpoints users call and the call tree behind each endpoint), or a larger
//! mesh of services built from a count, for correlation on a topology of realistic size.

use std::fmt;
use std::str::FromStr;

use vigil_core::InvalidInput;

use crate::rng::Rng;

/// The services, in the order metrics are emitted.
pub const SERVICES: [&str; 6] = [
    "api-gateway",
    "auth-service",
    "deal-analysis-service",
    "ai-service",
    "token-service",
    "database",
];

pub(crate) const GATEWAY: usize = 0;
pub(crate) const AUTH: usize = 1;
pub(crate) const DEALS: usize = 2;
pub(crate) const AI: usize = 3;
pub(crate) const TOKEN: usize = 4;
pub(crate) const DB: usize = 5;

/// One span of a request: a service doing an operation, then calling its children in order.
pub(crate) struct Call {
    pub service: usize,
    pub op: &'static str,
    /// Median time the service spends itself, in milliseconds.
    pub self_ms: f64,
    pub children: &'static [Call],
}

pub(crate) struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub weight: f64,
    pub root: Call,
}

const fn call(service: usize, op: &'static str, self_ms: f64, children: &'static [Call]) -> Call {
    Call {
        service,
        op,
        self_ms,
        children,
    }
}

const VERIFY: Call = call(AUTH, "verify_token", 6.0, &[]);

const ENDPOINTS: [Endpoint; 4] = [
    Endpoint {
        method: "POST",
        path: "/api/auth/login",
        weight: 0.15,
        root: call(
            GATEWAY,
            "route",
            2.0,
            &[call(
                AUTH,
                "login",
                12.0,
                &[call(DB, "select_user", 3.0, &[])],
            )],
        ),
    },
    Endpoint {
        method: "GET",
        path: "/api/deals/search",
        weight: 0.40,
        root: call(
            GATEWAY,
            "route",
            2.0,
            &[
                VERIFY,
                call(
                    DEALS,
                    "search_deals",
                    25.0,
                    &[call(DB, "query_deals", 6.0, &[])],
                ),
            ],
        ),
    },
    Endpoint {
        method: "POST",
        path: "/api/deals/analyze",
        weight: 0.25,
        root: call(
            GATEWAY,
            "route",
            2.0,
            &[
                VERIFY,
                call(
                    DEALS,
                    "analyze_deal",
                    40.0,
                    &[
                        call(DB, "load_deal", 4.0, &[]),
                        call(
                            AI,
                            "llm_completion",
                            650.0,
                            &[call(
                                TOKEN,
                                "charge_tokens",
                                10.0,
                                &[call(DB, "update_balance", 3.0, &[])],
                            )],
                        ),
                    ],
                ),
            ],
        ),
    },
    Endpoint {
        method: "GET",
        path: "/api/tokens/balance",
        weight: 0.20,
        root: call(
            GATEWAY,
            "route",
            2.0,
            &[
                VERIFY,
                call(
                    TOKEN,
                    "get_balance",
                    8.0,
                    &[call(DB, "select_balance", 2.0, &[])],
                ),
            ],
        ),
    },
];

/// Which system to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Topology {
    /// The deals system of the monitoring overview: six services, four endpoints.
    #[default]
    Deals,
    /// A mesh of this many services (at least [`Topology::MIN_MESH`]): a gateway, edge
    /// services, two tiers of internal services and databases, with twice as many endpoints
    /// as edge services, each a call tree three to five services deep. The same count gives
    /// the same mesh. Services are `gateway`, `edge-NN`, `svc-NN`, `backend-NN`, `db-NN`.
    Mesh(usize),
}

impl Topology {
    /// The fewest services a mesh has.
    pub const MIN_MESH: usize = 8;
    /// The most.
    pub const MAX_MESH: usize = 500;
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topology::Deals => f.write_str("deals"),
            Topology::Mesh(n) => write!(f, "mesh:{n}"),
        }
    }
}

impl FromStr for Topology {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            InvalidInput(format!(
                "invalid topology `{s}`: expected `deals` or `mesh:N` with N services from {} to {}",
                Topology::MIN_MESH,
                Topology::MAX_MESH
            ))
        };
        match s.split_once(':') {
            None if s == "deals" => Ok(Topology::Deals),
            Some(("mesh", n)) => match n.parse::<usize>() {
                Ok(n) if (Topology::MIN_MESH..=Topology::MAX_MESH).contains(&n) => {
                    Ok(Topology::Mesh(n))
                }
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// One span of a request in a built system: a service doing an operation, then calling its
/// children in order.
pub(crate) struct Node {
    pub service: usize,
    pub op: String,
    /// Median time the service spends itself, in milliseconds.
    pub self_ms: f64,
    pub children: Vec<Node>,
}

impl Node {
    fn from_call(c: &Call) -> Self {
        Self {
            service: c.service,
            op: c.op.to_string(),
            self_ms: c.self_ms,
            children: c.children.iter().map(Node::from_call).collect(),
        }
    }

    fn leaf(service: usize, op: String, self_ms: f64) -> Self {
        Self {
            service,
            op,
            self_ms,
            children: Vec::new(),
        }
    }

    /// Whether `service` takes part in this call tree.
    pub(crate) fn involves(&self, service: usize) -> bool {
        self.service == service || self.children.iter().any(|c| c.involves(service))
    }
}

/// An endpoint of a built system.
pub(crate) struct Route {
    pub method: &'static str,
    pub path: String,
    pub weight: f64,
    pub root: Node,
}

/// A system the generator runs: its services and the call tree behind each endpoint.
pub(crate) struct System {
    pub services: Vec<String>,
    pub routes: Vec<Route>,
    /// The deals system's auth service (it rejects a share of tokens), if there is one.
    pub auth: Option<usize>,
    /// Which services are databases (they log no CRITICAL and report their connections).
    pub database: Vec<bool>,
    deals: bool,
}

impl System {
    pub(crate) fn build(t: Topology) -> Self {
        match t {
            Topology::Deals => Self {
                services: SERVICES.iter().map(|s| s.to_string()).collect(),
                routes: ENDPOINTS
                    .iter()
                    .map(|e| Route {
                        method: e.method,
                        path: e.path.to_string(),
                        weight: e.weight,
                        root: Node::from_call(&e.root),
                    })
                    .collect(),
                auth: Some(AUTH),
                database: (0..SERVICES.len()).map(|s| s == DB).collect(),
                deals: true,
            },
            Topology::Mesh(n) => Self::mesh(n),
        }
    }

    /// A mesh of `n` services: a gateway; of the rest a sixth databases, then a quarter edge
    /// services, half internal services and the rest backends. Every endpoint enters at the
    /// gateway, goes to an edge service and on to two or three internal services, each of
    /// which calls its backends (or a database when there are none), every other one a
    /// database too; backends call a database. Every service is on some endpoint's path.
    fn mesh(n: usize) -> Self {
        let n = n.clamp(Topology::MIN_MESH, Topology::MAX_MESH);
        // Its own stream: the mesh depends on `n` alone, not on the traffic's seed.
        let mut rng = Rng::new(0x6d65_7368 ^ n as u64);
        let dbs = ((n - 1) / 6).max(1);
        let apps = n - 1 - dbs;
        let edges = (apps / 4).max(1);
        let mids = ((apps - edges) / 2).max(1);
        let backs = apps - edges - mids;
        let mut services = vec!["gateway".to_string()];
        let mut tier = |prefix: &str, count: usize| {
            let first = services.len();
            services.extend((1..=count).map(|i| format!("{prefix}-{i:02}")));
            (first..first + count).collect::<Vec<usize>>()
        };
        let edge = tier("edge", edges);
        let mid = tier("svc", mids);
        let back = tier("backend", backs);
        let db = tier("db", dbs);
        let mut ms = |lo: f64, hi: f64| lo + (hi - lo) * rng.f64();
        // Each internal service calls one backend (or a database when there are none), and a
        // database half the time; each backend a database.
        let back_node = |b: usize, ms: &mut dyn FnMut(f64, f64) -> f64| {
            let d = db[b % db.len()];
            Node {
                service: back[b],
                op: format!("handle_{:02}", b + 1),
                self_ms: ms(3.0, 15.0),
                children: vec![Node::leaf(d, "query".into(), ms(1.0, 6.0))],
            }
        };
        let mid_node = |m: usize, ms: &mut dyn FnMut(f64, f64) -> f64| {
            let mut children = Vec::new();
            if back.is_empty() {
                children.push(Node::leaf(db[m % db.len()], "query".into(), ms(1.0, 6.0)));
            } else {
                // The backends dealt round the internal services: each has one at least,
                // and every backend is called.
                let mine: Vec<usize> = (m..back.len()).step_by(mid.len()).collect();
                if mine.is_empty() {
                    children.push(back_node(m % back.len(), ms));
                }
                for b in mine {
                    children.push(back_node(b, ms));
                }
            }
            if m % 2 == 1 {
                children.push(Node::leaf(
                    db[(m / 2) % db.len()],
                    "lookup".into(),
                    ms(1.0, 4.0),
                ));
            }
            Node {
                service: mid[m],
                op: format!("process_{:02}", m + 1),
                self_ms: ms(5.0, 30.0),
                children,
            }
        };
        let routes_n = 2 * edges;
        let mut routes = Vec::with_capacity(routes_n);
        let mut next_mid = 0;
        for r in 0..routes_n {
            let fan = if r % 3 == 2 { 3 } else { 2 };
            let children = (0..fan)
                .map(|_| {
                    let m = next_mid % mid.len();
                    next_mid += 1;
                    mid_node(m, &mut ms)
                })
                .collect();
            let e = r % edge.len();
            let root = Node {
                service: 0,
                op: "route".into(),
                self_ms: 2.0,
                children: vec![Node {
                    service: edge[e],
                    op: format!("serve_{:02}", r + 1),
                    self_ms: ms(2.0, 10.0),
                    children,
                }],
            };
            routes.push(Route {
                method: if r % 2 == 0 { "GET" } else { "POST" },
                path: format!("/api/v1/route-{:02}", r + 1),
                weight: ms(0.5, 2.0),
                root,
            });
        }
        let database = (0..services.len()).map(|s| db.contains(&s)).collect();
        Self {
            services,
            routes,
            auth: None,
            database,
            deals: false,
        }
    }

    /// Index of a service by name.
    pub(crate) fn index(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s == name)
    }

    /// Message a service logs when it fails on its own account.
    pub(crate) fn failure_message(&self, service: usize) -> &'static str {
        if self.database[service] {
            return "Database connection failed: connection pool exhausted";
        }
        if !self.deals {
            return "Request failed: unexpected exception";
        }
        match service {
            GATEWAY => "Request handling failed: internal error",
            AUTH => "Token verification failed: signing key unavailable",
            DEALS => "Deal analysis failed: unexpected exception",
            AI => "LLM API call failed: upstream returned 500",
            _ => "Token service unavailable: ledger write failed",
        }
    }

    /// Message a service logs when an operation succeeds.
    pub(crate) fn success_message(&self, service: usize, op: &str) -> &'static str {
        if self.database[service] {
            return "Query executed";
        }
        if !self.deals {
            return "Request completed";
        }
        match (service, op) {
            (GATEWAY, _) => "Request completed",
            (AUTH, "login") => "User successfully logged in",
            (AUTH, _) => "Token verified",
            (DEALS, "search_deals") => "Deal search completed",
            (DEALS, _) => "Deal analysis completed successfully",
            (AI, _) => "LLM completion finished",
            (TOKEN, "charge_tokens") => "Tokens charged",
            _ => "Balance retrieved",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_service_of_a_mesh_is_on_some_path_and_the_same_count_gives_the_same_mesh() {
        for n in (Topology::MIN_MESH..=80).chain([Topology::MAX_MESH]) {
            let m = System::build(Topology::Mesh(n));
            assert_eq!(m.services.len(), n);
            let names: BTreeSet<&String> = m.services.iter().collect();
            assert_eq!(names.len(), n, "names are unique");
            for s in 0..n {
                assert!(
                    m.routes.iter().any(|r| r.root.involves(s)),
                    "{n} services: {} is on no path",
                    m.services[s]
                );
            }
            assert!(m.database.iter().any(|d| *d));
            let again = System::build(Topology::Mesh(n));
            let ops = |s: &System| {
                s.routes
                    .iter()
                    .map(|r| (r.path.clone(), r.weight.to_bits()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(ops(&m), ops(&again));
        }
    }

    #[test]
    fn topologies_parse_and_print() {
        assert_eq!("deals".parse::<Topology>().unwrap(), Topology::Deals);
        assert_eq!("mesh:40".parse::<Topology>().unwrap(), Topology::Mesh(40));
        assert_eq!(Topology::Mesh(40).to_string(), "mesh:40");
        for bad in ["mesh", "mesh:7", "mesh:501", "mesh:x", "star:10", ""] {
            assert!(bad.parse::<Topology>().is_err(), "{bad}");
        }
    }
}
