//! The deals system of the monitoring overview: its services, the endpoints users call and the
//! call tree behind each endpoint.

/// The services, in the order metrics are emitted.
pub const SERVICES: [&str; 6] = [
    "api-gateway",
    "auth-service",
    "deal-analysis-service",
    "ai-service",
    "token-service",
    "database",
];

/// Index of a service in [`SERVICES`].
pub fn service_index(name: &str) -> Option<usize> {
    SERVICES.iter().position(|s| *s == name)
}

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

pub(crate) const ENDPOINTS: [Endpoint; 4] = [
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

impl Call {
    /// Whether `service` takes part in this call tree.
    pub(crate) fn involves(&self, service: usize) -> bool {
        self.service == service || self.children.iter().any(|c| c.involves(service))
    }
}

/// Message a service logs when it fails on its own account.
pub(crate) fn failure_message(service: usize) -> &'static str {
    match service {
        GATEWAY => "Request handling failed: internal error",
        AUTH => "Token verification failed: signing key unavailable",
        DEALS => "Deal analysis failed: unexpected exception",
        AI => "LLM API call failed: upstream returned 500",
        TOKEN => "Token service unavailable: ledger write failed",
        _ => "Database connection failed: connection pool exhausted",
    }
}

/// Message a service logs when an operation succeeds.
pub(crate) fn success_message(service: usize, op: &str) -> &'static str {
    match (service, op) {
        (GATEWAY, _) => "Request completed",
        (AUTH, "login") => "User successfully logged in",
        (AUTH, _) => "Token verified",
        (DEALS, "search_deals") => "Deal search completed",
        (DEALS, _) => "Deal analysis completed successfully",
        (AI, _) => "LLM completion finished",
        (TOKEN, "charge_tokens") => "Tokens charged",
        (TOKEN, _) => "Balance retrieved",
        _ => "Query executed",
    }
}
