//! Support code for [`register_plugin!`](crate::register_plugin). Not a public API.

#[cfg(target_arch = "wasm32")]
pub mod wasm {
    use crate::{Error, Result};

    // The host's bulk copies of a call's input, output and error (`outpost:host/io`
    // in the ABI): one host call each instead of one per eight bytes.
    #[link(wasm_import_module = "outpost:host/io")]
    extern "C" {
        fn input_read(dst: *mut u8, len: u32) -> u32;
        fn output_write(src: *const u8, len: u32);
        fn error_write(src: *const u8, len: u32);
    }

    /// The call's input.
    fn input() -> Vec<u8> {
        // SAFETY: a kernel import without arguments.
        let len = unsafe { extism_pdk::extism::input_length() } as usize;
        let mut buf = Vec::<u8>::with_capacity(len);
        // SAFETY: the host copies at most `len` bytes (the buffer's capacity) to the
        // pointer and returns how many; those bytes are then initialised.
        unsafe {
            let n = input_read(buf.as_mut_ptr(), len as u32) as usize;
            buf.set_len(n.min(len));
        }
        buf
    }

    /// Runs one export: hands it the call's input, and stores its output (return 0) or
    /// its error message (return 1), per the error convention of the ABI.
    pub fn run(f: impl FnOnce(&[u8]) -> Result<Vec<u8>>) -> i32 {
        match f(&input()) {
            Ok(output) => {
                // SAFETY: the host copies `output.len()` bytes from the live buffer.
                unsafe { output_write(output.as_ptr(), output.len() as u32) };
                0
            }
            Err(e) => {
                let message = e.message().as_bytes();
                // SAFETY: as above, for the message.
                unsafe { error_write(message.as_ptr(), message.len() as u32) };
                1
            }
        }
    }

    pub fn from_json<'a, T: serde::Deserialize<'a>>(input: &'a [u8]) -> Result<T> {
        serde_json::from_slice(input).map_err(|e| Error::msg(format!("bad input: {e}")))
    }

    pub fn to_json(value: &impl serde::Serialize) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(value)?)
    }

    /// An [`Output`](crate::Output), framed: the agent takes message bodies by length.
    pub fn output(value: crate::Output) -> Result<Vec<u8>> {
        crate::framing::encode_output(value)
    }

    /// The plugin's self-description, telling the agent it reads framed input.
    pub fn describe(mut info: crate::PluginInfo) -> Result<Vec<u8>> {
        info.framed_input = true;
        to_json(&info)
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
                rt::run(|_| rt::describe(<$plugin as $crate::Plugin>::describe()))
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
                    let event = $crate::framing::decode_sending(input)?;
                    rt::output(with_state(|p| $crate::Plugin::sending_event(p, &event))?)
                })
            }

            #[no_mangle]
            pub extern "C" fn monitoring_event() -> i32 {
                rt::run(|input| {
                    let points: ::std::vec::Vec<$crate::Point> = rt::from_json(input)?;
                    rt::output(with_state(|p| {
                        $crate::Plugin::monitoring_event(p, &points)
                    })?)
                })
            }

            #[no_mangle]
            pub extern "C" fn tick() -> i32 {
                rt::run(|_| rt::output(with_state(|p| $crate::Plugin::tick(p))?))
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
                    rt::output(with_state(|p| $crate::Plugin::on_message(p, &message))?)
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
