//! GraphiQL, wired to `/graphql` and `/graphql/ws`, with a field for the API key.

use axum::Router;
use axum::response::Html;
use axum::routing::get;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/graphiql", get(page))
}

async fn page() -> Html<&'static str> {
    Html(include_str!("graphiql.html"))
}
