//! The static build (`cargo xtask build-static DIR`): the built front end,
//! the lesson recordings and an embed page per lesson, in one folder that
//! any static host serves under any sub-path, with no back end. Its pages
//! replay the recordings; `?backend=URL` makes the same pages go live.

use std::path::Path;

use shared::recording::{site_file, RECORDINGS_DIR, REPLAY_META, SITE_INDEX};
use shared::wire::to_binary;

use crate::record::{index, load_all};

/// The file that marks a folder as a static build's, so the next build may
/// empty it.
const MARKER: &str = ".cache-aside-static";

/// What a static build holds.
#[derive(Debug)]
pub struct Built {
    pub lessons: Vec<String>,
    /// Every file's bytes, summed.
    pub bytes: u64,
    /// What a first visit downloads: the page, the main WASM, its JS and
    /// CSS, the list of recordings and one lesson's recording (the
    /// largest), uncompressed (the recording as stored: gzipped); a lab
    /// panel's module comes when the panel is shown.
    pub first_load_bytes: u64,
    /// The same, each file gzipped (as most static hosts send them).
    pub first_load_gzip_bytes: u64,
}

/// `bytes` gzipped (best compression).
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).map_err(|e| e.to_string())?;
    encoder.finish().map_err(|e| e.to_string())
}

/// `bytes`' size gzipped.
fn gzipped(bytes: &[u8]) -> u64 {
    gzip(bytes).map_or(0, |out| out.len() as u64)
}

/// Builds the static folder `out` from the built front end `dist` and the
/// recordings in `recordings`. Every recording must be of this build's
/// protocol and lessons: a stale one fails the build with its reason.
pub fn build(dist: &Path, recordings_dir: &Path, out: &Path) -> Result<Built, String> {
    let recordings = load_all(recordings_dir)?;
    if recordings.is_empty() {
        return Err(format!(
            "no recordings in {}: `cargo xtask record` makes them",
            recordings_dir.display()
        ));
    }
    let index_html = std::fs::read_to_string(dist.join("index.html")).map_err(|e| {
        format!(
            "no built front end in {} ({e}): `cargo xtask build-static` builds it first",
            dist.display()
        )
    })?;
    // Emptied first, but only a folder this build made (or an empty one):
    // never a source tree, `dist/` or the recordings by mistake.
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty && !out.join(MARKER).is_file() {
            return Err(format!(
                "{} is not empty and was not made by build-static: give a new or empty folder",
                out.display()
            ));
        }
        std::fs::remove_dir_all(out).map_err(|e| format!("cannot empty {}: {e}", out.display()))?;
    }
    std::fs::create_dir_all(out.join(RECORDINGS_DIR))
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;

    // The front end, without the precompressed copies the back end serves
    // (a static host compresses by its own rules).
    let (mut assets, mut assets_gzip) = (0u64, 0u64);
    for entry in std::fs::read_dir(dist).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !path.is_file() || name.ends_with(".br") || name.ends_with(".gz") || name == "index.html" {
            continue;
        }
        std::fs::copy(&path, out.join(&name)).map_err(|e| format!("cannot copy {name}: {e}"))?;
        // What a first visit fetches (as `cargo xtask bench size` counts
        // it): not the lab panels' modules, fetched when a panel is shown.
        let first_load =
            name.starts_with("frontend-") || name.starts_with("__wasm_split-") || name.starts_with("style-");
        if first_load {
            let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {name}: {e}"))?;
            assets += bytes.len() as u64;
            assets_gzip += gzipped(&bytes);
        }
    }
    let marked = index_html.replacen(
        "<head>",
        &format!(r#"<head><meta name="{REPLAY_META}" content="recorded">"#),
        1,
    );
    write(&out.join("index.html"), marked.as_bytes())?;
    write(
        &out.join(MARKER),
        b"Made by `cargo xtask build-static`; the next build empties this folder.\n",
    )?;

    // The largest recording, as stored (gzipped already).
    let mut largest = 0u64;
    let mut lessons = Vec::new();
    for recording in &recordings {
        // In the page's binary form, as the page reads it: the messages it
        // sent by their kind alone (see `shared::recording::SentKind`);
        // gzipped, as few hosts compress a binary file.
        let bytes = gzip(&to_binary(&recording.sent_kinds()))?;
        largest = largest.max(bytes.len() as u64);
        write(
            &out.join(RECORDINGS_DIR).join(site_file(&recording.lesson)),
            &bytes,
        )?;
        // The lesson's embed page: the playground under
        // `embed/{lesson}/live/`, its addresses relative to the root three
        // levels up (as the back end's `/embed/{lesson}/live` is two).
        let page = marked.replacen("<head>", r#"<head><base href="../../../">"#, 1);
        let dir = out.join("embed").join(&recording.lesson).join("live");
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        write(&dir.join("index.html"), page.as_bytes())?;
        lessons.push(recording.lesson.clone());
    }
    let listed = to_binary(&index(&recordings));
    write(&out.join(RECORDINGS_DIR).join(SITE_INDEX), &listed)?;

    Ok(Built {
        lessons,
        bytes: folder_bytes(out),
        first_load_bytes: marked.len() as u64 + assets + listed.len() as u64 + largest,
        first_load_gzip_bytes: gzipped(marked.as_bytes()) + assets_gzip + gzipped(&listed) + largest,
    })
}

fn write(path: &Path, contents: &[u8]) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                folder_bytes(&path)
            } else {
                entry.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}
