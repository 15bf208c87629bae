//! The README's generated sections match the code: the API reference and the settings table.
//! `UPDATE_README=1 cargo test --test readme` rewrites them.

use std::path::PathBuf;

fn section(readme: &str, marker: &str) -> (usize, usize) {
    let start = format!("<!-- {marker}:start -->\n");
    let end = format!("<!-- {marker}:end -->");
    let s = readme
        .find(&start)
        .unwrap_or_else(|| panic!("README lacks {start:?}"))
        + start.len();
    let e = readme[s..]
        .find(&end)
        .unwrap_or_else(|| panic!("README lacks {end:?}"))
        + s;
    (s, e)
}

fn check(marker: &str, generated: &str) {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));
    let mut readme = std::fs::read_to_string(&path).expect("read README.md");
    let (s, e) = section(&readme, marker);
    if std::env::var_os("UPDATE_README").is_some() {
        readme.replace_range(s..e, generated);
        std::fs::write(&path, readme).expect("write README.md");
        return;
    }
    assert!(
        readme[s..e] == *generated,
        "README section {marker} is out of date: run `UPDATE_README=1 cargo test --test readme`"
    );
}

#[test]
fn api_reference_matches_the_types() {
    check(
        "api-reference",
        &azlin_operator::api::reference::api_reference_markdown(),
    );
}

#[test]
fn settings_table_matches_the_flags() {
    let mut table = azlin_operator::runtime::settings::settings_markdown_table();
    if !table.ends_with('\n') {
        table.push('\n');
    }
    check("settings", &table);
}
