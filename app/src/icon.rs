//! The app icon, drawn from `icons/rivulet.svg` into PNGs; the window uses the 64 px one.

/// The 64×64 icon for the window, decoded from the PNG built into the binary.
pub fn window_icon() -> Option<iced::window::Icon> {
    let png = include_bytes!("../../icons/png/64x64/rivulet.png");
    let decoded = image::load_from_memory(png).ok()?.to_rgba8();
    let (w, h) = decoded.dimensions();
    iced::window::icon::from_rgba(decoded.into_raw(), w, h).ok()
}
