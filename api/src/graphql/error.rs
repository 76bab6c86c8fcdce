//! The one place engine errors become GraphQL errors with `extensions.code` (§9).
//! Internal details (SQL, panics) are logged with an id and never sent to clients.

use aiops_engine::Error;
use async_graphql::{ErrorExtensions, ServerError};

pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
pub const FORBIDDEN: &str = "FORBIDDEN";
pub const NOT_FOUND: &str = "NOT_FOUND";
pub const VALIDATION_FAILED: &str = "VALIDATION_FAILED";
pub const CONFLICT: &str = "CONFLICT";
pub const BAD_REQUEST: &str = "BAD_REQUEST";
pub const INTERNAL: &str = "INTERNAL";

/// Converts an engine error to a client-safe GraphQL error.
pub fn to_gql(e: Error) -> async_graphql::Error {
    let code = match &e {
        Error::Unauthenticated => UNAUTHENTICATED,
        Error::Forbidden { .. } | Error::KeyAboveCeiling { .. } => FORBIDDEN,
        Error::NotFound { .. } => NOT_FOUND,
        Error::IllegalTransition { .. }
        | Error::NotPending { .. }
        | Error::Conflict(_)
        | Error::LeaseLost(_) => CONFLICT,
        Error::Invalid(_) | Error::Refused(_) => VALIDATION_FAILED,
        Error::Violations(violations) => {
            let list: Vec<async_graphql::Value> = violations
                .iter()
                .map(|v| {
                    let mut m = async_graphql::indexmap::IndexMap::new();
                    m.insert(
                        async_graphql::Name::new("path"),
                        async_graphql::Value::from(v.path.clone()),
                    );
                    m.insert(
                        async_graphql::Name::new("message"),
                        async_graphql::Value::from(v.message.clone()),
                    );
                    async_graphql::Value::Object(m)
                })
                .collect();
            return async_graphql::Error::new(e.to_string()).extend_with(|_, ext| {
                ext.set("code", VALIDATION_FAILED);
                ext.set("violations", async_graphql::Value::List(list.clone()));
            });
        }
        Error::Corrupt(_) | Error::Database(_) | Error::Unavailable(_) | Error::Connect(_) => {
            let id = uuid::Uuid::now_v7();
            tracing::error!(error.id = %id, error = %e, "internal error");
            return async_graphql::Error::new(format!("internal error (id {id})"))
                .extend_with(|_, ext| ext.set("code", INTERNAL));
        }
    };
    async_graphql::Error::new(e.to_string()).extend_with(|_, ext| ext.set("code", code))
}

/// A request-level error (no field, no position): GraphQL clients would show a
/// position of line 0 as a bogus location.
pub fn without_position(e: async_graphql::Error) -> ServerError {
    let mut err = ServerError::new(e.message, None);
    err.extensions = e.extensions;
    err
}

/// A request-level BAD_REQUEST.
pub fn bad_request(message: impl Into<String>) -> ServerError {
    without_position(
        async_graphql::Error::new(message.into())
            .extend_with(|_, ext| ext.set("code", BAD_REQUEST)),
    )
}

/// `?`-friendly conversion on engine results.
pub trait ToGql<T> {
    fn gql(self) -> async_graphql::Result<T>;
    /// `None` for NOT_FOUND: what a field that looks something up by id returns.
    fn gql_optional(self) -> async_graphql::Result<Option<T>>;
}

impl<T> ToGql<T> for Result<T, Error> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(to_gql)
    }

    fn gql_optional(self) -> async_graphql::Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(to_gql(e)),
        }
    }
}

/// Errors raised by async-graphql itself (parse, validation, limits) carry no code;
/// they are the client's fault.
pub fn ensure_code(errors: &mut [ServerError]) {
    for e in errors {
        let has_code = e
            .extensions
            .as_ref()
            .is_some_and(|x| x.get("code").is_some());
        if !has_code {
            e.extensions
                .get_or_insert_with(Default::default)
                .set("code", BAD_REQUEST);
        }
    }
}
