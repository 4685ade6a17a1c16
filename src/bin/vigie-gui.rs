//! `vigie-gui`: the desktop client. All the logic is in `vigie::client::gui`.

fn main() -> std::process::ExitCode {
    vigie::client::gui::main()
}
