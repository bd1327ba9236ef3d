//! SQL over the Postgres wire protocol: `psql`, Grafana's Postgres data source, any driver.
//!
//! pgwire speaks the protocol; datafusion-postgres lends what makes clients feel at home: the
//! Postgres dialect (its parser's rewrites), the `pg_catalog` tables and functions clients read
//! for metadata, the encoding of Arrow columns as Postgres types, and the answers to `SET`,
//! `SHOW` and `BEGIN`/`COMMIT` that drivers send on their own. vigil keeps the rest:
//!
//! - **Authentication** is SCRAM-SHA-256 against one user (`VIGIL_SQL_USER` /
//!   `VIGIL_SQL_PASSWORD`); the server keeps only the salted hash. A wrong user fails exactly
//!   like a wrong password. No authentication only when asked for by name.
//! - **Every statement reads a fresh snapshot** of the archive, so the long-lived connections
//!   of a client's pool never serve stale data (a prepared statement re-plans when it runs).
//! - **Read-only by plan**: every statement is planned and the plan checked
//!   ([`crate::Engine::statement_stream`]) before anything runs; `SET` of DataFusion options
//!   is refused, the client settings drivers send (`statement_timeout`, `DateStyle`,
//!   `TimeZone`, ...) are kept per connection.
//! - **Limits**: each statement has its own memory pool and the server's deadline, shortened by
//!   the client's `statement_timeout`; the deadline covers streaming the rows.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::QueryHook;
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters;
use datafusion_postgres::arrow_pg::datatypes::{
    arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type,
};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire;
use futures::{Sink, StreamExt, stream};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password, random_nonce};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::types::format::FormatOptions;
use tokio::net::TcpListener;
use vigil_core::ErrorKind;
use vigil_store::Archive;

use crate::{Engine, QueryError, QueryLimits, Served, Sessions};

/// SCRAM iterations the client hashes the password with (Postgres' own default).
const SCRAM_ITERATIONS: usize = 4096;

/// The catalog every table lives in; `current_database()` answers with it.
const CATALOG: &str = "datafusion";

/// What the Postgres-wire server serves and how.
#[derive(Clone)]
pub struct PgConfig {
    /// The archive every statement reads.
    pub archive: Archive,
    /// Each statement's limits.
    pub limits: QueryLimits,
    /// The user clients log in as; `None` only with `--insecure-no-auth`.
    pub login: Option<Login>,
}

/// One user and the salted hash of their password (the password itself is not kept).
#[derive(Clone)]
pub struct Login {
    user: String,
    salt: Vec<u8>,
    salted: Vec<u8>,
}

impl Login {
    /// A user with a password, hashed at once with a fresh random salt.
    pub fn new(user: &str, password: &str) -> Self {
        let salt = random_nonce().into_bytes();
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        Self {
            user: user.to_owned(),
            salt,
            salted,
        }
    }
}

impl Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").field("user", &self.user).finish()
    }
}

// The trait's signature elides `LoginInfo`'s lifetime; async-trait needs the same spelling.
#[allow(elided_lifetimes_in_paths)]
#[async_trait]
impl AuthSource for Login {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        if login.user() == Some(self.user.as_str()) {
            return Ok(Password::new(Some(self.salt.clone()), self.salted.clone()));
        }
        // Another user: a hash no password produces, so the exchange fails as a wrong
        // password does, without telling the client which of the two was wrong.
        let nothing = gen_salted_password(&random_nonce(), &self.salt, SCRAM_ITERATIONS);
        Ok(Password::new(Some(self.salt.clone()), nothing))
    }
}

/// Serves `config` on `listener` until the future is dropped.
pub async fn serve_pg(listener: TcpListener, config: PgConfig) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        sessions: Sessions::new(config.archive, config.limits, |ctx| {
            setup_pg_catalog(ctx, CATALOG, EmptyContextProvider)
                .map_err(|e| QueryError::DataFusion(*e))
        }),
        dialect: PostgresCompatibilityParser::new(),
    });
    let handlers = Arc::new(Handlers {
        service: Arc::new(Service {
            parser: Arc::new(Parser(shared.clone())),
            shared,
        }),
        login: config.login.map(Arc::new),
    });
    loop {
        let (socket, peer) = listener.accept().await?;
        let handlers = handlers.clone();
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                tracing::debug!(%peer, error = %e, "postgres connection ended");
            }
        });
    }
}

/// One connection's handlers: the shared query service and a fresh authenticator (SCRAM
/// keeps per-connection state).
struct Handlers {
    service: Arc<Service>,
    login: Option<Arc<Login>>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(match &self.login {
            Some(login) => {
                let mut scram = ScramAuth::new(login.clone());
                scram.set_iterations(SCRAM_ITERATIONS);
                Startup::Scram(
                    SASLAuthStartupHandler::new(
                        Arc::new(DefaultServerParameterProvider::default()),
                    )
                    .with_scram(scram),
                )
            }
            None => Startup::Open(Open),
        })
    }
}

/// SCRAM-SHA-256, or nothing with `--insecure-no-auth`.
enum Startup {
    Scram(SASLAuthStartupHandler<DefaultServerParameterProvider>),
    Open(Open),
}

/// Lets every client in.
struct Open;

impl NoopStartupHandler for Open {}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Startup::Scram(h) => h.on_startup(client, message).await,
            Startup::Open(h) => h.on_startup(client, message).await,
        }
    }
}

/// What every connection shares.
struct Shared {
    /// Sessions with Postgres' catalog.
    sessions: Sessions,
    dialect: PostgresCompatibilityParser,
}

/// A statement between `Parse` and `Execute`: its text, and its parsed form with the plan
/// that describes its parameters and columns. (datafusion-postgres' own shape, which its
/// hooks expect of the connection's portal store.)
type Prepared = (String, Option<(Statement, LogicalPlan)>);

struct Service {
    shared: Arc<Shared>,
    parser: Arc<Parser>,
}

struct Parser(Arc<Shared>);

impl Shared {
    fn parse(&self, sql: &str) -> PgWireResult<Vec<Statement>> {
        self.dialect
            .parse(sql)
            .map_err(|e| user_error("42601", format!("syntax error: {e}")))
    }

    /// A session over a fresh snapshot of the archive, with Postgres' catalog.
    async fn engine(&self) -> Result<Engine, QueryError> {
        self.sessions.engine().await
    }

    /// Runs one query and streams its rows in `format`.
    async fn query(
        &self,
        client: &(dyn ClientInfo + Send + Sync),
        statement: Statement,
        params: Option<ParamValues>,
        format: &Format,
    ) -> PgWireResult<Response> {
        let served = Served::start("pg");
        let engine = match self.engine().await {
            Ok(e) => e,
            Err(e) => return Err(to_pg(ended(served, e))),
        };
        let statement = DfStatement::Statement(Box::new(statement));
        let rows = match engine
            .statement_stream(statement, params, statement_timeout(client))
            .await
        {
            Ok(rows) => rows,
            Err(e) => return Err(to_pg(ended(served, e))),
        };
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let fields = Arc::new(arrow_schema_to_pg_fields(
            &rows.schema(),
            format,
            Some(options),
        )?);
        let encode = fields.clone();
        // The statement ends when its last row is sent, or its first error.
        let batches = stream::unfold((rows, Some(served)), |(mut rows, served)| async move {
            let batch = rows.next().await;
            match batch {
                Some(Ok(b)) => Some((Ok(b), (rows, served))),
                Some(Err(e)) => {
                    let e = match served {
                        Some(s) => ended(s, e),
                        None => e,
                    };
                    Some((Err(e), (rows, None)))
                }
                None => {
                    if let Some(s) = served {
                        s.end::<()>(&Ok(()));
                    }
                    None
                }
            }
        });
        let rows = batches.flat_map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send> = match batch {
                Ok(batch) => encode_recordbatch(encode.clone(), batch),
                Err(e) => Box::new(std::iter::once(Err(to_pg(e)))),
            };
            stream::iter(rows)
        });
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }
}

/// Answers the statements a driver sends about its session (`SET`, `SHOW`, `BEGIN`, ...);
/// `None` for everything else. They act on the connection, never on the archive, and get a
/// throwaway session so nothing set there can reach another statement.
async fn session_statement(
    statement: &Statement,
    client: &mut dyn HookClient,
    extended: Option<&LogicalPlan>,
) -> Option<PgWireResult<Response>> {
    if let Statement::Set(set) = statement
        && set.to_string().to_lowercase().contains("datafusion.")
    {
        return Some(Err(user_error(
            "25006",
            format!("{set}: the server's DataFusion options cannot be changed over the wire"),
        )));
    }
    let hooks: [&dyn QueryHook; 2] = [&SetShowHook, &TransactionStatementHook];
    let session = SessionContext::new();
    for hook in hooks {
        let answer = match extended {
            None => hook.handle_simple_query(statement, &session, client).await,
            Some(plan) => {
                let none = ParamValues::List(vec![]);
                hook.handle_extended_query(statement, plan, &none, &session, client)
                    .await
            }
        };
        if answer.is_some() {
            return answer;
        }
    }
    None
}

/// Whether a session-statement hook plans `statement` itself (for `Describe`).
async fn session_plan(
    statement: &Statement,
    client: &(dyn ClientInfo + Send + Sync),
) -> Option<PgWireResult<LogicalPlan>> {
    let hooks: [&dyn QueryHook; 2] = [&SetShowHook, &TransactionStatementHook];
    let session = SessionContext::new();
    for hook in hooks {
        if let Some(plan) = hook
            .handle_extended_parse_query(statement, &session, client)
            .await
        {
            return Some(plan);
        }
    }
    None
}

#[async_trait]
impl SimpleQueryHandler for Service {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = self.shared.parse(query)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut answers = Vec::with_capacity(statements.len());
        for statement in statements {
            if let Some(answer) = session_statement(&statement, client, None).await {
                answers.push(answer?);
                continue;
            }
            let text = Format::UnifiedText;
            answers.push(self.shared.query(client, statement, None, &text).await?);
        }
        Ok(answers)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Service {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (_, Some((statement, plan))) = &portal.statement.statement else {
            return Ok(Response::EmptyQuery);
        };
        if let Some(answer) = session_statement(statement, client, Some(plan)).await {
            return answer;
        }
        let types = parameter_types(plan)?;
        let params = if types.is_empty() {
            None
        } else {
            let types: Vec<_> = types.iter().map(|(_, t)| t.as_ref()).collect();
            Some(deserialize_parameters(portal, &types)?)
        };
        // Planned again on a fresh snapshot: a statement prepared an hour ago reads today.
        self.shared
            .query(
                client,
                statement.clone(),
                params,
                &portal.result_column_format,
            )
            .await
    }
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = self.0.parse(sql)?;
        if statements.is_empty() {
            return Ok(None);
        }
        if statements.len() > 1 {
            return Err(user_error(
                "42601",
                "a prepared statement holds one statement".to_owned(),
            ));
        }
        let statement = statements.remove(0);
        let plan = match session_plan(&statement, client).await {
            Some(plan) => plan?,
            None => {
                let engine = self.0.engine().await.map_err(to_pg)?;
                let parsed = DfStatement::Statement(Box::new(statement.clone()));
                engine.describe(parsed).await.map_err(to_pg)?
            }
        };
        Ok(Some((sql.to_owned(), Some((statement, plan)))))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        let (_, Some((_, plan))) = stmt else {
            return Ok(vec![]);
        };
        parameter_types(plan)?
            .into_iter()
            .map(|(_, t)| t.map_or(Ok(Type::UNKNOWN), |t| into_pg_type(&t)))
            .collect()
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let (_, Some((_, plan))) = stmt else {
            return Ok(vec![]);
        };
        arrow_schema_to_pg_fields(
            plan.schema().as_arrow(),
            format.unwrap_or(&Format::UnifiedText),
            None,
        )
    }
}

/// The plan's parameters `$1`, `$2`, ... in order, with the types DataFusion inferred.
fn parameter_types(
    plan: &LogicalPlan,
) -> PgWireResult<Vec<(usize, Option<datafusion::arrow::datatypes::DataType>)>> {
    let types = plan
        .get_parameter_types()
        .map_err(|e| to_pg(QueryError::DataFusion(e)))?;
    let mut ordered: Vec<_> = types
        .into_iter()
        .filter_map(|(name, t)| Some((name.strip_prefix('$')?.parse::<usize>().ok()?, t)))
        .collect();
    ordered.sort_by_key(|(n, _)| *n);
    Ok(ordered)
}

/// Counts a statement that ended in `e`, and passes `e` on.
fn ended(served: Served, e: QueryError) -> QueryError {
    served.failed(&e);
    e
}

/// The client's `statement_timeout`, which datafusion-postgres' `SET` hook keeps in the
/// connection's metadata.
fn statement_timeout(client: &(dyn ClientInfo + Send + Sync)) -> Option<Duration> {
    client
        .metadata()
        .get("statement_timeout_ms")
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}

/// A query error as Postgres reports it, with the SQLSTATE a client can act on.
fn to_pg(e: QueryError) -> PgWireError {
    let code = match &e {
        QueryError::ReadOnly(_) => "25006",
        // Both timeouts as Postgres's `statement_timeout` reports one: query_canceled (what
        // drivers raise as a cancelled query, psycopg's `QueryCanceled`), as the HTTP server
        // answers both with 503.
        QueryError::Timeout(_) | QueryError::OpenTimeout(_) => "57014",
        QueryError::DataFusion(datafusion::error::DataFusionError::ResourcesExhausted(_)) => {
            "53200"
        }
        _ => match e.kind() {
            ErrorKind::User => "42000",
            ErrorKind::External => "58000",
            ErrorKind::Internal => "XX000",
        },
    };
    user_error(code, e.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn code(e: QueryError) -> String {
        match to_pg(e) {
            PgWireError::UserError(info) => info.code,
            other => panic!("not a user error: {other:?}"),
        }
    }

    #[test]
    fn a_statement_or_an_archive_that_does_not_answer_in_time_is_query_canceled() {
        assert_eq!(code(QueryError::Timeout(Duration::from_secs(1))), "57014");
        assert_eq!(
            code(QueryError::OpenTimeout(Duration::from_secs(1))),
            "57014"
        );
        assert_eq!(code(QueryError::ReadOnly("DELETE".into())), "25006");
    }
}
