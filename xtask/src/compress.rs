//! Precompresses the built front end: each text or WebAssembly file gets a
//! `.br` (brotli, quality 11) and a `.gz` (gzip, level 9) beside it, which
//! the back end's `ServeDir` sends to browsers that accept them. Done once
//! at build time, so no request pays for compression.

use std::io::Write;
use std::path::{Path, PathBuf};

/// What compressing a directory produced.
#[derive(Debug, Default)]
pub struct Compressed {
    pub files: Vec<(PathBuf, u64, u64, u64)>,
}

impl Compressed {
    /// Bytes raw, brotli and gzip of what a first visit fetches (see
    /// [`first_load`]).
    pub fn first_load(&self) -> (u64, u64, u64) {
        self.files
            .iter()
            .filter(|(p, ..)| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                first_load(&name) && !name.ends_with(".html")
            })
            .fold((0, 0, 0), |(r, b, g), (_, raw, br, gz)| (r + raw, b + br, g + gz))
    }
}

/// Whether a first visit fetches the built file `name` before the page can
/// draw anything: the page, its script and style, the main module and the
/// split modules' loader (imported by the script). The lab panels' modules
/// come when a panel is shown (`cargo xtask split-wasm`).
pub fn first_load(name: &str) -> bool {
    name == "index.html"
        || name.starts_with("frontend-")
        || name.starts_with("__wasm_split-")
        || name.starts_with("style-")
}

/// Whether `path` is worth compressing (text and WebAssembly).
fn compressible(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "wasm" | "js" | "css" | "html" | "svg" | "json" | "txt"))
}

/// Writes `.br` and `.gz` beside every compressible file of `dir`.
pub fn precompress(dir: &Path) -> Result<Compressed, String> {
    let mut done = Compressed::default();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if !path.is_file() || !compressible(&path) {
            continue;
        }
        let raw = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let br = brotli_bytes(&raw)?;
        let gz = gzip_bytes(&raw)?;
        write_beside(&path, "br", &br)?;
        write_beside(&path, "gz", &gz)?;
        done.files
            .push((path, raw.len() as u64, br.len() as u64, gz.len() as u64));
    }
    done.files.sort();
    Ok(done)
}

fn write_beside(path: &Path, extension: &str, bytes: &[u8]) -> Result<(), String> {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    std::fs::write(&name, bytes).map_err(|e| format!("{}: {e}", PathBuf::from(name).display()))
}

pub fn brotli_bytes(raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 64 * 1024, 11, 22);
        writer.write_all(raw).map_err(|e| e.to_string())?;
        writer.flush().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

pub fn gzip_bytes(raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(raw).map_err(|e| e.to_string())?;
    encoder.finish().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_first_visit_fetches_the_main_files_not_the_panels_modules() {
        for name in [
            "index.html",
            "frontend-dae8fb89be97ba27.js",
            "frontend-dae8fb89be97ba27_bg.wasm",
            "__wasm_split-dae8fb89be97ba27.js",
            "style-2b7963b32cf1e4c5.css",
        ] {
            assert!(first_load(name), "{name}");
        }
        for name in [
            "memory_panel-45af0025a55e96b9.wasm",
            "chunk_12-b2da653855d0fba1.wasm",
        ] {
            assert!(!first_load(name), "{name}");
        }
    }

    #[test]
    fn both_forms_decompress_to_the_original_and_only_assets_are_compressed() {
        let dir = std::env::temp_dir().join(format!("xtask-compress-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let text = "cache-aside ".repeat(1_000);
        std::fs::write(dir.join("app-0123456789abcdef.js"), &text).unwrap();
        std::fs::write(dir.join("picture.png"), [0u8, 1, 2]).unwrap();
        let done = precompress(&dir).unwrap();
        assert_eq!(done.files.len(), 1);
        let (_, raw, br, gz) = done.files[0].clone();
        assert_eq!(raw, text.len() as u64);
        assert!(br < raw / 10 && gz < raw / 10, "{br} {gz}");

        let mut unbrotli = String::new();
        brotli::Decompressor::new(
            std::fs::File::open(dir.join("app-0123456789abcdef.js.br")).unwrap(),
            4096,
        )
        .read_to_string(&mut unbrotli)
        .unwrap();
        assert_eq!(unbrotli, text);
        let mut ungzip = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(dir.join("app-0123456789abcdef.js.gz")).unwrap())
            .read_to_string(&mut ungzip)
            .unwrap();
        assert_eq!(ungzip, text);
        assert!(!dir.join("picture.png.br").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
