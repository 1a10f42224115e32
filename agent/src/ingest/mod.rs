//! The producer API: `POST /v1/events` (events for the `sending_event` plugins) and the
//! custom routes of background plugins. Served by [`crate::server`].

mod events;
mod routes;
pub mod validate;

pub use events::post_events;
pub use routes::plugin_route;
