//! The seed's background example: custom routes under `/v1/plugins/teapot_plugin/`.
//!
//! * `GET …/teapot` → 418 `I am teapot`
//! * `GET …/teapot/version` → 200 `T800`

use outpost_pdk::prelude::*;

pub struct Teapot;

impl Plugin for Teapot {
    fn describe() -> PluginInfo {
        PluginInfo::new("teapot_plugin", env!("CARGO_PKG_VERSION"))
            .route("GET", "teapot")
            .route("GET", "teapot/version")
    }

    fn initialize(_config: Config) -> Result<Self> {
        Ok(Teapot)
    }

    fn route(&mut self, request: &RouteRequest) -> Result<RouteResponse> {
        Ok(match request.path.trim_matches('/') {
            "teapot" => RouteResponse::text(418, "I am teapot"),
            "teapot/version" => RouteResponse::text(200, "T800"),
            other => RouteResponse::text(404, format!("no route {other}")),
        })
    }
}

register_plugin!(Teapot);
