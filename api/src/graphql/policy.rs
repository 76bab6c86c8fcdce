//! Request policy: the one layer every GraphQL request passes through, over HTTP
//! and WebSocket alike. Before parsing it bounds nesting and refuses NUL; after
//! parsing it bounds depth (introspection excluded) and allows one `login` per
//! request; before executing a mutation it charges the caller's budget one token
//! per root field, aliases included. Login attempts are charged per username and
//! per client address, before any password is hashed.

use std::sync::{Arc, Mutex};

use aiops_engine::Principal;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Context, Request, Response, ServerError, ServerResult, Variables};

use super::error::bad_request;
use super::input_checks::{self, MAX_DEPTH};
use super::limits::RateLimiter;
use crate::ClientAddr;

/// Budgets shared by every request of a server.
pub struct Budgets {
    mutations: RateLimiter,
    logins_per_user: RateLimiter,
    logins_per_address: RateLimiter,
}

impl Budgets {
    pub fn new(mutations_per_minute: u32, logins_per_minute: u32) -> Self {
        Self {
            mutations: RateLimiter::new(mutations_per_minute, "mutations per minute per API key"),
            logins_per_user: RateLimiter::new(
                logins_per_minute,
                "login attempts per minute per username",
            ),
            logins_per_address: RateLimiter::new(
                logins_per_minute.saturating_mul(3),
                "login attempts per minute per client address",
            ),
        }
    }
}

/// Charges one login attempt to `username` and to the caller's address.
pub fn charge_login(ctx: &Context<'_>, username: &str) -> async_graphql::Result<()> {
    let budgets = ctx.data::<Arc<Budgets>>()?;
    budgets
        .logins_per_user
        .check(&username.to_ascii_lowercase(), 1)?;
    if let Some(ClientAddr(addr)) = ctx.data_opt::<ClientAddr>() {
        budgets
            .logins_per_address
            .check(&addr.ip().to_string(), 1)?;
    }
    Ok(())
}

pub struct RequestPolicy(pub Arc<Budgets>);

impl ExtensionFactory for RequestPolicy {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PolicyExtension {
            budgets: self.0.clone(),
            document: Mutex::new(None),
        })
    }
}

struct PolicyExtension {
    budgets: Arc<Budgets>,
    /// The parsed document, kept to find the executed operation's root fields.
    document: Mutex<Option<ExecutableDocument>>,
}

#[async_trait::async_trait]
impl Extension for PolicyExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        input_checks::check_query_text(&request.query).map_err(bad_request)?;
        input_checks::check_variables(&request.variables).map_err(bad_request)?;
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let depth = input_checks::selection_depth(&doc);
        if depth > MAX_DEPTH {
            return Err(bad_request(format!(
                "query is nested {depth} levels deep; at most {MAX_DEPTH} are allowed"
            )));
        }
        if input_checks::count_root_fields_named(&doc, "login") > 1 {
            return Err(bad_request("at most one login per request"));
        }
        *self.document.lock().unwrap_or_else(|e| e.into_inner()) = Some(doc.clone());
        Ok(doc)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let fields = self
            .document
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|doc| input_checks::mutation_root_fields(doc, operation_name))
            .unwrap_or_default();
        // `login` has budgets of its own; anonymous callers reach nothing else.
        let charged = fields.iter().filter(|f| f.as_str() != "login").count();
        if charged > 0
            && let Some(p) = ctx.data_opt::<Principal>()
        {
            // One budget per API key (per user for password sessions).
            let key = p
                .api_key_id
                .map_or_else(|| p.user_id.to_string(), |k| k.to_string());
            if let Err(e) = self.budgets.mutations.check(&key, charged as u32) {
                let mut err = ServerError::new(e.message, None);
                err.extensions = e.extensions;
                return Response::from_errors(vec![err]);
            }
        }
        next.run(ctx, operation_name).await
    }
}
