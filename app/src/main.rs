//! `rivulet [--demo] [rivulet://watch/ID]`: the desktop app.

use std::process::ExitCode;

use rivulet_app::app::App;
use rivulet_app::single::{self, Instance, SingleError};
use rivulet_app::{environment, link};

fn main() -> ExitCode {
    rivulet_node_core::cli::init_tracing();
    rivulet_app::report::launched();
    let launch = match link::parse(std::env::args().skip(1)) {
        Ok(l) => l,
        Err(link::NotLaunched::Info(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(link::NotLaunched::Bad(line)) => {
            eprintln!("rivulet: {line}");
            return ExitCode::from(2);
        }
    };
    if launch.demo && !cfg!(feature = "demo") {
        eprintln!("rivulet: {}", rivulet_app::demo::NO_DEMO);
        return ExitCode::from(2);
    }
    // One app per user: a later launch hands its link to the running app and exits.
    match single::claim(&environment::runtime_dir(), &launch) {
        Ok(Instance::HandedOff) => return ExitCode::SUCCESS,
        Ok(Instance::First(first)) => {
            if let Err(e) = single::serve_into_app(first) {
                tracing::warn!("later launches cannot reach this app: {e}");
            }
        }
        Err(e @ SingleError::NoAnswer { .. }) => {
            eprintln!("rivulet: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => tracing::warn!("{e}; later launches will not find this app"),
    }
    let settings_path = environment::settings_file();
    // A daemon rather than an application: it keeps running when its window closes, which
    // is how sharing goes on from the tray (docs/app.md, "Closing the window").
    let result = iced::daemon(
        move || {
            let (mut app, task) = App::new(launch.clone(), settings_path.clone());
            let open = app.open_window();
            (app, iced::Task::batch([open, task]))
        },
        App::update,
        App::view_window,
    )
    .title(App::window_title)
    .subscription(App::subscription)
    .theme(iced::Theme::Dark)
    .run();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rivulet: the window could not open: {e}");
            ExitCode::FAILURE
        }
    }
}
