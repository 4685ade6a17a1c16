//! `vigie`: drives many agents from a hosts file. All the logic is in
//! `vigie::client::cli`.

fn main() -> std::process::ExitCode {
    vigie::client::cli::main()
}
