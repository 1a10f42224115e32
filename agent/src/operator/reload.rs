//! `POST /v1/reload`: asks the agent to re-read its config and plugins (as `SIGHUP`
//! does) and answers once the new set runs, or why it was refused.

use hyper::{Response, StatusCode};
use tokio::sync::{mpsc, oneshot};

use crate::server::{json, Api, ApiError, Body};

/// What the API can ask of the agent that runs it.
pub enum Control {
    /// Reload config and plugins; the answer says how it went.
    Reload(oneshot::Sender<ReloadOutcome>),
}

/// How a reload went: the new generation, or why nothing changed.
pub type ReloadOutcome = Result<u64, String>;

/// Sends a reload request down `control` and waits for its outcome.
pub async fn reload(api: &Api) -> Result<Response<Body>, ApiError> {
    let (tx, rx) = oneshot::channel();
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the agent is stopping",
        )
    };
    send(&api.control, Control::Reload(tx))
        .await
        .map_err(|_| unavailable())?;
    match rx.await.map_err(|_| unavailable())? {
        Ok(generation) => Ok(json(
            StatusCode::OK,
            &serde_json::json!({"reloaded": true, "generation": generation}),
        )),
        Err(message) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reload_failed",
            message,
        )),
    }
}

async fn send(control: &mpsc::Sender<Control>, c: Control) -> Result<(), ()> {
    control.send(c).await.map_err(drop)
}
