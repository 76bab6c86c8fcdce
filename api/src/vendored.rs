//! The manifests of vendored browser files (`web/vendor/MANIFEST.md` for the console,
//! `api/assets/graphiql/MANIFEST.md` for GraphiQL): one table row per file, with its
//! path and sha256. Tests of both recompute the hashes from what the binary serves.

use sha2::{Digest, Sha256};

/// `(path, sha256)` of every row of a manifest's table:
/// `| package | version | `path` (`source`) | bytes | `sha256` | licence |`.
pub(crate) fn rows(manifest: &str) -> Vec<(String, String)> {
    manifest
        .lines()
        .filter(|l| l.starts_with("| "))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let path = cells.get(3)?.split('`').nth(1)?;
            let hash = cells.get(5)?.trim_matches('`');
            // The header row's cell is "sha256", not a digest.
            (hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| (path.to_owned(), hash.to_owned()))
        })
        .collect()
}

/// Lower-case hex sha256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_skip_the_header_and_read_path_and_hash() {
        let text = "| package | version | file | bytes | sha256 | licence |\n\
                    |---|---|---|---|---|---|\n\
                    | x | 1.0 | `x-1.0/x.js` (`package/x.js`) | 3 | `ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad` | MIT |";
        assert_eq!(rows(text), [("x-1.0/x.js".to_owned(), sha256_hex(b"abc"),)]);
    }
}
