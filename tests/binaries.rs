//! What the binaries contain.

/// Names of the functions and data a binary links, from its symbol table.
/// (File symbols, which name every object file the linker was given even
/// when it kept nothing of it, do not count.)
#[cfg(feature = "gui")]
fn linked_symbols(path: &str) -> Vec<String> {
    use object::{Object, ObjectSymbol, SymbolKind};
    let bytes = std::fs::read(path).expect("the binary is readable");
    let file = object::File::parse(bytes.as_slice()).expect("an executable");
    file.symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| {
            matches!(
                s.kind(),
                SymbolKind::Text | SymbolKind::Data | SymbolKind::Tls
            )
        })
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect()
}

/// The agent runs on every managed host: it must not carry the desktop
/// client's toolkit, even when the package is built with the `gui` feature.
/// (Debug builds still embed GDB pretty-printer scripts of every crate in
/// the dependency graph; those are not code, so symbols are what counts.)
#[cfg(feature = "gui")]
#[test]
fn the_agent_and_the_cli_never_link_slint() {
    let slint = |symbols: &[String]| symbols.iter().filter(|s| s.contains("i_slint")).count();
    for binary in [
        env!("CARGO_BIN_EXE_vigie-agent"),
        env!("CARGO_BIN_EXE_vigie"),
    ] {
        let symbols = linked_symbols(binary);
        assert!(symbols.len() > 1000, "{binary} has a symbol table");
        assert_eq!(slint(&symbols), 0, "{binary} links Slint");
    }
    let gui = linked_symbols(env!("CARGO_BIN_EXE_vigie-gui"));
    assert!(
        slint(&gui) > 100,
        "the check would see Slint if it were there"
    );
}
