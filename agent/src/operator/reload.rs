//! `POST /v1/reload`: asks the agent to re-read its config and plugins (as `SIGHUP`
//! does) and answers once the new set runs, or why it was refused.

use hyper::{Response, StatusCode};
use tokio::sync::oneshot;

use crate::api::{json, Api, ApiError, Body, Control};

/// Sends a reload request to the agent and waits for its outcome.
pub async fn reload(api: &Api) -> Result<Response<Body>, ApiError> {
    let (tx, rx) = oneshot::channel();
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the agent is stopping",
        )
    };
    api.control
        .send(Control::Reload(tx))
        .await
        .map_err(|_| unavailable())?;
    match rx.await.map_err(|_| unavailable())? {
        Ok(generation) => Ok(json(
            StatusCode::OK,
            &serde_json::json!({"reloaded": true, "generation": generation}),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reload_failed",
            e.to_string(),
        )),
    }
}
