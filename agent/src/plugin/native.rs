//! Native plugins: linked into the agent, driven through the same interface as WASM
//! plugins. They are trusted code (no sandbox, no timeout), but a panic still fails only
//! the call.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use outpost_pdk::native::{with_host, HostServices, NativeFactory, NativeGuest};
use outpost_pdk::{Config, Output, PluginInfo, Point, RouteRequest, RouteResponse, SourceMessage};

use super::instance::{
    CallError, FaultKind, InstanceFactory, PluginInstance, PluginKind, SendingInput,
};

/// The native plugins built into this binary, by name.
pub fn builtin(name: &str) -> Option<NativeFactory> {
    match name {
        "forward" => Some(NativeFactory::of::<super::forward::Forward>()),
        #[cfg(feature = "native-examples")]
        "event_sending_plugin_example" => {
            Some(event_sending_plugin_example::outpost_native_plugin())
        }
        #[cfg(feature = "native-examples")]
        "request_monitoring_plugin" => Some(request_monitoring_plugin::outpost_native_plugin()),
        "resource_monitor" => Some(resource_monitor::outpost_native_plugin()),
        _ => None,
    }
}

/// A native plugin's factory.
pub struct NativePluginFactory {
    factory: NativeFactory,
    info: PluginInfo,
    settings: serde_json::Map<String, serde_json::Value>,
    services: Arc<dyn HostServices>,
}

impl NativePluginFactory {
    pub fn new(
        factory: NativeFactory,
        settings: serde_json::Map<String, serde_json::Value>,
        services: Arc<dyn HostServices>,
    ) -> Self {
        NativePluginFactory {
            info: factory.describe(),
            factory,
            settings,
            services,
        }
    }
}

impl InstanceFactory for NativePluginFactory {
    fn kind(&self) -> PluginKind {
        PluginKind::Native
    }

    fn info(&self) -> &PluginInfo {
        &self.info
    }

    fn instantiate(&self) -> Result<Box<dyn PluginInstance>, CallError> {
        let config = Config(self.settings.clone());
        let guest = guarded(&self.services, || self.factory.initialize(config))?;
        Ok(Box::new(NativeInstance {
            guest,
            services: Arc::clone(&self.services),
        }))
    }
}

struct NativeInstance {
    guest: Box<dyn NativeGuest>,
    services: Arc<dyn HostServices>,
}

/// Runs `f` with the plugin's host services, turning a panic into a fault.
fn guarded<T>(
    services: &Arc<dyn HostServices>,
    f: impl FnOnce() -> outpost_pdk::Result<T>,
) -> Result<T, CallError> {
    match catch_unwind(AssertUnwindSafe(|| with_host(services, f))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CallError::Reported(e.message().to_owned())),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            Err(CallError::Fault(FaultKind::Panic, message))
        }
    }
}

impl PluginInstance for NativeInstance {
    fn sending_event(&mut self, input: &SendingInput) -> Result<Output, CallError> {
        let guest = &mut self.guest;
        guarded(&self.services, || guest.sending_event(&input.event))
    }

    fn monitoring_event(&mut self, points: &[Point]) -> Result<Output, CallError> {
        let guest = &mut self.guest;
        guarded(&self.services, || guest.monitoring_event(points))
    }

    fn tick(&mut self) -> Result<Output, CallError> {
        let guest = &mut self.guest;
        guarded(&self.services, || guest.tick())
    }

    fn route(&mut self, request: &RouteRequest) -> Result<RouteResponse, CallError> {
        let guest = &mut self.guest;
        guarded(&self.services, || guest.route(request))
    }

    fn on_message(&mut self, message: &SourceMessage) -> Result<Output, CallError> {
        let guest = &mut self.guest;
        guarded(&self.services, || guest.on_message(message))
    }

    fn timer_ms(&self) -> Option<u64> {
        self.guest.timer_ms()
    }

    fn close(&mut self) {
        let guest = &mut self.guest;
        let _ = guarded(&self.services, || {
            guest.close();
            Ok(())
        });
    }
}
