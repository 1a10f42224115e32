//! Support code for [`register_plugin!`](crate::register_plugin). Not a public API.

#[cfg(target_arch = "wasm32")]
pub mod wasm {
    use crate::{Error, Result};

    /// Runs one export: hands it the call's input, and stores its output (return 0) or
    /// its error message (return 1), per the error convention of the ABI.
    pub fn run(f: impl FnOnce(&[u8]) -> Result<Vec<u8>>) -> i32 {
        let input = extism_pdk::input_bytes();
        match f(&input) {
            Ok(output) => match extism_pdk::output(output) {
                Ok(()) => 0,
                Err(e) => fail(&format!("cannot write output: {e}")),
            },
            Err(e) => fail(e.message()),
        }
    }

    fn fail(message: &str) -> i32 {
        if let Ok(mem) = extism_pdk::Memory::from_bytes(message) {
            // SAFETY: `mem` is a live block holding the message; the kernel keeps the
            // offset as the call's error, which the host reads after the call.
            unsafe { extism_pdk::extism::error_set(mem.offset()) };
        }
        1
    }

    pub fn from_json<'a, T: serde::Deserialize<'a>>(input: &'a [u8]) -> Result<T> {
        serde_json::from_slice(input).map_err(|e| Error::msg(format!("bad input: {e}")))
    }

    pub fn to_json(value: &impl serde::Serialize) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(value)?)
    }
}

/// Registers a type implementing [`Plugin`](crate::Plugin) as this crate's plugin.
///
/// Built for `wasm32`, it emits the exports of the [guest ABI](crate::abi). Built for
/// the host, it emits `pub fn outpost_native_plugin() -> NativeFactory`, which the
/// agent links in as a native plugin.
#[macro_export]
macro_rules! register_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        pub mod __outpost_guest {
            use super::*;
            use $crate::export::wasm as rt;

            ::std::thread_local! {
                static STATE: ::std::cell::RefCell<::std::option::Option<$plugin>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            fn with_state<R>(
                f: impl FnOnce(&mut $plugin) -> $crate::Result<R>,
            ) -> $crate::Result<R> {
                STATE.with(|state| match state.borrow_mut().as_mut() {
                    Some(plugin) => f(plugin),
                    None => Err($crate::Error::msg("plugin is not initialized")),
                })
            }

            #[no_mangle]
            pub extern "C" fn describe() -> i32 {
                rt::run(|_| rt::to_json(&<$plugin as $crate::Plugin>::describe()))
            }

            #[no_mangle]
            pub extern "C" fn initialize() -> i32 {
                rt::run(|input| {
                    let config: $crate::Config = rt::from_json(input)?;
                    let plugin = <$plugin as $crate::Plugin>::initialize(config)?;
                    let initialized = $crate::Initialized {
                        timer_ms: $crate::Plugin::timer_ms(&plugin),
                    };
                    STATE.with(|state| *state.borrow_mut() = Some(plugin));
                    rt::to_json(&initialized)
                })
            }

            #[no_mangle]
            pub extern "C" fn sending_event() -> i32 {
                rt::run(|input| {
                    let event: $crate::SendingEvent = rt::from_json(input)?;
                    rt::to_json(&with_state(|p| $crate::Plugin::sending_event(p, &event))?)
                })
            }

            #[no_mangle]
            pub extern "C" fn monitoring_event() -> i32 {
                rt::run(|input| {
                    let points: ::std::vec::Vec<$crate::Point> = rt::from_json(input)?;
                    rt::to_json(&with_state(|p| {
                        $crate::Plugin::monitoring_event(p, &points)
                    })?)
                })
            }

            #[no_mangle]
            pub extern "C" fn tick() -> i32 {
                rt::run(|_| rt::to_json(&with_state(|p| $crate::Plugin::tick(p))?))
            }

            #[no_mangle]
            pub extern "C" fn route() -> i32 {
                rt::run(|input| {
                    let request: $crate::RouteRequest = rt::from_json(input)?;
                    rt::to_json(&with_state(|p| $crate::Plugin::route(p, &request))?)
                })
            }

            #[no_mangle]
            pub extern "C" fn on_message() -> i32 {
                rt::run(|input| {
                    let message: $crate::SourceMessage = rt::from_json(input)?;
                    rt::to_json(&with_state(|p| $crate::Plugin::on_message(p, &message))?)
                })
            }

            #[no_mangle]
            pub extern "C" fn finalize() -> i32 {
                rt::run(|_| {
                    if let Some(mut plugin) = STATE.with(|state| state.borrow_mut().take()) {
                        $crate::Plugin::close(&mut plugin);
                    }
                    Ok(::std::vec::Vec::new())
                })
            }
        }

        /// This plugin built natively, for linking into the agent (the hybrid build).
        #[cfg(not(target_arch = "wasm32"))]
        pub fn outpost_native_plugin() -> $crate::native::NativeFactory {
            $crate::native::NativeFactory::of::<$plugin>()
        }
    };
}
