//! The kernel's reader of the runner channel: frames as a crashed, forked or
//! hostile runner might write them, decoded into cell events, with stdout through
//! the output decoder (UTF-8 repair and display blocks).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        let mut input = data;
        let mut stdout = ferrocell::kernel::outputs::Stdout::default();
        while let Ok(Some((tag, payload))) = ferrocell::exec::frames::read(&mut input).await {
            if let Some(ferrocell::exec::CellEvent::Stdout(bytes)) =
                ferrocell::exec::runner::decode(tag, payload)
            {
                let _ = stdout.feed(&bytes);
            }
        }
        let _ = stdout.finish();
    });
});
