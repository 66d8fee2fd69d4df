//! `cargo xtask split-wasm`: splits the front end's WebAssembly at its
//! split points, so each lab panel's code is downloaded only when the panel
//! is shown. Trunk runs it after every build (`Trunk.toml`'s `post_build`
//! hook), for `trunk build`, `trunk serve` and `cargo xtask` alike.
//!
//! Trunk cannot split a module itself, so this step redoes the end of its
//! Rust pipeline on the module cargo linked (kept in the target directory):
//!
//! 1. `wasm_split_cli_support` (the splitter Leptos's own tooling uses)
//!    cuts the module at every `#[wasm_split]` function: a main module, one
//!    module per split point, and shared chunks, plus the JavaScript that
//!    fetches them. It reads the linker's relocations, which is why the
//!    WASM target links with `--emit-relocs` (`.cargo/config.toml`) and the
//!    `wasm-release` profile does not strip (this step strips instead).
//! 2. `wasm-bindgen` (the pinned CLI Trunk uses) runs on the main module,
//!    keeping the exports the split modules link against, and replaces the
//!    JavaScript and `.wasm` Trunk made, under the same hashed names.
//! 3. Every new file is named after its content (`memory_panel-<hash>.wasm`,
//!    `__wasm_split-<hash>.js`), like Trunk's, so the back end can let
//!    browsers keep them a year; `index.html`'s integrity hashes are
//!    updated for the two files that changed.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256, Sha384};

use crate::util::{cargo, command, stdout_of};

/// The module name the main module imports the loaders from. It stays in
/// the module (the key of the imports object); the script imports the
/// loader under its content name.
const LINK_PLACEHOLDER: &str = "./__wasm_split-XXXXXXXXXXXXXXXX.js";

/// The main script as the loader first names it (it imports `initSync`
/// from it), before the script is named after its content.
const MAIN_PLACEHOLDER: &str = "./frontend.js";

/// How the splitter's loader (0.2.4) instantiates each module it fetched.
const STREAMING: &str = "(WebAssembly.instantiateStreaming(src, imports))";

/// What it does instead: streams when the server says `application/wasm`,
/// else reads the module whole (a failed fetch stays a failure: the panel
/// says it could not be loaded).
const INSTANTIATE: &str = r#"async function __instantiate(fetched, imports) {
    const response = await fetched;
    if (!response.ok) {
        throw new Error(`${response.url}: ${response.status}`);
    }
    const type = (response.headers.get("Content-Type") || "").split(";")[0].trim();
    if (type === "application/wasm") {
        return WebAssembly.instantiateStreaming(response, imports);
    }
    return WebAssembly.instantiate(await response.arrayBuffer(), imports);
}
"#;

/// Runs inside Trunk's `post_build` hook (its environment says where the
/// build is).
pub fn split_wasm() -> Result<(), String> {
    let staging = std::env::var_os("TRUNK_STAGING_DIR").map(PathBuf::from).ok_or(
        "split-wasm runs as Trunk's post_build hook (Trunk.toml), after `trunk build`: TRUNK_STAGING_DIR is not set",
    )?;
    let release = std::env::var("TRUNK_PROFILE").as_deref() == Ok("release");
    // index.html builds releases with the `wasm-release` profile.
    let profile_dir = if release { "wasm-release" } else { "debug" };
    let linked = target_dir()?
        .join("wasm32-unknown-unknown")
        .join(profile_dir)
        .join("frontend.wasm");
    let input = std::fs::read(&linked).map_err(|e| format!("{}: {e}", linked.display()))?;
    let stem = trunk_js_stem(&staging)?;
    // Trunk names its files after the module it bound (a SeaHash of its
    // bytes): the module read here must be that one, not one left by
    // another profile or an earlier build.
    let mut hasher = seahash::SeaHasher::new();
    std::hash::Hasher::write(&mut hasher, &input);
    let expected = format!("frontend-{:x}", std::hash::Hasher::finish(&hasher));
    if stem != expected {
        return Err(format!(
            "{} is not the module Trunk just built ({stem}.js is named after another): is Trunk building with another cargo profile than `{profile_dir}`?",
            linked.display()
        ));
    }
    let report = split(&input, &staging, &stem, release)?;
    eprintln!(
        "xtask: split the front end's WebAssembly: main {} KB, {} modules loaded on demand ({} KB)",
        report.main_bytes / 1024,
        report.on_demand,
        report.on_demand_bytes / 1024
    );
    Ok(())
}

struct Report {
    main_bytes: u64,
    on_demand: usize,
    on_demand_bytes: u64,
}

/// Splits `input` and puts the result in `staging` in place of Trunk's
/// `{stem}.js` and `{stem}_bg.wasm`.
fn split(input: &[u8], staging: &Path, stem: &str, strip: bool) -> Result<Report, String> {
    let work = staging.join(".split");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let result = split_in(input, staging, &work, stem, strip);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn split_in(input: &[u8], staging: &Path, work: &Path, stem: &str, strip: bool) -> Result<Report, String> {
    let main_path = work.join("main.wasm");
    wasm_split_cli_support::transform({
        let mut options = wasm_split_cli_support::Options::new(input);
        options.output_dir = work;
        options.main_out_path = &main_path;
        options.link_name = LINK_PLACEHOLDER;
        options.main_module = MAIN_PLACEHOLDER;
        options
    })
    .map_err(|e| format!("splitting the front end's WebAssembly: {e:#}"))?;

    // The split modules, named after their content; the loader refers to
    // them by those names.
    let loader_path = work.join(LINK_PLACEHOLDER.trim_start_matches("./"));
    let mut loader = read_text(&loader_path)?;
    let mut on_demand = 0;
    let mut on_demand_bytes = 0;
    for entry in std::fs::read_dir(work).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if path == main_path || !name.ends_with(".wasm") {
            continue;
        }
        let mut bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if strip {
            bytes = strip_custom_sections(&bytes)?;
        }
        let base = name.trim_end_matches(".wasm");
        // `split_memory_panel` → `memory_panel`; shared chunks keep
        // their `chunk_12`.
        let readable = base.strip_prefix("split_").unwrap_or(base);
        let named = format!("{readable}-{}.wasm", content_hash(&[&bytes]));
        loader = replace_present(&loader, &format!("\"./{name}\""), &format!("\"./{named}\""))
            .ok_or_else(|| format!("the splitter's loader does not mention {name}"))?;
        write(&staging.join(&named), &bytes)?;
        on_demand += 1;
        on_demand_bytes += bytes.len() as u64;
    }

    // The loader streams each module into `instantiateStreaming`, which
    // browsers refuse unless it is sent as `application/wasm`; many static
    // hosts (an S3 bucket, by default) send `.wasm` as anything else. Such a
    // module is read whole instead, as wasm-bindgen's own loader does.
    let loader = replace_present(&loader, STREAMING, "(__instantiate(src, imports))")
        .ok_or("the splitter's loader no longer instantiates modules as split-wasm expects")?;
    let loader = format!("{loader}\n{INSTANTIATE}");

    // The main module through wasm-bindgen, as Trunk ran it, keeping the
    // linker's exports (the split modules import the shared functions by
    // those names).
    let bindgen_out = work.join("bindgen");
    let mut bindgen = command("wasm-bindgen");
    bindgen
        .args([
            "--target=web",
            "--no-typescript",
            "--keep-lld-exports",
            "--no-demangle",
        ])
        .arg("--out-name=frontend")
        .arg(format!("--out-dir={}", bindgen_out.display()))
        .arg(&main_path);
    stdout_of("wasm-bindgen on the split main module", bindgen)?;
    if bindgen_out.join("snippets").exists() {
        return Err("wasm-bindgen wrote snippets, which split-wasm does not copy yet".into());
    }
    let js = read_text(&bindgen_out.join("frontend.js"))?;
    let wasm_path = bindgen_out.join("frontend_bg.wasm");
    let mut wasm = std::fs::read(&wasm_path).map_err(|e| format!("{}: {e}", wasm_path.display()))?;
    if strip {
        wasm = strip_custom_sections(&wasm)?;
    }

    // The main script, its module and the loader are named after all three.
    // (Trunk's name hashes only the module cargo linked: after an update of
    // the splitter or of this step, the same name would hold other bytes,
    // and browsers keep these files a year.)
    let hash = content_hash(&[&wasm, js.as_bytes(), loader.as_bytes()]);
    let new_stem = format!("frontend-{hash}");
    let loader_name = format!("__wasm_split-{hash}.js");
    // The script imports the loader under its new name; the module still
    // asks for it by the placeholder (the key of the imports object).
    let js = replace_present(
        &js,
        &format!("from \"{LINK_PLACEHOLDER}\""),
        &format!("from \"./{loader_name}\""),
    )
    .ok_or("the main module imports no split loader: are the panels' #[wasm_split] functions gone?")?;
    let js = replace_present(&js, "'frontend_bg.wasm'", &format!("'{new_stem}_bg.wasm'"))
        .ok_or("wasm-bindgen's script does not name its module 'frontend_bg.wasm'")?;
    let loader = replace_present(
        &loader,
        &format!("from \"{MAIN_PLACEHOLDER}\""),
        &format!("from \"./{new_stem}.js\""),
    )
    .ok_or("the splitter's loader does not import the main script")?;
    let js_name = format!("{new_stem}.js");
    let wasm_name = format!("{new_stem}_bg.wasm");
    write(&staging.join(&js_name), js.as_bytes())?;
    write(&staging.join(&wasm_name), &wasm)?;
    write(&staging.join(&loader_name), loader.as_bytes())?;
    for old in [format!("{stem}.js"), format!("{stem}_bg.wasm")] {
        std::fs::remove_file(staging.join(&old)).map_err(|e| format!("{old}: {e}"))?;
    }

    // index.html: the new names, their integrity hashes, and the loader
    // preloaded beside the script (which imports it at once).
    let index_path = staging.join("index.html");
    let public_url = std::env::var("TRUNK_PUBLIC_URL").unwrap_or_else(|_| "./".into());
    let index = read_text(&index_path)?.replace(stem, &new_stem);
    let mut index = preload_loader(&index, &public_url, &js_name, &loader_name)?;
    for (name, bytes) in [
        (&js_name, js.as_bytes()),
        (&wasm_name, &wasm[..]),
        (&loader_name, loader.as_bytes()),
    ] {
        index = replace_integrity(&index, &public_url, name, bytes)?;
    }
    write(&index_path, index.as_bytes())?;
    Ok(Report {
        main_bytes: wasm.len() as u64,
        on_demand,
        on_demand_bytes,
    })
}

/// `text` with every `from` replaced, or `None` if there is none.
fn replace_present(text: &str, from: &str, to: &str) -> Option<String> {
    text.contains(from).then(|| text.replace(from, to))
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Adds a `modulepreload` of the loader after the script's own, with the
/// same attributes (its integrity hash is set afterwards).
fn preload_loader(index: &str, public_url: &str, js_name: &str, loader_name: &str) -> Result<String, String> {
    let href = format!("href=\"{public_url}{js_name}\"");
    let at = index
        .find(&href)
        .ok_or_else(|| format!("index.html does not link {js_name}"))?;
    let start = index[..at].rfind('<').ok_or("index.html: a link with no tag")?;
    let end = index[at..].find('>').ok_or("index.html: unclosed tag")? + at + 1;
    let tag = &index[start..end];
    if !tag.contains("modulepreload") {
        return Ok(index.to_owned());
    }
    let loader_tag = tag.replace(js_name, loader_name);
    Ok(format!("{}{loader_tag}{}", &index[..end], &index[end..]))
}

/// The cargo target directory (`cargo metadata` knows every way to set it).
fn target_dir() -> Result<PathBuf, String> {
    let mut metadata = cargo();
    metadata.args(["metadata", "--no-deps", "--format-version=1"]);
    let text = stdout_of("cargo metadata", metadata)?;
    let key = "\"target_directory\":\"";
    let start = text.find(key).ok_or("cargo metadata names no target directory")? + key.len();
    let end = text[start..].find('"').ok_or("cargo metadata: unreadable")? + start;
    Ok(PathBuf::from(text[start..end].replace("\\\\", "\\")))
}

/// `frontend-<hash>` from Trunk's JavaScript file in the staging folder.
fn trunk_js_stem(staging: &Path) -> Result<String, String> {
    let mut stems = std::fs::read_dir(staging)
        .map_err(|e| format!("{}: {e}", staging.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            name.strip_suffix(".js")
                .filter(|stem| stem.starts_with("frontend-"))
                .map(str::to_owned)
        });
    match (stems.next(), stems.next()) {
        (Some(stem), None) => Ok(stem),
        _ => Err(format!(
            "expected one frontend-<hash>.js in {}",
            staging.display()
        )),
    }
}

/// Sixteen hex digits of the SHA-256 of `parts` (each length-prefixed),
/// as Trunk names assets.
fn content_hash(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Replaces the `integrity` attribute of the tag whose `href` is `name`.
fn replace_integrity(index: &str, public_url: &str, name: &str, bytes: &[u8]) -> Result<String, String> {
    use base64::Engine as _;
    let href = format!("href=\"{public_url}{name}\"");
    let at = index
        .find(&href)
        .ok_or_else(|| format!("index.html does not link {name}"))?;
    let tag_end = index[at..].find('>').ok_or("index.html: unclosed tag")? + at;
    let Some(attr) = index[at..tag_end]
        .find("integrity=\"")
        .map(|i| i + at + "integrity=\"".len())
    else {
        // Trunk was told not to add integrity hashes: nothing to update.
        return Ok(index.to_owned());
    };
    let attr_end = index[attr..].find('"').ok_or("index.html: unclosed attribute")? + attr;
    let digest = base64::engine::general_purpose::STANDARD.encode(Sha384::digest(bytes));
    Ok(format!("{}sha384-{digest}{}", &index[..attr], &index[attr_end..]))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The module without its custom sections (names, producers, the linker's
/// relocations and symbols, debug information): what a browser needs.
pub fn strip_custom_sections(module: &[u8]) -> Result<Vec<u8>, String> {
    const HEADER: usize = 8;
    if module.len() < HEADER || &module[..4] != b"\0asm" {
        return Err("not a WebAssembly module".into());
    }
    let mut out = module[..HEADER].to_vec();
    let mut at = HEADER;
    while at < module.len() {
        let id = module[at];
        let (size, body) = read_leb128(module, at + 1)?;
        let end = body
            .checked_add(size)
            .filter(|&end| end <= module.len())
            .ok_or("a section runs past the end of the module")?;
        if id != 0 {
            out.extend_from_slice(&module[at..end]);
        }
        at = end;
    }
    Ok(out)
}

/// An unsigned LEB128 number at `at`: its value and where it ends.
fn read_leb128(bytes: &[u8], mut at: usize) -> Result<(usize, usize), String> {
    let mut value: usize = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes
            .get(at)
            .ok_or("a section size runs past the end of the module")?;
        at += 1;
        value |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((value, at));
        }
    }
    Err("a section size is too long".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_sections_are_dropped_and_the_others_kept() {
        // Header, a type section (id 1, 4 bytes), a custom section (id 0,
        // name "x", 2 bytes of payload), a 200-byte custom section (a
        // two-byte size), and a start section (id 8, 1 byte).
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.extend([1, 4, 1, 0x60, 0, 0]);
        module.extend([0, 4, 1, b'x', 7, 7]);
        module.extend([0, 0xc8, 0x01]);
        module.extend(std::iter::repeat_n(0, 200));
        module.extend([8, 1, 0]);
        let stripped = strip_custom_sections(&module).unwrap();
        let mut expected = b"\0asm\x01\0\0\0".to_vec();
        expected.extend([1, 4, 1, 0x60, 0, 0, 8, 1, 0]);
        assert_eq!(stripped, expected);
    }

    #[test]
    fn a_truncated_module_is_an_error_not_a_panic() {
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.extend([1, 40, 1]);
        assert!(strip_custom_sections(&module).is_err());
        assert!(strip_custom_sections(b"\0asm").is_err());
        assert!(strip_custom_sections(b"not wasm at all").is_err());
    }

    #[test]
    fn the_integrity_of_the_named_file_changes_and_only_it() {
        let index = r#"<link rel="stylesheet" href="./style-1.css" integrity="sha384-AAA"/><link rel="modulepreload" href="./frontend-2.js" crossorigin="anonymous" integrity="sha384-BBB"><link rel="preload" href="./frontend-2_bg.wasm" integrity="sha384-CCC" as="fetch">"#;
        let updated = replace_integrity(index, "./", "frontend-2.js", b"hello").unwrap();
        // sha384("hello"), base64.
        assert!(updated.contains(r#"href="./frontend-2.js" crossorigin="anonymous" integrity="sha384-WeF0h3dEjGnea4ANejO7+5/xtGPkQ1TDVTvNucZm+pASWjx5+QOXvfX2oT3oKGhP""#));
        assert!(updated.contains(r#"integrity="sha384-AAA""#));
        assert!(updated.contains(r#"integrity="sha384-CCC""#));
        assert!(replace_integrity(index, "./", "other.js", b"x").is_err());
    }
}
