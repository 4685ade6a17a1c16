//! `vigie-agent`: serves remote management of this host. All the logic is
//! in `vigie::server`.

fn main() -> std::process::ExitCode {
    vigie::server::cli::main()
}
